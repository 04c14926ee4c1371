"""Data-parallel training: two CPU processes (gloo) under torchrun on tiny data."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from spectra_vae import SpectraVAE, anomaly, load_dataset, make_demo_dataset
from spectra_vae.views.analysis import compare_with_pca


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_torchrun_two_processes_trains_one_model_written_by_rank_zero(tmp_path):
    data = make_demo_dataset(tmp_path / "scans", n_scans=6, height=24, width=24, seed=0)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "spectra_vae", "train", "--data", str(data), "--epochs", "6", "--out", str(out), "--patience", "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("in 2 process(es)") == 1  # rank 0 alone reports
    assert "Warning" not in proc.stderr, proc.stderr[-2000:]  # as DDP's FutureWarning at `broadcast_buffers` was
    files = sorted(p.name for p in (out / "model").iterdir())
    assert files == ["best.pt", "final.pt", "last.pt"]  # no stray temporary files
    assert sorted(p.name for p in out.iterdir()) == [".spectra_vae.json",  # the run's claim marker (issue 33)
                                                     "history.csv", "model", "params.json", "splits.json"]

    ddp = SpectraVAE.load(out / "model" / "final.pt")
    assert list(ddp.history.epoch) == [1, 2, 3, 4, 5, 6]
    train = load_dataset(data, split="normal_train")
    test = load_dataset(data, split="normal_test")
    # the normaliser merged from both shards equals one fitted on all training pixels
    assert np.allclose(ddp.normaliser_.offset_, train.to_array().astype(np.float64).mean(0), atol=1e-6)
    assert ddp.normaliser_.n_samples_ == len(train)
    val = load_dataset(data, split="normal_val")
    # the one-process run that takes the same steps: two processes of 512 pixels make steps of 1024
    single = SpectraVAE(epochs=6, patience=None, batch_size=1024, verbose=False).fit(train, validation=val)
    rmse_ddp = compare_with_pca(ddp, train, test).loc["VAE", "rmse"]
    rmse_one = compare_with_pca(single, train, test).loc["VAE", "rmse"]
    assert rmse_ddp < 1.5 * rmse_one, (rmse_ddp, rmse_one)
    # the residual model names the tissue sample a single process finds in the training data (not rank 0's
    # shard), so the fair baselines of notebook 05 can be fitted on it after a data-parallel training
    assert anomaly.fair_tissue(ddp, train).pixel_digest() == ddp.monitor_.sample_digest
    assert set(anomaly.fit_baselines(ddp, train, val).components) == set(anomaly.baselines.PCA_RULES)


DDP_SCRIPT = textwrap.dedent("""
    import shutil, sys
    import torch
    from spectra_vae import SpectraVAE, load_dataset
    from spectra_vae.estimator import base as estimator
    from spectra_vae.model import train as train_module
    from spectra_vae.preprocess import tissue as tissue_module
    from spectra_vae.core.distributed import dist_info, init_distributed

    data, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    rank, world = init_distributed()
    train, val = load_dataset(data, split="normal_train"), load_dataset(data, split="normal_val")
    kw = dict(hidden_dims=(32, 16), batch_size=64, epochs=3, patience=None, seed=2, verbose=False)
    if mode == "fit":
        if rank == 1:  # a non-finite loss in one process only: every process must recover together
            real, calls = train_module.elbo_loss, [0]
            def flaky(*a, **k):
                terms = real(*a, **k)
                if torch.is_grad_enabled():
                    calls[0] += 1
                    if calls[0] == 4:
                        return terms._replace(total=terms.total * float("nan"))
                return terms
            train_module.elbo_loss = flaky
        real_save = estimator.save_checkpoint
        def save_and_keep(payload, path):  # keep last.pt as it was inside epoch 2
            written = real_save(payload, path)
            t = payload.get("training") or {}
            if t.get("epoch") == 1 and t.get("batch") == 3:
                shutil.copy(written, out + "/inside_epoch_2.pt")
            return written
        estimator.save_checkpoint = save_and_keep
        measured, real_measure = [0], tissue_module.intensity_of
        def counted(chunk, channels):  # how many pixels this process reads for the tissue measure
            measured[0] += len(chunk)
            return real_measure(chunk, channels)
        tissue_module.intensity_of = counted
        vae = SpectraVAE(checkpoint_minutes=1e-9, **kw).fit(train, validation=val, checkpoint_dir=out + "/model")
        tissue_module.intensity_of = real_measure
        torch.save(torch.tensor(measured[0]), f"{out}/measured_rank{rank}.pt")
    else:
        vae = SpectraVAE.resume(out + "/inside_epoch_2.pt", train, validation=val, checkpoint_dir=out + "/resumed")
    m = vae.monitor_
    monitor = {"threshold": torch.tensor(m.threshold), "mean": torch.as_tensor(m.subspace.mean_),
               "variances": torch.as_tensor(m.subspace.variances_),
               "tails": torch.tensor([t.quantile(0.01) for t in m.tails.values()]),
               "latent_means": torch.as_tensor(m.latent.means)}
    if mode == "fit" and rank == 0:
        vae.save(out + "/ddp.pt")
        from spectra_vae import anomaly
        anomaly.fair_tissue(vae, train)  # the baselines' sample, in one process alone: no collective inside
    # the noise weighting's reference level is pooled too (a collective every process joins)
    weighted = vae.fit_anomaly_model(train, val, noise_weighted=True).monitor_
    monitor["noise_reference"] = torch.tensor(weighted.noise_reference)
    monitor["weighted_variances"] = torch.as_tensor(weighted.subspace.variances_)
    # every process passes the same normal scans to calibrate: each scores a share, each pixel counts once
    cal = vae.calibrate(load_dataset(data, split="normal_test"), smoothing=3).monitor_
    monitor["calibrated"] = torch.tensor([cal.calibration["pixels"], cal.threshold, cal.design_effect],
                                         dtype=torch.float64)
    torch.save({"training": vae._final_training["state_dict"], "model": vae.model_.state_dict(),
                "history": vae.history.to_dict("list"), "events": vae._state.events, "monitor": monitor},
               f"{out}/{mode}_rank{rank}.pt")
""")


def _torchrun(script: str, *args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "--no-python", sys.executable, "-c", script, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_two_processes_end_identical_recover_together_and_resume_exactly(demo_dir, tmp_path):
    out = str(tmp_path)
    _torchrun(DDP_SCRIPT, str(demo_dir), out, "fit")
    ranks = [torch.load(tmp_path / f"fit_rank{r}.pt", weights_only=True) for r in (0, 1)]
    # gradients synchronised: every parameter identical; the noise level all-reduced, not each
    # process's own last update (nor rank 0's broadcast over the others)
    # and the anomaly monitor fitted after training is one model too: residual moments, tails and
    # the first threshold pooled over both processes' shards
    for part in ("training", "model", "monitor"):
        for k, v in ranks[0][part].items():
            assert torch.equal(v, ranks[1][part][k]), (part, k)
    # refitted and calibrated after training, every process given all the data: the same residual model
    # and calibration as one process makes of the same model (each pixel counted once, not once a process)
    one = SpectraVAE.load(tmp_path / "ddp.pt")
    train, val = load_dataset(demo_dir, split="normal_train"), load_dataset(demo_dir, split="normal_val")
    weighted = one.fit_anomaly_model(train, val, noise_weighted=True).monitor_
    np.testing.assert_allclose(ranks[0]["monitor"]["weighted_variances"].numpy(), weighted.subspace.variances_,
                               rtol=1e-5)
    with pytest.warns(UserWarning, match="calibrated on 1 normal scan"):
        cal = one.calibrate(load_dataset(demo_dir, split="normal_test"), smoothing=3).monitor_
    got = ranks[0]["monitor"]["calibrated"].numpy()
    assert got[0] == cal.calibration["pixels"]
    np.testing.assert_allclose(got[1:], [cal.threshold, cal.design_effect], rtol=1e-5)
    # the tissue measure is read in shares and once: the rule reads every training pixel once over both processes,
    # the residual model's sample finds it kept on the scans, its validation tissue reads each validation pixel
    # once (one process each would read them twice; without the kept values, the training pixels twice more)
    measured = sum(int(torch.load(tmp_path / f"measured_rank{r}.pt", weights_only=True)) for r in (0, 1))
    assert measured == len(train) + len(val)
    # recovered together, at the batch where rank 1 alone saw a NaN
    where = [[{k: v for k, v in e.items() if k != "error"} for e in r["events"]] for r in ranks]
    assert where[0] == where[1] == [{"epoch": 1, "batch": 4, "rolled_back_to_batch": 0, "peak_learning_rate": 1e-3}]
    assert "non-finite in another process" in ranks[0]["events"][0]["error"]
    assert ranks[0]["history"]["recoveries"] == [1, 0, 0]

    # resumed in two processes from last.pt as it was inside epoch 2: bit-identical
    _torchrun(DDP_SCRIPT, str(demo_dir), out, "resume")
    for r in (0, 1):
        resumed = torch.load(tmp_path / f"resume_rank{r}.pt", weights_only=True)
        for k, v in ranks[0]["training"].items():
            assert torch.equal(resumed["training"][k], v), k
        for col in ("train_loss", "val_loss", "val_rmse"):  # sums over processes: float64 rounding at most
            np.testing.assert_allclose(resumed["history"][col], ranks[0]["history"][col], rtol=1e-12)

    # resumed in one process: it goes on, saying it will not match
    kept = tmp_path / "inside_epoch_2.pt"
    payload = torch.load(kept, weights_only=True)
    assert payload["training"]["world_size"] == 2 and len(payload["training"]["rng"]) == 2
    train, val = load_dataset(demo_dir, split="normal_train"), load_dataset(demo_dir, split="normal_val")
    with pytest.warns(UserWarning, match=r"saved by 2 process\(es\) and resumes in 1"):
        vae = SpectraVAE.resume(kept, train, validation=val, checkpoint_dir=tmp_path / "one")
    assert list(vae.history.epoch) == [1, 2, 3] and np.isfinite(vae.history.train_loss).all()


def _wait_for_all(procs: list[subprocess.Popen], seconds: float) -> None:
    """Wait until every process has exited, but no longer than `seconds`, and no longer than the
    first failure: an agent whose worker failed leaves the others waiting at torchrun's exit
    barrier for 300 s. Whatever still runs then is killed with its workers (its own session)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        codes = [p.poll() for p in procs]
        if None not in codes or any(c for c in codes if c is not None):
            break
        time.sleep(0.2)
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


NODE_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import torch
    from spectra_vae.io import finite as data_module
    from spectra_vae import workflow as pipeline
    from spectra_vae.core.distributed import init_distributed

    data, out = sys.argv[1], sys.argv[2]
    checked = []  # the files whose every pixel this process read for the finite check
    real = data_module.finite_pixels
    def logged(pixels):
        checked.append(os.path.basename(pixels.filename))
        return real(pixels)
    data_module.finite_pixels = logged
    rank, world = init_distributed()
    vae, splits, final = pipeline.train(data, out, epochs=2, hidden_dims=(32, 16), batch_size=64, patience=None,
                                        verbose=False)
    files = splits.train.scans + splits.validation.scans + splits.test.scans
    cached = len(os.listdir(os.path.join(os.environ["SPECTRA_VAE_CACHE"], "finite")))
    json.dump({"world": world, "checked": checked, "files": files, "cached": cached},
              open(f"{out}/node{rank}.json", "w"))
    torch.save(vae._final_training["state_dict"], f"{out}/node{rank}.pt")
""")


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_two_nodes_meet_through_a_c10d_rendezvous_and_share_the_finite_check(demo_dir, tmp_path):
    """Two torchrun agents on this machine, as on two nodes: --nnodes 2, one process each, a c10d
    rendezvous; each node has its own cache, as a node-local disk would be."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    agents, logs = [], [tmp_path / f"agent{node}.log" for node in (0, 1)]
    for node in (0, 1):
        # PYTHONFAULTHANDLER: a worker that dies by a signal prints every thread's Python stack
        env = {**os.environ, "SPECTRA_VAE_CACHE": str(tmp_path / f"cache{node}"), "PYTHONFAULTHANDLER": "1"}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
               "--node-rank", str(node), "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
               "--rdzv-id", "spectra-vae-test", "--no-python", sys.executable, "-c", NODE_SCRIPT,
               str(demo_dir), str(tmp_path / "run")]
        with logs[node].open("w") as log:  # files, not pipes: an agent never blocks on a full pipe
            agents.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True))
    _wait_for_all(agents, seconds=300)
    report = "\n".join(f"--- agent {k} (exit {a.returncode}):\n{logs[k].read_text()[-3000:]}"
                       for k, a in enumerate(agents))
    assert all(a.returncode == 0 for a in agents), report
    nodes = [json.loads((tmp_path / "run" / f"node{r}.json").read_text()) for r in (0, 1)]
    assert nodes[0]["world"] == nodes[1]["world"] == 2
    # every file's pixels were read by one node only, and every node remembers every file
    checked = set(nodes[0]["checked"]) | set(nodes[1]["checked"])
    assert set(nodes[0]["checked"]).isdisjoint(nodes[1]["checked"]) and nodes[1]["checked"]
    assert checked >= set(nodes[0]["files"])  # the training, validation and test scans (and any other opened)
    assert nodes[0]["cached"] == nodes[1]["cached"] == len(checked)
    assert sorted(p.name for p in (tmp_path / "run" / "model").iterdir()) == ["best.pt", "final.pt", "last.pt"]
    a, b = (torch.load(tmp_path / "run" / f"node{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(v, b[k]) for k, v in a.items())


EXIT_SCRIPT = textwrap.dedent("""
    import atexit
    import numpy as np
    import torch
    from spectra_vae.core.distributed import all_reduce, init_distributed
    rank, world = init_distributed()
    assert world == 2
    for _ in range(50):
        all_reduce(np.ones(1000))
    atexit._run_exitfuncs()  # what interpreter exit runs: the group must be gone after it
    assert not torch.distributed.is_initialized(), "the process group outlives the exit functions"
""")


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_a_script_that_joined_the_group_exits_cleanly_without_destroying_it():
    """A gloo group left to the C++ destructors aborted a process at exit in 3 of 10 runs of such a
    script ("terminate called without an active exception", SIGABRT; torchrun then reports the
    run failed, which is how the resume test above failed once on a fresh clone). init_distributed
    registers an exit function that destroys the group: the script checks that it does (which
    fails every time without it), and a few runs check that the processes then exit cleanly."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "--no-python", sys.executable, "-c", EXIT_SCRIPT]
    for _ in range(3):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


FIT_EXIT_SCRIPT = textwrap.dedent("""
    import atexit, os, sys
    from spectra_vae import SpectraVAE, load_dataset
    from spectra_vae.core.distributed import init_distributed
    init_distributed()
    train = load_dataset(sys.argv[1], split="normal_train")
    vae = SpectraVAE(epochs=1, hidden_dims=(32, 16), batch_size=64, patience=None, verbose=False).fit(train)
    atexit._run_exitfuncs()  # what interpreter exit runs before Python shuts down
    names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
    assert not [n for n in names if "gloo" in n], names
""")


@pytest.mark.skipif(not torch.distributed.is_available() or not os.path.isdir("/proc/self/task"),
                    reason="needs torch.distributed and Linux's /proc to list threads")
def test_after_training_the_groups_threads_end_before_python_shuts_down(demo_dir):
    """With a DistributedDataParallel wrapper the gloo group outlived `destroy_process_group` and its
    threads ran on into interpreter shutdown, where one of them aborted a worker after the work was
    done (2 of 414 two-node runs; RESULTS §4). The gradients are now averaged without the wrapper,
    and the group's threads are gone once the exit functions have run (with the wrapper they were
    not, every time)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "--no-python", sys.executable, "-c", FIT_EXIT_SCRIPT, str(demo_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


SHARED_PREP_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import torch
    from spectra_vae import SpectraVAE, load_dataset
    from spectra_vae.core.distributed import init_distributed
    from spectra_vae.preprocess import tissue as tissue_module
    from spectra_vae.preprocess import pipeline as pipeline_module

    data, out = sys.argv[1], sys.argv[2]
    rank, world = init_distributed()
    measured, real_measure = [0], tissue_module.intensity_of
    def counted(chunk, channels):  # pixels this process reads for the tissue measure
        measured[0] += len(chunk)
        return real_measure(chunk, channels)
    tissue_module.intensity_of = counted
    arrived, real_chunks = [0], pipeline_module._chunks
    def chunks(d):  # training spectra this process passes to the fitted step (emsc's reference)
        for c in real_chunks(d):
            arrived[0] += len(c)
            yield c
    pipeline_module._chunks = chunks
    train, val = load_dataset(data, split="normal_train"), load_dataset(data, split="normal_val")
    vae = SpectraVAE(preprocess="emsc", tissue_only=True, hidden_dims=(16, 8), epochs=1, patience=None, seed=0,
                     verbose=False).fit(train, validation=val)
    torch.save({"measured": torch.tensor(measured[0]), "arrived": torch.tensor(arrived[0]),
                "reference": torch.as_tensor(vae.preprocessor_.fitted_step("emsc").reference),
                "threshold": torch.tensor(vae.tissue_rule_.threshold, dtype=torch.float64),
                "digest": vae.training_digest_},
               f"{out}/prep_rank{rank}.pt")
""")


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_two_processes_read_the_tissue_measure_and_emsc_reference_in_shares(demo_dir, tmp_path):
    """Before training, the tissue rule, `tissue_only`'s selection and emsc's reference each read a share of
    the training data per process, and give what one process gets from all of it."""
    _torchrun(SHARED_PREP_SCRIPT, str(demo_dir), str(tmp_path))
    ranks = [torch.load(tmp_path / f"prep_rank{r}.pt", weights_only=True) for r in (0, 1)]
    train, val = load_dataset(demo_dir, split="normal_train"), load_dataset(demo_dir, split="normal_val")
    one = SpectraVAE(preprocess="emsc", tissue_only=True, hidden_dims=(16, 8), epochs=1, patience=None, seed=0,
                     verbose=False).fit(train, validation=val)
    for r in ranks:
        assert float(r["threshold"]) == one.tissue_rule_.threshold and r["digest"] == one.training_digest_
        np.testing.assert_allclose(r["reference"].numpy(), one.preprocessor_.fitted_step("emsc").reference, rtol=1e-10)
    tissue = one.tissue_rule_.select(train)
    # emsc's reference: every training tissue pixel once over both processes
    assert sum(int(r["arrived"]) for r in ranks) == len(tissue)
    # the measure, each pixel read once over both processes: the rule reads the training pixels and
    # tissue_only's selection the validation pixels; emsc's tissue, tissue_only's training selection and the
    # residual model's sample find the values kept on the scans (before, five passes: one process each would
    # read every pass whole)
    assert sum(int(r["measured"]) for r in ranks) == len(train) + len(val)

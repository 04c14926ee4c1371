"""The training loop: warm-up, clipping, recovery from a non-finite loss, checkpoints within an
epoch and exact resume from them, resuming from final.pt, progress within long epochs."""

import math
import shutil
import warnings

import numpy as np
import pytest
import torch

from spectra_vae import SpectraVAE, TrainingError, TrainingWarning, load_dataset
from spectra_vae.estimator import base as estimator_module
from spectra_vae.model import batches as batches_module
from spectra_vae.model import schedule as schedule_module
from spectra_vae.model import train as train_module
from spectra_vae.model.schedule import TrainConfig, TrainState, learning_rate, plan_epochs
from spectra_vae.model.train import clip_gradients

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def parts(demo_dir):
    return load_dataset(demo_dir, split="normal_train"), load_dataset(demo_dir, split="normal_val")


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def _nan_at_training_step(monkeypatch, step: int) -> None:
    """The loss of training step `step` (counted over the run, 1-based) comes out NaN."""
    real, calls = train_module.elbo_loss, {"n": 0}

    def flaky(*args, **kwargs):
        terms = real(*args, **kwargs)
        if torch.is_grad_enabled():  # training, not validation
            calls["n"] += 1
            if calls["n"] == step:
                return terms._replace(total=terms.total * float("nan"))
        return terms

    monkeypatch.setattr(train_module, "elbo_loss", flaky)


def _keep_checkpoints(monkeypatch, where, moments):
    """While patched, copy last.pt as written at each (epochs completed, batch) in `moments` to
    `where / f"{epoch}_{batch}.pt"`; the run itself is not changed."""
    real_save = estimator_module.save_checkpoint

    def save_and_keep(payload, path):
        out = real_save(payload, path)
        t = payload.get("training") or {}
        if (t.get("epoch"), t.get("batch")) in moments:
            shutil.copy(out, where / f"{t['epoch']}_{t['batch']}.pt")
        return out

    monkeypatch.setattr(estimator_module, "save_checkpoint", save_and_keep)
    return real_save


def test_learning_rate_warms_up_then_decays_to_its_floor_over_the_planned_steps_lowered_by_recoveries():
    cfg = TrainConfig(epochs=1, learning_rate=2e-3, warmup_steps=100)
    plan = dict(decay_steps=1000)
    assert learning_rate(cfg, TrainState(step=0, **plan)) == pytest.approx(2e-5)
    assert learning_rate(cfg, TrainState(step=49, **plan)) == pytest.approx(1e-3, rel=0.01)
    assert learning_rate(cfg, TrainState(step=99, **plan)) == pytest.approx(2e-3, rel=0.03)
    assert learning_rate(cfg, TrainState(step=500, **plan)) == pytest.approx(2e-3 * (0.1 + 0.9 * 0.5))
    floor = 2e-3 * schedule_module.LR_FLOOR
    assert learning_rate(cfg, TrainState(step=1000, **plan)) == learning_rate(cfg, TrainState(step=9999, **plan))
    assert learning_rate(cfg, TrainState(step=9999, **plan)) == pytest.approx(floor)
    assert learning_rate(cfg, TrainState(step=9999, lr_scale=0.25, **plan)) == pytest.approx(floor / 4)
    assert learning_rate(cfg, TrainState(step=9999)) == 2e-3  # no plan (a version-1 run): constant


def test_auto_epochs_give_small_data_as_many_optimiser_steps_as_fifty_epochs_of_larger_data():
    big, small = 400, 16  # batches per epoch: ~200 000 training pixels, and six 64×64 scans
    assert plan_epochs("auto", 10, big) == (50, 10, 3)  # 20 000 steps: nothing to stretch; plateau ≥ 3 epochs
    assert plan_epochs("auto", 10, 100) == (50, 10, 3)  # 5000 steps, a patience of 1000, a plateau of 300
    assert plan_epochs("auto", 10, 60) == (50, 17, 5)  # exactly 3000 steps; patience at least 1000 steps
    assert plan_epochs("auto", 10, small) == (188, 63, 19)  # ⌈3000 / 16⌉ epochs; plateau ⌈300 / 16⌉
    assert plan_epochs("auto", 2, small) == (188, 13, 19)  # a shorter patience asked for stays shorter
    assert plan_epochs("auto", 10, small)[0] * small >= schedule_module.AUTO_MIN_STEPS
    for batches in (1, 7, 16, 60, 906):
        assert plan_epochs("auto", 10, batches)[1] * batches >= 1000
        assert plan_epochs("auto", 10, batches)[2] * batches >= schedule_module.PLATEAU_STEPS
    assert plan_epochs("auto", None, small) == (188, None, None) and plan_epochs("auto", 0, 1) == (3000, 0, None)
    assert plan_epochs(20, 10, small) == (20, 10, None) and plan_epochs(7, None, 1) == (7, None, None)  # as given


def test_an_auto_run_trains_and_plans_its_decay_over_the_stretched_epochs(parts, monkeypatch):
    train, val = parts
    monkeypatch.setattr(schedule_module, "AUTO_EPOCHS", 2)
    monkeypatch.setattr(schedule_module, "AUTO_MIN_STEPS", 30)
    vae = SpectraVAE(hidden_dims=(16,), batch_size=256, patience=None, verbose=False)
    assert vae.epochs == "auto"  # the default
    vae.fit(train, validation=val)
    steps = vae._batches_per_epoch
    assert steps < 15 and vae.epochs_ == -(-30 // steps) == len(vae.history)
    assert vae._state.decay_steps == vae.epochs_ * steps >= 30
    assert vae.get_params()["epochs"] == "auto"  # the parameter stays what was asked for
    with pytest.raises(ValueError, match="epochs='many': must be 'auto' or a whole number"):
        SpectraVAE(epochs="many").fit(train)


def test_the_optimiser_adapts_its_step_to_a_tenfold_rise_in_the_gradients_within_a_hundred_steps():
    # Long default runs spiked (batch error 10–38× its median) when a streak of larger gradients met
    # Adam's second-moment average over ~1000 steps (β₂ = 0.999): each step was then up to 3× the
    # learning rate. Over ~50 steps (β₂ = 0.98) the step is back near the rate within 100 steps.
    model = torch.nn.Linear(1, 1, bias=False)
    opt = train_module.make_optimizer(model, 1.0, torch.device("cpu"))
    for grad in [1.0] * 2000 + [10.0] * 100:
        before = model.weight.detach().clone()
        model.weight.grad = torch.full_like(model.weight, grad)
        opt.step()
    step = float((before - model.weight.detach()).abs())
    assert 0.9 < step < 1.2  # 1.07 with β₂ = 0.98; 2.9 with 0.999


def test_a_gradient_far_above_its_running_average_is_clipped_to_a_multiple_of_it():
    p = torch.nn.Parameter(torch.zeros(4))
    p.grad = torch.tensor([3.0, 4.0, 0.0, 0.0])  # norm 5
    running = clip_gradients([p], torch.tensor(0.0))  # the first step sets the average, unclipped
    assert float(running) == 5.0 and torch.equal(p.grad, torch.tensor([3.0, 4.0, 0.0, 0.0]))
    p.grad = torch.tensor([300.0, 400.0, 0.0, 0.0])  # norm 500, 100× the average
    running = clip_gradients([p], running)
    limit = train_module.CLIP_FACTOR * 5.0
    assert torch.allclose(p.grad, torch.tensor([0.6, 0.8, 0.0, 0.0]) * limit)
    assert float(running) == pytest.approx((1 - train_module.CLIP_MOMENTUM) * 5 + train_module.CLIP_MOMENTUM * limit)
    p.grad = torch.tensor([1.0, 0.0, 0.0, 0.0])  # below the limit: untouched
    clip_gradients([p], running)
    assert torch.equal(p.grad, torch.tensor([1.0, 0.0, 0.0, 0.0]))


def test_a_non_finite_loss_rolls_back_lowers_the_learning_rate_and_training_goes_on(parts, monkeypatch):
    train, val = parts
    kw = dict(hidden_dims=(32, 16), batch_size=128, epochs=4, patience=None, verbose=False)
    smooth = SpectraVAE(**kw).fit(train, validation=val)
    # Checked every 3 batches as on a GPU, so the NaN step is taken and the weights go NaN before
    # the check: only a rollback to the kept state can give a finite model.
    monkeypatch.setattr(train_module, "_check_every", lambda device: 3)
    _nan_at_training_step(monkeypatch, 11)  # epoch 2 (9 batches each), batch 2: between two checks
    with pytest.warns(TrainingWarning, match=r"epoch 2, in one of batches 1–3 .*: rolled back to batch 0 of "
                                             r"epoch 2 and halved the learning rate \(its peak is now 0.001; "
                                             r"recovery 1 of at most 3\)"):
        vae = SpectraVAE(**kw).fit(train, validation=val)
    h = vae.history
    assert list(h.recoveries) == [0, 1, 0, 0]
    np.testing.assert_allclose(h.lr, smooth.history.lr * [1, 0.5, 0.5, 0.5])  # the schedule, halved from then
    assert np.isfinite(h[["train_loss", "val_loss"]].to_numpy()).all()
    assert all(torch.isfinite(v).all() for v in vae.model_.state_dict().values())
    assert vae._state.events[0] | {"error": ""} == {"epoch": 2, "batch": 3, "rolled_back_to_batch": 0,
                                                    "peak_learning_rate": 1e-3, "error": ""}


def test_recovery_gives_up_after_a_bounded_number_of_tries_and_says_what_is_kept(parts, tmp_path):
    train, _ = parts
    with pytest.warns(TrainingWarning), pytest.raises(TrainingError) as err:
        SpectraVAE(hidden_dims=(16,), epochs=2, learning_rate=1e6, verbose=False).fit(train)
    message = str(err.value)
    assert f"after {schedule_module.MAX_RECOVERIES} recoveries" in message
    assert "no checkpoint_dir was given, so nothing was written to disk" in message
    assert "best checkpoint" not in message  # the old message promised one that did not exist

    # with a directory: the files that exist are named, and the model in memory is finite
    SpectraVAE(hidden_dims=(16,), epochs=1, verbose=False).fit(train, checkpoint_dir=tmp_path)
    with pytest.warns(TrainingWarning), pytest.raises(TrainingError, match="holds the weights of its best epoch "
                                                                         r"\(1\); on disk: .*best\.pt, .*last\.pt"):
        vae = SpectraVAE.resume(tmp_path / "last.pt", train, epochs=3, learning_rate=1e6)
    vae = SpectraVAE.load(tmp_path / "last.pt")
    assert np.isfinite(vae.transform(train)).all()


def test_after_giving_up_the_model_in_memory_is_finite(parts):
    train, _ = parts
    vae = SpectraVAE(hidden_dims=(16,), epochs=2, learning_rate=1e6, verbose=False)
    with pytest.warns(TrainingWarning), pytest.raises(TrainingError):
        vae.fit(train)
    assert all(torch.isfinite(v).all() for v in vae.model_.state_dict().values())
    assert np.isfinite(vae.transform(train)).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("streamed", [False, True], ids=["in_memory", "streamed"])
def test_a_checkpoint_within_an_epoch_resumes_to_the_uninterrupted_result(parts, tmp_path, monkeypatch,
                                                                          streamed, device):
    """The run writes last.pt at every batch (checkpoint_minutes tiny); the file as it was inside
    epoch 2 is kept aside, and resuming from it must end where the run ended: bit for bit on CPU."""
    train, val = parts
    if streamed:
        monkeypatch.setattr(batches_module, "IN_MEMORY_BYTES", 0)
        monkeypatch.setattr(batches_module, "STREAM_BLOCK", 100)  # several pools per epoch
    # on an accelerator the loss is read back (and a checkpoint can be written) every SYNC_EVERY
    # batches only: make batch 7 one of those moments, so the same position is tested there
    monkeypatch.setattr(train_module, "SYNC_EVERY", 7)
    kw = dict(hidden_dims=(32, 16), batch_size=64, epochs=3, patience=None, seed=4, device=device, verbose=False)
    plain = SpectraVAE(**kw).fit(train, validation=val)
    kept = tmp_path / "1_7.pt"
    real_save = _keep_checkpoints(monkeypatch, tmp_path, {(1, 7)})
    full = SpectraVAE(checkpoint_minutes=1e-9, **kw).fit(train, validation=val, checkpoint_dir=tmp_path / "run")
    monkeypatch.setattr(estimator_module, "save_checkpoint", real_save)  # the rest stays patched (streaming)
    assert kept.is_file()
    payload = torch.load(kept, weights_only=True)
    assert len(payload["history"]["epoch"]) == 1 and payload["training"]["batch"] == 7

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an exact resume warns about nothing
        resumed = SpectraVAE.resume(kept, train, validation=val, checkpoint_dir=tmp_path / "resumed", device=device)
    assert list(resumed.history.epoch) == [1, 2, 3]
    cols = ["train_loss", "train_reconstruction", "train_kl", "val_loss", "val_rmse"]
    if device == "cpu":
        np.testing.assert_array_equal(resumed.history[cols].to_numpy(), full.history[cols].to_numpy())
        np.testing.assert_array_equal(full.history[cols].to_numpy(), plain.history[cols].to_numpy())
        assert _same_weights(resumed.model_.state_dict(), full.model_.state_dict())
        assert _same_weights(resumed._final_training["state_dict"], full._final_training["state_dict"])
        assert _same_weights(full.model_.state_dict(), plain.model_.state_dict())
    else:  # CUDA kernels need not be deterministic
        np.testing.assert_allclose(resumed.history[cols].to_numpy(), full.history[cols].to_numpy(), rtol=1e-4)
        for k, v in full.model_.state_dict().items():
            assert torch.allclose(resumed.model_.state_dict()[k], v, rtol=1e-3, atol=1e-5), k


def test_resume_from_final_pt_goes_on_after_early_stopping_from_the_moment_training_ended(parts, tmp_path,
                                                                                          monkeypatch):
    train, val = parts
    kw = dict(hidden_dims=(16,), learning_rate=0.05, batch_size=512, seed=1, epochs=40, verbose=False)
    early = SpectraVAE(patience=1, **kw).fit(train, validation=val)
    n = len(early.history)
    assert n < 40 and early._state.stopped_early
    early.save(tmp_path / "final.pt")
    # the same plan without early stopping, keeping last.pt as it was after epochs n and n + 1
    _keep_checkpoints(monkeypatch, tmp_path, {(n, 0), (n + 1, 0)})
    full = SpectraVAE(patience=None, **kw).fit(train, validation=val, checkpoint_dir=tmp_path / "full")
    monkeypatch.undo()
    at = {e: torch.load(tmp_path / f"{e}_0.pt", weights_only=True)["training"] for e in (n, n + 1)}

    payload = torch.load(tmp_path / "final.pt", weights_only=True)
    training = payload["training"]
    # the top-level weights are the best epoch's (for use); the training section's weights,
    # optimiser and position are all those of the moment training ended
    assert _same_weights(payload["state_dict"], early.model_.state_dict())
    assert training["epoch"] == n and training["batch"] == 0
    assert {int(s["step"]) for s in training["optimizer"]["state"].values()} == {training["step"]}
    assert _same_weights(training["state_dict"], at[n]["state_dict"])

    more = SpectraVAE.resume(tmp_path / "final.pt", train, validation=val, epochs=n + 1)
    assert list(more.history.epoch) == list(range(1, n + 2))  # at least one more epoch: patience counts afresh
    np.testing.assert_array_equal(more.history.train_loss, full.history.train_loss[: n + 1])
    assert _same_weights(more._final_training["state_dict"], at[n + 1]["state_dict"])


def test_long_epochs_show_batches_pixels_per_second_and_an_eta(parts, monkeypatch, capsys):
    train, _ = parts
    monkeypatch.setattr(train_module, "PROGRESS_DELAY", 0.0)  # as if every epoch were long
    SpectraVAE(hidden_dims=(16,), epochs=1, batch_size=64, verbose=True).fit(train)
    err = capsys.readouterr().err
    n = -(-len(train) // 64)
    assert "epoch 1: " in err and f"{n}/{n}" in err and "px/s" in err and "<00:00" in err
    monkeypatch.undo()  # the real delay: an epoch this short shows only the bar of epochs
    SpectraVAE(hidden_dims=(16,), epochs=1, batch_size=64, verbose=True).fit(train)
    err = capsys.readouterr().err
    assert "training: " in err and "epoch 1: " not in err


def test_the_train_command_with_resume_goes_on_from_last_pt(demo_dir, tmp_path, monkeypatch):
    from spectra_vae.__main__ import main

    args = ["train", "--data", str(demo_dir), "--hidden-dims", "16", "--batch-size", "256", "--seed", "3",
            "--epochs", "3"]
    real_save = estimator_module.save_checkpoint

    def killed_after_epoch_1(payload, path):  # the batch job's time limit, right after last.pt of epoch 1
        real_save(payload, path)
        if (payload.get("training") or {}).get("epoch") == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(estimator_module, "save_checkpoint", killed_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        main([*args, "--out", str(tmp_path / "a")])
    monkeypatch.undo()
    first = SpectraVAE.load(tmp_path / "a" / "model" / "last.pt").history
    assert main(["train", "--resume", str(tmp_path / "a"), "--epochs", "3"]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    a, b = (SpectraVAE.load(tmp_path / d / "model" / "final.pt") for d in ("a", "b"))
    assert list(a.history.epoch) == [1, 2, 3]
    assert a.history.seconds.iloc[0] == first.seconds.iloc[0]  # epoch 1 is the first call's, not trained again
    np.testing.assert_array_equal(a.history.train_loss.to_numpy(), b.history.train_loss.to_numpy())
    assert _same_weights(a.model_.state_dict(), b.model_.state_dict())


def test_the_plateau_rule_stops_when_the_best_rmse_stops_improving_by_the_tolerance():
    from spectra_vae.model.schedule import on_plateau

    assert not on_plateau([1.0, 0.9, 0.8, 0.7], 2)  # still improving by more than 1 % an epoch
    assert not on_plateau([1.0, 0.5, 0.49], 3)  # fewer epochs than the window: no verdict yet
    assert on_plateau([1.0, 0.5, 0.4995, 0.4991, 0.4993], 3)  # the best moved 0.2 % in 3 epochs
    assert not on_plateau([1.0, 0.5, 0.51, 0.52, 0.49], 3)  # a 2 % step within the window
    assert on_plateau([1.0, 0.5, 0.6, 0.7, 0.8], 3)  # worse since: the best did not move at all
    assert not on_plateau([1.0, 0.5, 0.4, 0.3], 3, tolerance=0.5)  # 40 % < the 50 % asked for? 0.3 ≤ 0.5·1.0
    assert on_plateau([float("nan"), 1.0, 0.999, 0.998, 0.997], 3)  # missing values (older rows) skipped


def test_an_auto_run_anneals_on_its_plateau_and_stops_one_window_later(parts, monkeypatch):
    """`epochs="auto"`: when the best RMSE has improved by less than the tolerance over a window, the
    learning rate decays to its floor over one more window, and training ends there, keeping the
    epoch of lowest validation RMSE."""
    train, val = parts
    monkeypatch.setattr(schedule_module, "PLATEAU_STEPS", 4)
    vae = SpectraVAE(hidden_dims=(16,), batch_size=64, verbose=False).fit(train, validation=val)
    h = vae.history
    window = schedule_module.plan_epochs("auto", 10, math.ceil(len(train) / 64))[2]
    curve = list(h.val_rmse)
    detected = next(e for e in range(1, len(curve) + 1) if schedule_module.on_plateau(curve[:e], window))
    assert vae._state.stopped_early and len(h) == detected + window < vae.epochs_
    peak = h.lr.iloc[detected - 1]
    assert h.lr.iloc[-1] == pytest.approx(schedule_module.LR_FLOOR * 2e-3, rel=0.05) and h.lr.iloc[-1] < peak
    assert vae.best_epoch_ == int(h.epoch[h.val_rmse.idxmin()])

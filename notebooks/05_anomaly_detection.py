# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Anomaly detection
# A VAE trained on normal tissue only: which pixels does it not explain? A pixel can be unexplained in
# two ways: its residual is large where normal tissue's residuals also vary (normal molecules in unusual
# proportions, like the demo's tumour), or it has a residual where normal residuals sit at the noise floor
# (a compound normal tissue lacks, like the demo's paraffin residue). So the score measures the residual
# inside the principal directions of normal residual variation, plainly (`inside`) and scaled by their
# variances (`t2`, Hotelling's T²), and outside them (`q`), each with a tail fitted on normal tissue,
# combined by Fisher's method (`SpectraVAE.anomaly_score`, see `spectra_vae.anomaly.monitor`). The threshold is
# calibrated on normal scans to a chosen false-positive rate.
# Background never counts: the model's own tissue rule decides what is tissue. The baselines (RX with a
# Ledoit–Wolf covariance, PCA with Hotelling's T² and Q) are fitted on exactly the VAE's training pixels.

# %% tags=["parameters"]
data_dir: str = ""  # empty: the data folder recorded with the run; give another only if the data moved
run_dir: str = ""  # the run folder of 02_train; empty: reports/demo for the demo data, else the newest run on data_dir
checkpoint: str = ""  # model file; empty: run_dir/model/final.pt as written by 02_train
false_positive_rate: float = 0.01  # share of normal tissue pixels the threshold flags (on the validation scans)
n_bootstrap: int = 200  # resamples of whole scans for the AUROC intervals; 0: none
seed: int = 0

# %%
# %matplotlib inline
import numpy as np

from spectra_vae import DataError, anomaly, load_dataset, workflow
from spectra_vae.views import plots

checked = workflow.check_parameters(dict(false_positive_rate=false_positive_rate, n_bootstrap=n_bootstrap, seed=seed))
false_positive_rate, n_bootstrap, seed = checked["false_positive_rate"], checked["n_bootstrap"], checked["seed"]
opened = workflow.open_run(run_dir, checkpoint, data_dir)  # the splits as recorded, never recomputed
vae, splits, data, ckpt, run = opened.vae, opened.splits, opened.data_dir, opened.checkpoint, opened.path
normal_labels = opened.normal_labels  # given once, to 02_train; every other label is an anomaly
sets = {"normal": splits.test} | ({"abnormal": opened.abnormal} if opened.abnormal is not None else {})
calibration = splits.validation
print(f"run: {run}\nmodel: {ckpt} (trained on {splits.train.scans})\ndata: {data}\ntissue: {vae.tissue_rule_}")
for note in opened.notes:  # new or changed scans in the data folder since training
    print(f"note: {note}")
for name, ds in sets.items():
    print(f"{name}: {ds.scans}")
print(f"calibration: {calibration.scans if calibration is not None else 'none'}; normal labels: {normal_labels}")

# %% [markdown]
# ## Calibration
# The tails of the statistics are refitted on the calibration scans' tissue and the threshold set to flag
# `false_positive_rate` of it. How flags cluster in space there sets the scan-level limits below.

# %%
if calibration is None or len(calibration) == 0:
    raise DataError("this run has no normal validation scans to calibrate on: train it with a "
                             "val_split (normal scans the model does not train on)")
vae.calibrate(calibration, false_positive_rate=false_positive_rate)
m = vae.monitor_
print(f"residual directions: {m.subspace.n_components}; statistics combined: {', '.join(m.statistics)}\n"
      f"tails fitted on {m.tails_from}\nthreshold: score > {m.threshold:.4g} "
      f"(flags {m.calibration['flagged_fraction']:.2%} of the calibration tissue); design effect {m.design_effect:.2f}"
      + ("\nresiduals weighted by each pixel's own noise level (the preprocessing divides each spectrum by a "
         "factor of its own)" if m.noise_reference is not None else ""))
if len(calibration.scans) < 3:
    print(f"caution: calibrated on {len(calibration.scans)} normal scan(s). How normal scans differ from one another "
          "(patients, sections) is not in the threshold, so a held-out normal scan's flagged fraction can sit well "
          "above or below the nominal rate; calibrate on more normal scans to include it")

# %% [markdown]
# ## The two terms of the score
# Inside the principal directions of normal residual variation against outside them (Q), tissue pixels only.

# %%
frames = {name: vae.score_samples(ds) for name, ds in sets.items()}
groups = anomaly.pixel_groups(frames, sets, normal_labels)
fig = plots.score_scatter({n: (g["inside"].to_numpy(), g["q"].to_numpy()) for n, g in groups.items()},
                          "residual inside the normal directions (model units²)",
                          "residual outside them, Q (model units²)",
                          "The two residual terms, tissue pixels", seed=seed)
workflow.save_figure(fig, run, "05_inside_vs_q")

# %%
anomaly.score_statistics(groups, ("inside", "q", "kl", "reconstruction_error", "anomaly_score")).round(4)

# %% [markdown]
# ## Score maps beside the labels

# %%
for name, ds in sets.items():
    f = frames[name]
    maps = anomaly.score_maps(ds, f["anomaly_score"].to_numpy(), f["tissue"].to_numpy())
    finite = np.concatenate([v[np.isfinite(v)] for v in maps.values()])
    lo, hi = np.percentile(finite, [1, 99]) if finite.size else (0, 1)
    fig = plots.scan_images(maps, f"Anomaly score, {name} scans (tissue only)", "Fisher score (−2 Σ log p)",
                            cmap="inferno", vmin=lo, vmax=hi)
    workflow.save_figure(fig, run, f"05_score_maps_{name}")
    if ds.labels is not None:
        fig = plots.scan_images({s: ds.image(ds.labels.astype(float), k) for k, s in enumerate(ds.scans)},
                                f"Ground truth, {name} scans", "class", cmap="tab10", categorical_names=ds.label_names)
        workflow.save_figure(fig, run, f"05_labels_{name}")

# %% [markdown]
# ## Each anomaly kind against the baselines
# Every held-out scan pooled; each kind's pixels against all normal tissue pixels; intervals from a bootstrap
# over whole scans (pixels of one scan are not independent, so with few scans the intervals are wide).

# %%
held_out = load_dataset(data).select_scans([s for ds in sets.values() for s in ds.scans])
f_all = vae.score_samples(held_out)
mask = f_all["tissue"].to_numpy()
kinds = anomaly.anomaly_kinds(held_out, normal_labels)
if not any((t[mask] == 1).any() for t in kinds.values()):
    table = None
    print("no labelled anomalous tissue pixels among the held-out scans: nothing to evaluate")
else:
    scores = anomaly.baseline_scores(vae, splits.train, held_out, normal_calibration=calibration,
                                     vae_scores=f_all["anomaly_score"].to_numpy())
    table = anomaly.evaluate_kinds(scores, held_out, mask, normal_labels, n_boot=n_bootstrap, seed=seed)
    for kind, truth in kinds.items():
        if (truth[mask] == 1).any():
            fig = plots.roc(anomaly.roc_curves(scores, truth, mask), f"{kind} vs normal tissue, held-out scans",
                            positive=kind)
            workflow.save_figure(fig, run, f"05_roc_{kind}")
    print(anomaly.verdict(table))
table.round(3) if table is not None else None

# %% [markdown]
# ## Flags per scan, and the scans' own calls
# Pixels flagged at the calibrated threshold; a scan is called abnormal when its flagged fraction exceeds the
# nominal rate by more than the one-sided 99 % spread of normal scans (widened by how flags cluster). That
# spread is measured within the calibration scans; differences between patients enter it only as far as the
# calibration scans differ, so with one or two of them a normal scan can land far from the nominal rate.

# %%
scan_calls = vae.scan_scores(held_out)
normal_test = scan_calls.loc[sets["normal"].scans, "flagged fraction"]
print(f"flagged on the held-out normal scans' tissue: {normal_test.mean():.2%} (nominal {false_positive_rate:.1%})")
scan_calls.round(4)

# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Anomaly detection
# A VAE trained on normal tissue only: which pixels does it not explain? Every pixel gets a
# reconstruction error and a KL term; the anomaly score is the negative ELBO at the latent mean
# (reconstruction NLL + β·KL, `SpectraVAE.anomaly_score`). Background pixels are left out by a
# tissue mask computed from the spectra (amide I intensity), not from labels. The VAE is compared
# on the same pixels with PCA reconstruction error (as many components as latent dimensions) and
# the RX detector (Mahalanobis distance to the normal training pixels). The scans (normal test, normal
# validation, abnormal), the tissue rule and which labels count as normal all come from the run's record:
# split names and `normal_labels` are given once, to 02_train.

# %% tags=["parameters"]
data_dir: str = ""  # empty: the data folder recorded with the run; give another only if the data moved
run_dir: str = ""  # the run folder of 02_train; empty: reports/demo for the demo data, else the newest run on data_dir
checkpoint: str = ""  # model file; empty: run_dir/model/final.pt as written by 02_train
threshold_quantile: float = 0.99  # flag pixels scoring above this quantile of normal validation tissue
seed: int = 0

# %%
# %matplotlib inline
import numpy as np
import pandas as pd

from spectra_vae import anomaly, pipeline, plots, runs

threshold_quantile = pipeline.check_float("threshold_quantile", threshold_quantile, 0.0, strict=True)
if threshold_quantile >= 1:
    raise pipeline.DataError(f"parameter threshold_quantile: must be < 1, got {threshold_quantile}")
opened = runs.open_run(run_dir, checkpoint, data_dir)  # the splits as recorded, never recomputed
vae, splits, data, ckpt, run = opened.vae, opened.splits, opened.data_dir, opened.checkpoint, opened.path
sets = {"normal": splits.test}
if opened.abnormal is not None:
    sets["abnormal"] = opened.abnormal
threshold_set = splits.validation
anomalous = opened.anomalous_labels()  # label names not counted as normal (normal_labels of the run)
print(f"run: {run}\nmodel: {ckpt} (trained on {splits.train.scans})\ndata: {data}")
for note in opened.notes:  # new or changed scans in the data folder since training
    print(f"note: {note}")
for name, ds in sets.items():
    print(f"{name}: {ds.scans}")
if "abnormal" not in sets:
    print(f"no abnormal scans recorded with this run (abnormal_split {opened.params.get('abnormal_split')!r})")
print(f"threshold chosen on: {threshold_set.scans if threshold_set is not None else 'none'}")
print(f"anomalous labels: {anomalous}")

# %% [markdown]
# ## Scores per pixel
# Tissue pixels only (spectral mask). Where ground truth exists, abnormal scans are split into tumour pixels and
# the normal tissue around them.

# %%
frames, masks = {}, {}
for name, ds in sets.items():
    f = vae.score_samples(ds)
    masks[name] = vae.tissue_mask(ds)
    frames[name] = f
groups = {"normal scans": frames["normal"][masks["normal"]]}
if "abnormal" in sets:
    ab, truth = frames["abnormal"], anomaly.ground_truth_anomaly(sets["abnormal"], anomalous)
    if truth is not None:
        groups["abnormal scans: normal tissue"] = ab[masks["abnormal"] & (truth == 0)]
        groups["abnormal scans: tumour"] = ab[masks["abnormal"] & (truth == 1)]
    else:
        groups["abnormal scans"] = ab[masks["abnormal"]]
{name: len(g) for name, g in groups.items()}

# %%
fig = plots.score_scatter({n: (g["reconstruction_error"].to_numpy(), g["kl"].to_numpy()) for n, g in groups.items()},
                          f"reconstruction RMSE, {plots.value_label(vae.preprocess)}", "KL term (nats)",
                          "Reconstruction error vs KL, tissue pixels", seed=seed)
pipeline.save_figure(fig, run, "05_error_vs_kl")

# %% [markdown]
# ## Key statistics side by side

# %%
anomaly.score_statistics(groups, ("reconstruction_error", "kl", "anomaly_score")).round(4)

# %% [markdown]
# ## Threshold and flagged fraction per scan
# The threshold is a quantile of the anomaly score on normal validation tissue pixels, so about 1 − quantile of
# normal tissue is flagged by construction.

# %%
if threshold_set is not None and len(threshold_set):
    t_mask = vae.tissue_mask(threshold_set)
    threshold = anomaly.threshold_from_normal(vae.anomaly_score(threshold_set)[t_mask], threshold_quantile)
else:
    normal_scores = frames["normal"]["anomaly_score"][masks["normal"]].to_numpy()
    threshold = anomaly.threshold_from_normal(normal_scores, threshold_quantile)
    print("no normal validation scans: threshold chosen on the normal test scans (optimistic)")
print(f"threshold: anomaly score > {threshold:.4g} (the {threshold_quantile:.1%} quantile of normal validation tissue)")
pd.concat({name: anomaly.flagged_fraction(sets[name], frames[name]["anomaly_score"].to_numpy(), threshold, masks[name])
           for name in sets}).round(4)

# %% [markdown]
# ## Score maps
# Anomaly score per pixel (background left blank), next to the ground-truth labels where there are any.

# %%
for name, ds in sets.items():
    score = np.where(masks[name], frames[name]["anomaly_score"].to_numpy(), np.nan)
    lo, hi = np.nanpercentile(score, [1, 99]) if np.isfinite(score).any() else (0, 1)
    fig = plots.scan_images({s: ds.image(score, k) for k, s in enumerate(ds.scans)},
                            f"Anomaly score, {name} scans (tissue only)", "negative ELBO (nats)", cmap="inferno",
                            vmin=lo, vmax=hi)
    pipeline.save_figure(fig, run, f"05_score_maps_{name}")
    if ds.labels is not None:
        fig = plots.scan_images({s: ds.image(ds.labels.astype(float), k) for k, s in enumerate(ds.scans)},
                                f"Ground truth, {name} scans", "class", cmap="tab10", categorical_names=ds.label_names)
        pipeline.save_figure(fig, run, f"05_labels_{name}")

# %% [markdown]
# ## ROC against ground truth, with the baselines
# Tumour pixels against the normal tissue pixels of the abnormal scans, tissue mask applied to every method alike.

# %%
ab = sets.get("abnormal")
truth = anomaly.ground_truth_anomaly(ab, anomalous) if ab is not None else None
if truth is None or not ((truth[masks["abnormal"]] == 1).any() and (truth[masks["abnormal"]] == 0).any()):
    table = None
    print("no ground truth with both tumour and normal tissue pixels: ROC cannot be computed")
else:
    scores = anomaly.baseline_scores(vae, splits.train, ab, frames["abnormal"]["anomaly_score"].to_numpy())
    table = anomaly.evaluate(scores, truth, masks["abnormal"])
    fig = plots.roc(anomaly.roc_curves(scores, truth, masks["abnormal"]), "Tumour vs normal tissue, abnormal scans")
    pipeline.save_figure(fig, run, "05_roc")
    print(anomaly.verdict(table))
table.round(4) if table is not None else None

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
# inside the principal directions of normal residual variation (`subspace`: the smaller tail probability
# of the plain squared projection `inside` and of Hotelling's `t2`, so that the two count once) and outside
# them (`q`), each with a tail fitted on normal tissue, and combines the two tail probabilities by Fisher's
# method, whose null (χ²₄ for two independent p-values) it can name. The score is −log₁₀ p: 2 means a
# pixel as unusual as 1 % of normal tissue (`SpectraVAE.anomaly_score`, see `spectra_vae.anomaly.monitor`).
# The threshold is calibrated scan by scan on normal scans the model did not train on.
# Background never counts: the model's own tissue rule decides what is tissue. The baselines (RX with a
# Ledoit–Wolf covariance, PCA with Hotelling's T² and Q) are fitted on the same tissue pixels as the VAE's
# residual model, with the same preprocessing and noise weighting.

# %% tags=["parameters"]
data_dir: str = ""  # empty: the data folder recorded with the run; give another only if the data moved
run_dir: str = ""  # the run folder of 02_train; empty: reports/demo for the demo data, else the newest run on data_dir
checkpoint: str = ""  # model file; empty: run_dir/model/final.pt as written by 02_train
false_positive_rate: float = 0.01  # share of a new normal scan's tissue the threshold flags, on average
smoothing: int = 1  # k: score each tissue pixel by the mean over its k×k tissue window; 1: each pixel alone
n_bootstrap: int = 200  # resamples of whole scans for the AUROC intervals; 0: none
seed: int = 0

# %%
# %matplotlib inline
from spectra_vae import DataError, anomaly, load_dataset, workflow
from spectra_vae.views import anomaly_plots, plots

workflow.plain_warnings()  # warnings about the data as their message alone

checked = workflow.check_parameters(dict(false_positive_rate=false_positive_rate, smoothing=smoothing,
                                         n_bootstrap=n_bootstrap, seed=seed))
false_positive_rate, smoothing = checked["false_positive_rate"], checked["smoothing"]
n_bootstrap, seed = checked["n_bootstrap"], checked["seed"]
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
labelled = any(ds.labels is not None for ds in [*sets.values(), calibration] if ds is not None)
print(f"calibration: {calibration.scans if calibration is not None else 'none'}"
      + (f"; normal labels: {normal_labels}" if labelled else "; the scans carry no labels"))

# %% [markdown]
# ## Calibration
# The tails are refitted on the calibration scans' tissue. The threshold is cross-conformal over those scans:
# each is flagged by a threshold (and tails) the other scans set, and the threshold flags
# `false_positive_rate` of such a held-out scan's tissue on average. How far those held-out shares spread is
# what a new patient's scan can expect, and it sets the scan-level limits below. One calibration scan can
# promise nothing about another (the warning says so): calibrate on three or more.
# With `smoothing` k > 1 each tissue pixel's score is the mean over the tissue pixels of its k×k window (tumour
# is a region, not a pixel), and everything here, the threshold and the scan limits, is for that score; the
# baselines below are smoothed the same way.

# %%
if calibration is None or len(calibration) == 0:
    raise DataError("this run has no normal validation scans to calibrate on: train it with a "
                    "val_split (normal scans the model does not train on)")
vae.calibrate(calibration, false_positive_rate=false_positive_rate, normal_labels=tuple(normal_labels),
              smoothing=smoothing)
m = vae.monitor_
cal = m.calibration
print(f"residual directions: {m.subspace.n_components}; score: {m.combination} over {' + '.join(m.statistics)} "
      f"({m.tail_kind} tails)"
      + (f", averaged over {m.smoothing}×{m.smoothing} tissue windows" if m.smoothing > 1 else "")
      + f"\ntails fitted on {m.tails_from}\nthreshold: score > {m.threshold:.3g} "
      f"(p < {cal['p_threshold']:.2g}; flags {cal['flagged_fraction']:.2%} of the calibration tissue)"
      + ("\nresiduals weighted by each pixel's own noise level (the preprocessing divides each spectrum by a "
         "factor of its own)" if m.noise_reference is not None else ""))
for scan, share in cal.get("held_out_fraction", {}).items():
    print(f"  {scan}: {share:.2%} flagged by the threshold the other calibration scans set")
if "expected_fraction" in cal:
    lo, hi = cal["expected_fraction"]
    print(f"a new normal scan: {lo:.2%}–{hi:.2%} of its tissue flagged (90 % prediction interval, "
          f"{len(cal['scans'])} calibration scans)")
print("Q's limit at the nominal rate: " + ", ".join(f"{k} {v:.3g}" for k, v in cal.get("q_limits", {}).items()))

# %% [markdown]
# ## Do the tails hold on held-out normal tissue?
# Each statistic's tail was fitted on the calibration scans. On the normal test scans the share of tissue pixels
# whose p-value is at most p should be p (the diagonal): above it a tail promises too little, below it too much.

# %%
normal_frame = vae.score_samples(sets["normal"])
normal_frame = normal_frame[normal_frame["tissue"]]
values = {k: normal_frame[k].to_numpy() for k in ("inside", "t2", "q")}
curves = {s: anomaly.pp_curve(m.part_log_p(values, s)) for s in ("t2", "inside", "subspace", "q")}
curves["the score (combined)"] = anomaly.pp_curve(m.log_p(values))
fig = anomaly_plots.pp_plot(curves, f"Tails on the held-out normal scans {sets['normal'].scans}",
                            n_pixels=len(normal_frame))
workflow.save_figure(fig, run, "05_tails_pp")

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
anomaly.score_statistics(groups, ("inside", "t2", "subspace", "q", "kl", "reconstruction_error",
                                  "anomaly_score")).round(4)

# %% [markdown]
# ## Score maps beside the labels
# The score is −log₁₀ p on a logarithmic colour scale, so that a shift in proportions (a few units) and a foreign
# compound (hundreds) both show; the calibrated threshold is marked on the colour bar and flagged pixels are
# outlined.

# %%
for name, ds in sets.items():
    f = frames[name]
    maps = anomaly.score_maps(ds, f["anomaly_score"].to_numpy(), f["tissue"].to_numpy())
    smoothed = f", mean over {m.smoothing}×{m.smoothing} tissue windows" if m.smoothing > 1 else ""
    label = ("mean of −log₁₀ p over the window" if m.smoothing > 1 else anomaly_plots.SCORE_LABEL)
    fig = anomaly_plots.score_maps(maps, m.threshold, f"Anomaly score, {name} scans (tissue only{smoothed})",
                                   colorbar_label=label)
    workflow.save_figure(fig, run, f"05_score_maps_{name}")
    if ds.labels is not None:
        fig = plots.scan_images({s: ds.image(ds.labels.astype(float), k) for k, s in enumerate(ds.scans)},
                                f"Ground truth, {name} scans", "class", cmap="tab10", categorical_names=ds.label_names)
        workflow.save_figure(fig, run, f"05_labels_{name}")

# %% [markdown]
# ## Each anomaly kind against the baselines
# Every held-out scan pooled; each kind's pixels against all normal tissue pixels; intervals from a bootstrap
# over whole scans (pixels of one scan are not independent, so with few scans the intervals are wide, and a kind
# found in only one scan gets none). The baselines are fitted on the tissue pixels the VAE's residual model was
# fitted on: PCA with as many components as rise above the noise floor (the VAE's own rule) and, beside it, with
# 99 % of the variance.

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
# Pixels flagged at the calibrated threshold; a scan is called abnormal when its flagged fraction exceeds the limit
# a normal scan of its size stays under 99 % of the time. With three or more calibration scans that limit comes
# from how their held-out flagged shares spread (so it includes how normal scans differ, as far as those scans
# show it; with few of them Student's t makes it wide); with fewer, only from how flags cluster within a scan,
# and a normal scan from another patient can cross it.

# %%
scan_calls = vae.scan_scores(held_out)
normal_test = scan_calls.loc[sets["normal"].scans, "flagged fraction"]
source = (f"the spread between {m.scan_limit.scans} calibration scans" if m.scan_limit.spread_known
          else "how flags cluster within a scan only (fewer than 3 calibration scans)")
print(f"flagged on the held-out normal scans' tissue: {normal_test.mean():.2%} (nominal {false_positive_rate:.1%}); "
      f"scan limits from {source}")
scan_calls.round(4)

# %% [markdown]
# Where the flags fall, by the ground-truth labels (tissue pixels of the held-out scans). For a normal kind of
# tissue the share flagged is its own false-positive rate: the threshold promises the average over a new scan's
# tissue, and a kind the model explains less well (on the demo, epithelium) is flagged more than one it
# explains well, so a scan's flagged share follows what tissue it holds. For an anomaly kind, the share of its
# pixels found.

# %%
where_flagged = anomaly.flagged_by_label(frames, sets, normal_labels)
where_flagged.round(4) if len(where_flagged) else print("the held-out scans carry no labels")

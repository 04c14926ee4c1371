"""Builds the numbered notebooks (thin cells calling spectra_vae)."""
import hashlib

import nbformat as nbf
from nbformat.v4 import new_notebook, new_markdown_cell, new_code_cell

def nb(cells):
    n = new_notebook()
    n.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                  "language_info": {"name": "python"}}
    out = []
    for i, (kind, src, *tags) in enumerate(cells):
        c = new_markdown_cell(src.strip()) if kind == "md" else new_code_cell(src.strip())
        c.id = hashlib.sha1(f"{i}:{src.strip()}".encode()).hexdigest()[:8]  # stable across rebuilds
        if tags:
            c.metadata["tags"] = tags
        out.append(c)
    n.cells = out
    return n

COMMON_PARAMS = '''data_dir = ""  # directory of .npy scans; empty: the embedded demo data, generated on first use
run_dir = ""  # report folder for figures and the model; empty: reports/demo in the repository'''

nb01 = nb([
("md", """# 01 · Data exploration
What is in the dataset before any model sees it: the numbers, the spectra, one image per scan,
and which pixels are tissue. Run it on your own scans with
`papermill 01_data_exploration.ipynb out.ipynb -p data_dir /path/to/scans`."""),
("code", COMMON_PARAMS + '''
max_pixels = 20000  # pixels per scan used for the mean spectra
seed = 0''', "parameters"),
("code", '''%matplotlib inline
import numpy as np
from spectra_vae import load_dataset, pipeline, plots, analysis

data = pipeline.resolve_data_dir(data_dir)
run = pipeline.resolve_run_dir(run_dir)
max_pixels = pipeline.check_int("max_pixels", max_pixels, 1)
seed = pipeline.check_int("seed", seed, 0)
ds = load_dataset(data)
print(f"data: {data}\\nreport: {run}")'''),
("md", "## The dataset in numbers"),
("code", '''# NBVAL_CHECK_OUTPUT
print(analysis.dataset_overview(ds).to_string())'''),
("code", '''ds.summary()'''),
("md", "## Spectra\nMean ± one standard deviation per scan (tissue and background pooled), then single pixels."),
("code", '''fig = plots.mean_spectra(ds, max_pixels=max_pixels, seed=seed)
pipeline.save_figure(fig, run, "01_mean_spectra")'''),
("code", '''amide = analysis.amide_i_intensity(ds)
threshold = analysis.tissue_threshold(amide)
tissue = amide > threshold  # the same rule as analysis.tissue_mask, without reading the data twice
rng = np.random.default_rng(seed)
examples = {}
for label, pool in (("tissue", np.flatnonzero(tissue)), ("background", np.flatnonzero(~tissue))):
    for i in rng.choice(pool, size=min(2, len(pool)), replace=False):
        k, r, c = ds.coords[i]
        examples[f"{label}: {ds.scans[k]} ({r}, {c})"] = ds.read([i])[0]
fig = plots.spectra(ds.wavenumbers, examples, "Example pixel spectra", ds.wavenumbers_known)
pipeline.save_figure(fig, run, "01_example_spectra")'''),
("md", "## One image per scan\nAmide I intensity (mean absorbance 1630–1680 cm⁻¹): tissue cores stand out from the noise-only background."),
("code", '''fig = plots.scan_images({n: ds.image(amide, k) for k, n in enumerate(ds.scans)},
                        "Amide I intensity (1630–1680 cm⁻¹)", "mean absorbance (a.u.)")
pipeline.save_figure(fig, run, "01_amide_i_images")'''),
("md", "## Tissue and background\nThe mask comes from the spectra alone (amide I intensity: Otsu split, lowered to 10 noise s.d. above the background), so it works on data without labels."),
("code", '''fractions = {n: float(tissue[ds.scan_of() == k].mean()) for k, n in enumerate(ds.scans)}
print(f"amide I threshold: {threshold:.4f} absorbance; tissue fraction per scan:")
print({n: round(f, 3) for n, f in fractions.items()})
fig = plots.scan_images({n: ds.image(tissue.astype(float), k) for k, n in enumerate(ds.scans)},
                        "Tissue mask (1 = tissue)", "tissue", cmap="gray", vmin=0, vmax=1)
pipeline.save_figure(fig, run, "01_tissue_mask")'''),
("code", '''if ds.labels is not None:
    fig = plots.scan_images({n: ds.image(ds.labels.astype(float), k) for k, n in enumerate(ds.scans)},
                            "Ground-truth label maps", "class", cmap="tab10", categorical_names=ds.label_names)
    pipeline.save_figure(fig, run, "01_label_maps")
    agree = (tissue == (ds.labels > 0)).mean()
    print(f"tissue mask agrees with the ground truth on {agree:.1%} of pixels")
else:
    print("no label maps in this dataset")'''),
])

nb02 = nb([
("md", """# 02 · Train the VAE
Trains on the training split with per-epoch validation, early stopping and checkpoints
(`best.pt`, `last.pt`, `final.pt` in `<run_dir>/model/`). On a server:
`papermill 02_train.ipynb out.ipynb -p epochs 50 -p data_dir /data/scans`."""),
("code", COMMON_PARAMS + '''
epochs = 20
preprocess = ""  # e.g. cut(950,1800)|snv ; see spectra_vae.preprocessing; empty: none
tissue_only = False  # True: train and validate on tissue pixels only (amide I mask); needed with snv or vector
latent_dim = 2
hidden_dims = "221,110"  # encoder layer sizes; the decoder mirrors them
reconstruction = "gaussian"  # gaussian | mse | mae | bce
beta = 1.0
batch_size = 512
learning_rate = 0.002
patience = 10  # epochs without validation improvement before stopping; 0 turns it off
seed = 0
device = "auto"  # auto | cpu | cuda | mps
precision = "fp32"  # fp32 | bf16 (mixed precision for GPUs; see the README)
train_split = "normal_train"  # keys of data_splits.json; without them: 80/10/10 by scan
val_split = "normal_val"
test_split = "normal_test"''', "parameters"),
("code", '''%matplotlib inline
from spectra_vae import pipeline, plots
from spectra_vae.loss import RECONSTRUCTIONS
from spectra_vae.preprocessing import Preprocessor
from spectra_vae.train import PRECISIONS

params = dict(
    epochs=pipeline.check_int("epochs", epochs, 1),
    latent_dim=pipeline.check_int("latent_dim", latent_dim, 1),
    hidden_dims=pipeline.parse_hidden_dims(hidden_dims),
    reconstruction=pipeline.check_choice("reconstruction", reconstruction, RECONSTRUCTIONS),
    beta=pipeline.check_float("beta", beta, 0.0),
    batch_size=pipeline.check_int("batch_size", batch_size, 1),
    learning_rate=pipeline.check_float("learning_rate", learning_rate, 0.0, strict=True),
    patience=pipeline.check_int("patience", patience, 0) or None,
    seed=pipeline.check_int("seed", seed, 0),
    device=str(device),
    precision=pipeline.check_choice("precision", precision, PRECISIONS),
    preprocess=str(preprocess),
    tissue_only=pipeline.check_bool("tissue_only", tissue_only),
)
Preprocessor(params["preprocess"])  # a bad pipeline fails here, naming the step
data = pipeline.resolve_data_dir(data_dir)
run = pipeline.resolve_run_dir(run_dir)
print(f"data: {data}\\nreport: {run}")
params'''),
("md", "## Training\nThe progress bar shows training loss, validation loss and validation RMSE (absorbance) per epoch."),
("code", '''vae, splits, final = pipeline.train(data, run, train_split=train_split, val_split=val_split,
                                    test_split=test_split, **params)
print(splits.how)
for name, part in (("train", splits.train), ("validation", splits.validation), ("test", splits.test)):
    if part is not None:
        print(f"{name:>10}: {len(part):>8} pixels from {part.scans}")'''),
("code", '''vae.history.round(5)'''),
("md", "## Loss curves\nReconstruction and KL apart (log scale where the values are positive; the Gaussian NLL can be negative, then symlog), and the validation RMSE in absorbance units. The dashed line marks the best epoch, whose weights the model keeps."),
("code", '''fig = plots.training_history(vae.history, vae.best_epoch_)
pipeline.save_figure(fig, run, "02_loss_curves")'''),
("md", "## Where the model went"),
("code", '''import os
for f in sorted((run / "model").iterdir()):
    print(f"{f}  ({os.path.getsize(f) / 1e6:.2f} MB)")
print(f"\\nbest epoch {vae.best_epoch_} of {len(vae.history)}; load with SpectraVAE.load({str(final)!r})")'''),
])

nb03 = nb([
("md", """# 03 · Reconstructions
How well the trained VAE reproduces spectra it has not seen: single pixels, the error distribution,
error maps per scan, the VAE against PCA with as many components, and a pixel browser.
Uses the model that `02_train` wrote (parameter `checkpoint`), never retrains."""),
("code", COMMON_PARAMS + '''
checkpoint = ""  # model file; empty: run_dir/model/final.pt as written by 02_train
noise_level = 0.002  # known noise s.d. of the data in absorbance, marked on the error histogram; 0 if unknown''', "parameters"),
("code", '''%matplotlib inline
import numpy as np
from spectra_vae import load_dataset, pipeline, plots, analysis
from spectra_vae.widgets import browse_reconstructions

noise_level = pipeline.check_float("noise_level", noise_level, 0.0)
vae, splits, data, ckpt = pipeline.open_run(run_dir, checkpoint, data_dir)
run = pipeline.resolve_run_dir(run_dir)
test = splits.test
print(f"model: {ckpt}\\ndata: {data}\\n{splits.how}\\nheld-out (test) scans: {test.scans}")
vae'''),
("md", "## Original vs reconstruction on held-out pixels\nIn absorbance units; the grey line is the residual."),
("code", '''seen = vae.prepare(test)  # the test pixels as the model sees them (after any preprocessing)
if vae.preprocess:
    print(f"preprocessing {vae.preprocess!r}: spectra below are in the preprocessed space")
err_test = vae.reconstruction_error(seen)  # per pixel, streamed: the spectra are not all held in memory
tissue_test = analysis.tissue_mask(test)
picks = analysis.pick_pixels(err_test, tissue_test)
titles = [f"{name}: {test.scans[test.coords[i][0]]} ({test.coords[i][1]}, {test.coords[i][2]}), RMSE {err_test[i]:.2g}"
          for name, i in picks.items()]
idx = list(picks.values())
x_picked = seen.read(idx)
r_picked = np.stack([vae.reconstruct(seen.select_pixels(np.array([i])))[0] for i in idx])
fig = plots.reconstructions(seen.wavenumbers, x_picked, r_picked, titles, known=test.wavenumbers_known)
pipeline.save_figure(fig, run, "03_reconstructions")'''),
("md", "## Error distribution\nPer-pixel RMSE over channels; background pixels are noise only, so their error sits at the noise level."),
("code", '''fig = plots.error_histogram({"tissue": err_test[tissue_test], "background": err_test[~tissue_test]},
                           noise_level or None, "Per-pixel reconstruction RMSE, held-out scans")
pipeline.save_figure(fig, run, "03_error_histogram")
print(f"held-out RMSE: all pixels {np.sqrt(np.mean(err_test**2)):.4g}, tissue {np.sqrt(np.mean(err_test[tissue_test]**2)):.4g}")'''),
("md", "## Error maps per scan\nEvery scan of the dataset; titles say whether the model trained on it."),
("code", '''full = load_dataset(data)
err_full = vae.reconstruction_error(full)
role = {n: "train" for n in splits.train.scans} | {n: "test" for n in test.scans}
role |= {n: "validation" for n in (splits.validation.scans if splits.validation is not None else [])}
maps = {f"{n} ({role.get(n, 'unused')})": full.image(err_full, k) for k, n in enumerate(full.scans)}
fig = plots.scan_images(maps, "Per-pixel reconstruction RMSE", "RMSE (absorbance)", cmap="magma", vmin=0)
pipeline.save_figure(fig, run, "03_error_maps")'''),
("md", "## The VAE against PCA\nPCA with as many components as latent dimensions, fitted on the same training pixels, scored on the same held-out pixels."),
("code", '''table = analysis.compare_with_pca(vae, splits.train, test)
winner = table["rmse"].idxmin()
print(f"lower held-out RMSE: {winner} ({table.loc['VAE', 'rmse']:.4g} VAE vs {table.loc['PCA', 'rmse']:.4g} PCA)")
table'''),
("code", '''fig = plots.method_comparison(table, f"Held-out RMSE, {vae.latent_dim} components each")
pipeline.save_figure(fig, run, "03_vae_vs_pca")'''),
("md", "## Pixel browser\nWorst-reconstructed held-out pixels first; change the order with the drop-down. The cross marks the pixel on its scan's error map."),
("code", '''browser = browse_reconstructions(vae, test)
browser'''),
])

nb04 = nb([
("md", """# 04 · Latent exploration
Where pixels land in the latent space: coloured by scan and by ground truth, embedded with PCA and
t-SNE, decoded along each latent axis, and drawn back as images."""),
("code", COMMON_PARAMS + '''
checkpoint = ""  # model file; empty: run_dir/model/final.pt as written by 02_train
max_points = 3000  # pixels used for t-SNE
seed = 0''', "parameters"),
("code", '''%matplotlib inline
import numpy as np
from spectra_vae import load_dataset, pipeline, plots, analysis

max_points = pipeline.check_int("max_points", max_points, 10)
seed = pipeline.check_int("seed", seed, 0)
vae, splits, data, ckpt = pipeline.open_run(run_dir, checkpoint, data_dir)
run = pipeline.resolve_run_dir(run_dir)
ds = load_dataset(data)
z = vae.transform(ds)
print(f"model: {ckpt}\\ndata: {data}\\n{len(ds)} pixels → latent means of shape {z.shape}")'''),
("md", "## Latent means coloured by scan and by ground truth"),
("code", '''axes = tuple(f"z{d + 1}" for d in range(2)) if vae.latent_dim >= 2 else ("z1", "-")
z2 = z[:, :2] if vae.latent_dim >= 2 else np.column_stack([z[:, 0], np.zeros(len(z))])
fig = plots.latent_scatter(z2, ds.scan_of(), ds.scans, "Latent means by scan", axes)
pipeline.save_figure(fig, run, "04_latent_by_scan")'''),
("code", '''if ds.labels is not None:
    fig = plots.latent_scatter(z2, ds.labels, ds.label_names, "Latent means by ground-truth class", axes)
    pipeline.save_figure(fig, run, "04_latent_by_label")
else:
    print("no label maps in this dataset")'''),
("md", "## PCA and t-SNE of the latent means"),
("code", '''groups = ds.labels if ds.labels is not None else ds.scan_of()
names = ds.label_names if ds.labels is not None else ds.scans
for method in ("pca", "tsne"):
    emb, idx = analysis.embed(z, method, max_points=max_points, seed=seed)
    fig = plots.latent_scatter(emb, groups[idx], names, f"{method.upper()} of latent means ({len(idx)} pixels)",
                               (f"{method} 1", f"{method} 2"))
    pipeline.save_figure(fig, run, f"04_{method}")'''),
("md", "## Latent traversals\nSpectra decoded along each latent axis, the others held at 0 (the prior mean)."),
("code", '''fig = plots.latent_traversal(ds.wavenumbers, analysis.latent_grid(vae), ds.wavenumbers_known)
pipeline.save_figure(fig, run, "04_traversals")'''),
("md", "## Latent coordinates as images"),
("code", '''for d in range(vae.latent_dim):
    fig = plots.scan_images({n: ds.image(z[:, d], k) for k, n in enumerate(ds.scans)},
                            f"Latent mean z{d + 1} per pixel", f"z{d + 1}", cmap="coolwarm")
    pipeline.save_figure(fig, run, f"04_latent_z{d + 1}_images")'''),
])

nb05 = nb([
("md", """# 05 · Anomaly detection
A VAE trained on normal tissue only: which pixels does it not explain? Every pixel gets a
reconstruction error and a KL term; the anomaly score is the negative ELBO at the latent mean
(reconstruction NLL + β·KL, `SpectraVAE.anomaly_score`). Background pixels are left out by a
tissue mask computed from the spectra (amide I intensity), not from labels. The VAE is compared
on the same pixels with PCA reconstruction error (as many components as latent dimensions) and
the RX detector (Mahalanobis distance to the normal training pixels)."""),
("code", COMMON_PARAMS + '''
checkpoint = ""  # model file; empty: run_dir/model/final.pt as written by 02_train
normal_split = "normal_test"  # held-out normal scans, a key of data_splits.json
abnormal_split = "abnormal"  # scans with carcinoma
threshold_split = "normal_val"  # normal scans on which the threshold is chosen
threshold_quantile = 0.99  # flag pixels scoring above this quantile of normal validation tissue
seed = 0''', "parameters"),
("code", '''%matplotlib inline
import numpy as np
import pandas as pd
from spectra_vae import load_dataset, available_splits, pipeline, plots, anomaly
from spectra_vae.analysis import tissue_mask

threshold_quantile = pipeline.check_float("threshold_quantile", threshold_quantile, 0.0, strict=True)
if threshold_quantile >= 1:
    raise pipeline.DataError(f"parameter threshold_quantile: must be < 1, got {threshold_quantile}")
vae, splits, data, ckpt = pipeline.open_run(run_dir, checkpoint, data_dir)
run = pipeline.resolve_run_dir(run_dir)
named = available_splits(data)
sets = {"normal": load_dataset(data, split=normal_split) if named.get(normal_split) else splits.test}
if named.get(abnormal_split):
    sets["abnormal"] = load_dataset(data, split=abnormal_split)
threshold_set = load_dataset(data, split=threshold_split) if named.get(threshold_split) else splits.validation
print(f"model: {ckpt} (trained on {splits.train.scans})\\ndata: {data}")
for name, ds in sets.items():
    print(f"{name}: {ds.scans}")
print(f"threshold chosen on: {threshold_set.scans if threshold_set is not None else 'none'}")'''),
("md", "## Scores per pixel\nTissue pixels only (spectral mask). Where ground truth exists, abnormal scans are split into tumour pixels and the normal tissue around them."),
("code", '''frames, masks = {}, {}
for name, ds in sets.items():
    f = vae.score_samples(ds)
    masks[name] = tissue_mask(ds)
    frames[name] = f
groups = {"normal scans": frames["normal"][masks["normal"]]}
if "abnormal" in sets:
    ab, truth = frames["abnormal"], anomaly.ground_truth_anomaly(sets["abnormal"])
    if truth is not None:
        groups["abnormal scans: normal tissue"] = ab[masks["abnormal"] & (truth == 0)]
        groups["abnormal scans: tumour"] = ab[masks["abnormal"] & (truth == 1)]
    else:
        groups["abnormal scans"] = ab[masks["abnormal"]]
{name: len(g) for name, g in groups.items()}'''),
("code", '''fig = plots.score_scatter({n: (g["reconstruction_error"].to_numpy(), g["kl"].to_numpy()) for n, g in groups.items()},
                          "reconstruction RMSE (absorbance)", "KL term (nats)",
                          "Reconstruction error vs KL, tissue pixels", seed=seed)
pipeline.save_figure(fig, run, "05_error_vs_kl")'''),
("md", "## Key statistics side by side"),
("code", '''anomaly.score_statistics(groups, ("reconstruction_error", "kl", "anomaly_score")).round(4)'''),
("md", "## Threshold and flagged fraction per scan\nThe threshold is a quantile of the anomaly score on normal validation tissue pixels, so about 1 − quantile of normal tissue is flagged by construction."),
("code", '''if threshold_set is not None and len(threshold_set):
    t_mask = tissue_mask(threshold_set)
    threshold = anomaly.threshold_from_normal(vae.anomaly_score(threshold_set)[t_mask], threshold_quantile)
else:
    threshold = anomaly.threshold_from_normal(frames["normal"]["anomaly_score"][masks["normal"]].to_numpy(), threshold_quantile)
    print("no normal validation scans: threshold chosen on the normal test scans (optimistic)")
print(f"threshold: anomaly score > {threshold:.4g} (the {threshold_quantile:.1%} quantile of normal validation tissue)")
pd.concat({name: anomaly.flagged_fraction(sets[name], frames[name]["anomaly_score"].to_numpy(), threshold, masks[name])
           for name in sets}).round(4)'''),
("md", "## Score maps\nAnomaly score per pixel (background left blank), next to the ground-truth labels where there are any."),
("code", '''for name, ds in sets.items():
    score = np.where(masks[name], frames[name]["anomaly_score"].to_numpy(), np.nan)
    lo, hi = np.nanpercentile(score, [1, 99]) if np.isfinite(score).any() else (0, 1)
    fig = plots.scan_images({s: ds.image(score, k) for k, s in enumerate(ds.scans)},
                            f"Anomaly score, {name} scans (tissue only)", "negative ELBO (nats)", cmap="inferno", vmin=lo, vmax=hi)
    pipeline.save_figure(fig, run, f"05_score_maps_{name}")
    if ds.labels is not None:
        fig = plots.scan_images({s: ds.image(ds.labels.astype(float), k) for k, s in enumerate(ds.scans)},
                                f"Ground truth, {name} scans", "class", cmap="tab10", categorical_names=ds.label_names)
        pipeline.save_figure(fig, run, f"05_labels_{name}")'''),
("md", "## ROC against ground truth, with the baselines\nTumour pixels against the normal tissue pixels of the abnormal scans, tissue mask applied to every method alike."),
("code", '''ab = sets.get("abnormal")
truth = anomaly.ground_truth_anomaly(ab) if ab is not None else None
if truth is None or not ((truth[masks["abnormal"]] == 1).any() and (truth[masks["abnormal"]] == 0).any()):
    table = None
    print("no ground truth with both tumour and normal tissue pixels: ROC cannot be computed")
else:
    scores = anomaly.baseline_scores(vae, splits.train, ab, frames["abnormal"]["anomaly_score"].to_numpy())
    table = anomaly.evaluate(scores, truth, masks["abnormal"])
    fig = plots.roc(anomaly.roc_curves(scores, truth, masks["abnormal"]), "Tumour vs normal tissue, abnormal scans")
    pipeline.save_figure(fig, run, "05_roc")
    print(anomaly.verdict(table))
table.round(4) if table is not None else None'''),
])

for name, n in (("01_data_exploration", nb01), ("02_train", nb02), ("03_reconstruction", nb03),
                ("04_latent_exploration", nb04), ("05_anomaly_detection", nb05)):
    nbf.write(n, f"notebooks/{name}.ipynb")

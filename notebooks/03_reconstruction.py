# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Reconstructions
# How well the trained VAE reproduces spectra it has not seen: single pixels, the error distribution,
# error maps per scan, the VAE against PCA with as many components, and a pixel browser.
# Uses the model and the record of the run that `02_train` wrote (its data folder, splits and tissue rule),
# never retrains.

# %% tags=["parameters"]
data_dir: str = ""  # empty: the data folder recorded with the run; give another only if the data moved
run_dir: str = ""  # the run folder of 02_train; empty: reports/demo for the demo data, else the newest run on data_dir
checkpoint: str = ""  # model file; empty: run_dir/model/final.pt as written by 02_train
noise_level: float = 0.0  # known noise s.d. (absorbance) marked on the error histogram; 0: unknown (demo: its own)

# %%
# %matplotlib inline
import numpy as np

from spectra_vae import workflow
from spectra_vae.preprocess import diagnostics
from spectra_vae.views import analysis, plots
from spectra_vae.views.widgets import browse_reconstructions

workflow.plain_warnings()  # warnings about the data as their message alone
noise_level = workflow.check_parameters(dict(noise_level=noise_level))["noise_level"]
opened = workflow.open_run(run_dir, checkpoint, data_dir)  # the splits as recorded, never recomputed
vae, splits, data, ckpt, run = opened.vae, opened.splits, opened.data_dir, opened.checkpoint, opened.path
units = plots.value_label(vae.preprocess)  # what the spectra are in, as the model sees them
noise_level, noise_note = analysis.noise_level_to_mark(data, vae.preprocess, noise_level)  # in absorbance only
test = splits.test
print(f"run: {run}\nmodel: {ckpt}\ndata: {data}\n{splits.how}\nheld-out (test) scans: {test.scans}")
for note in opened.notes:  # new or changed scans in the data folder since training
    print(f"note: {note}")
vae

# %% [markdown]
# ## Original vs reconstruction on held-out pixels
# In the model's units: absorbance, or what its preprocessing makes of it (the y axis says which); the grey line is
# the residual.

# %%
seen = vae.prepare(test)  # the test pixels as the model sees them (after any preprocessing)
if vae.preprocess:
    print(f"preprocessing {vae.preprocess!r}: spectra below are in the preprocessed space")
err_test = vae.reconstruction_error(seen)  # per pixel, streamed: the spectra are not all held in memory
tissue_test = vae.tissue_mask(test)  # the model's own tissue rule
picks = analysis.pick_pixels(err_test, tissue_test)
titles = [f"{name}: {analysis.pixel_name(test, i)}, RMSE {err_test[i]:.2g}" for name, i in picks.items()]
x_picked, r_picked = analysis.reconstruct_pixels(vae, seen, list(picks.values()))
fig = plots.reconstructions(seen.wavenumbers, x_picked, r_picked, titles, known=test.wavenumbers_known, ylabel=units)
workflow.save_figure(fig, run, "03_reconstructions")

# %% [markdown]
# ## Error distribution
# Per-pixel RMSE over channels; background pixels are noise only, so their error sits at the noise level.

# %%
fig = plots.error_histogram({"tissue": err_test[tissue_test], "background": err_test[~tissue_test]},
                           noise_level or None, "Per-pixel reconstruction RMSE, held-out scans", units)
workflow.save_figure(fig, run, "03_error_histogram")
if noise_note:
    print(noise_note)
rmse_all, rmse_tissue = np.sqrt(np.mean(err_test**2)), np.sqrt(np.mean(err_test[tissue_test] ** 2))
print(f"held-out RMSE: all pixels {rmse_all:.4g}, tissue {rmse_tissue:.4g}")

# %% [markdown]
# ## Error maps per scan
# Every scan of the run; titles say which split it belongs to.

# %%
full = opened.scans()
err_full = vae.reconstruction_error(full)
role = opened.roles()
maps = {f"{n} ({role[n]})": full.image(err_full, k) for k, n in enumerate(full.scans)}
fig = plots.scan_images(maps, "Per-pixel reconstruction RMSE", f"RMSE, {units}", cmap="magma", vmin=0)
workflow.save_figure(fig, run, "03_error_maps")

# %% [markdown]
# ## Scattering: what the model's EMSC fitted
# Only for a model whose preprocessing has an `emsc` step (uncorrected scans): its terms per pixel over every scan.
# The multiplicative term a is the amount of reference spectrum, thickness and path length; a thin pixel, divided by
# a small a, carries more noise (the anomaly monitor weights for it). The baseline's mean shows the Mie baseline;
# with `emsc(…,1)` the dispersion term relative to a shows the dispersion artefact.

# %%
if diagnostics.has_emsc(vae.preprocessor_):
    for column, images in diagnostics.term_maps(vae.preprocessor_, full).items():
        fig = plots.scan_images({f"{n} ({role[n]})": image for n, image in images.items()},
                                f"The model's EMSC: {diagnostics.MAP_LABELS[column]}", diagnostics.MAP_LABELS[column])
        workflow.save_figure(fig, run, f"03_emsc_{column}")
else:
    print(f"no emsc step in this model's preprocessing ({vae.preprocess or 'none'})")

# %% [markdown]
# ## The VAE against PCA
# PCA with as many components as latent dimensions, fitted on the same training pixels, scored on the same
# held-out pixels.

# %%
table = analysis.compare_with_pca(vae, splits.train, test)
winner = table["rmse"].idxmin()
print(f"lower held-out RMSE: {winner} ({table.loc['VAE', 'rmse']:.4g} VAE vs {table.loc['PCA', 'rmse']:.4g} PCA)")
table

# %%
fig = plots.method_comparison(table, f"Held-out RMSE, {vae.latent_dim} components each", units)
workflow.save_figure(fig, run, "03_vae_vs_pca")

# %% [markdown]
# ## Pixel browser
# Worst-reconstructed held-out pixels first; change the order with the drop-down. The cross marks the pixel on
# its scan's error map.

# %%
browser = browse_reconstructions(vae, test)
browser

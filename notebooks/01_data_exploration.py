# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Data exploration
# What is in the dataset before any model sees it: the numbers, the spectra, one image per scan,
# and which pixels are tissue. Run it on your own scans with
# `papermill 01_data_exploration.ipynb out.ipynb -p data_dir /path/to/scans`.

# %% tags=["parameters"]
data_dir: str = ""  # directory of .npy scans; empty: the embedded demo data, generated on first use
run_dir: str = ""  # report folder for figures and the model; empty: reports/demo in the repository
max_pixels: int = 20000  # pixels per scan used for the mean spectra
seed: int = 0

# %%
# %matplotlib inline
import numpy as np

from spectra_vae import analysis, load_dataset, pipeline, plots

data = pipeline.resolve_data_dir(data_dir)
run = pipeline.resolve_run_dir(run_dir)
checked = pipeline.check_parameters(dict(max_pixels=max_pixels, seed=seed))
max_pixels, seed = checked["max_pixels"], checked["seed"]
ds = load_dataset(data)
print(f"data: {data}\nreport: {run}")

# %% [markdown]
# ## The dataset in numbers

# %%
# NBVAL_CHECK_OUTPUT
print(analysis.dataset_overview(ds).to_string())

# %%
ds.summary()

# %% [markdown]
# ## Spectra
# Mean ± one standard deviation per scan (tissue and background pooled), then single pixels.

# %%
fig = plots.mean_spectra(ds, max_pixels=max_pixels, seed=seed)
pipeline.save_figure(fig, run, "01_mean_spectra")

# %%
amide = analysis.amide_i_intensity(ds)
threshold = analysis.tissue_threshold(amide)
tissue = amide > threshold  # the same rule as analysis.tissue_mask, without reading the data twice
rng = np.random.default_rng(seed)
examples = {}
for label, pool in (("tissue", np.flatnonzero(tissue)), ("background", np.flatnonzero(~tissue))):
    for i in rng.choice(pool, size=min(2, len(pool)), replace=False):
        k, r, c = ds.coords[i]
        examples[f"{label}: {ds.scans[k]} ({r}, {c})"] = ds.read([i])[0]
fig = plots.spectra(ds.wavenumbers, examples, "Example pixel spectra", ds.wavenumbers_known)
pipeline.save_figure(fig, run, "01_example_spectra")

# %% [markdown]
# ## One image per scan
# Amide I intensity (mean absorbance 1630–1680 cm⁻¹): tissue cores stand out from the noise-only background.

# %%
fig = plots.scan_images({n: ds.image(amide, k) for k, n in enumerate(ds.scans)},
                        "Amide I intensity (1630–1680 cm⁻¹)", "mean absorbance (a.u.)")
pipeline.save_figure(fig, run, "01_amide_i_images")

# %% [markdown]
# ## Tissue and background
# The mask comes from the spectra alone (amide I intensity: Otsu split, lowered to 10 noise s.d. above the
# background), so it works on data without labels.

# %%
fractions = {n: float(tissue[ds.scan_of() == k].mean()) for k, n in enumerate(ds.scans)}
print(f"amide I threshold: {threshold:.4f} absorbance; tissue fraction per scan:")
print({n: round(f, 3) for n, f in fractions.items()})
fig = plots.scan_images({n: ds.image(tissue.astype(float), k) for k, n in enumerate(ds.scans)},
                        "Tissue mask (1 = tissue)", "tissue", cmap="gray", vmin=0, vmax=1)
pipeline.save_figure(fig, run, "01_tissue_mask")

# %%
if ds.labels is not None:
    fig = plots.scan_images({n: ds.image(ds.labels.astype(float), k) for k, n in enumerate(ds.scans)},
                            "Ground-truth label maps", "class", cmap="tab10", categorical_names=ds.label_names)
    pipeline.save_figure(fig, run, "01_label_maps")
    agree = (tissue == (ds.labels > 0)).mean()
    print(f"tissue mask agrees with the ground truth on {agree:.1%} of pixels")
else:
    print("no label maps in this dataset")

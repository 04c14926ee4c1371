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
# `papermill 01_data_exploration.ipynb out.ipynb -p data_dir /path/to/scans`; `-p split normal_corr_train,abnormal_corr`
# explores those splits of the folder's `data_splits.json` only (the pipeline passes the run's own splits, and their
# uncorrected twins where the folder holds both, as `split` and `scattered_split`).

# %% tags=["parameters"]
data_dir: str = "demo"  # folder of scans; "demo": the embedded demo data, generated on first use
run_dir: str = ""  # run folder for figures; empty: reports/demo for the demo data, else a new folder under reports/runs
max_pixels: int = 20000  # pixels per scan used for the mean spectra
tissue_threshold: str = "auto"  # tissue rule: "auto" finds the background, a number sets it, "none": no mask
split: str = ""  # data_splits.json split(s) to explore, comma-separated ("normal_corr_train,abnormal_corr"); "": all
scattered_dir: str = "auto"  # the same scans uncorrected for scattering, shown beside; "auto": demo's twin; "": none
scattered_split: str = ""  # the uncorrected twins' split(s) when both variants share a folder, in split's order
emsc_degree: int = 2  # polynomial degree of EMSC's baseline in the side-by-side comparison
seed: int = 0

# %%
# %matplotlib inline
import numpy as np

from spectra_vae import load_dataset, workflow
from spectra_vae.preprocess import diagnostics
from spectra_vae.preprocess.tissue import TissueRule, default_measure, tissue_intensity
from spectra_vae.preprocess.variants import compare_variants, scan_pairs
from spectra_vae.views import analysis, plots, variants

workflow.plain_warnings()  # warnings about the data as their message alone
data = workflow.resolve_data_dir(data_dir)
run = workflow.resolve_run_dir(run_dir, data_dir)
checked = workflow.check_parameters(dict(max_pixels=max_pixels, seed=seed, tissue_threshold=tissue_threshold,
                                         emsc_degree=emsc_degree, split=split, scattered_split=scattered_split))
max_pixels, seed, emsc_degree = checked["max_pixels"], checked["seed"], checked["emsc_degree"]
ds = load_dataset(data, split=workflow.split_names(split) or None)
workflow.warn_if_no_axis(ds)  # scans without wavenumbers.npy: channel numbers, and what follows from that
scattered_from, scattered = workflow.load_scattered_variant(data, data_dir, scattered_dir, split, scattered_split)
print(f"data: {data}{f', split {split}' if split else ''}\nscattered variant: {scattered_from}\nreport: {run}")

# %% [markdown]
# ## The dataset in numbers

# %%
# NBVAL_CHECK_OUTPUT
print(analysis.dataset_overview(ds).to_string())

# %%
ds.summary()

# %% [markdown]
# ## Spectra
# Mean ± one standard deviation of each scan's tissue pixels (by the tissue rule below; background is noise around
# zero), one panel per scan, then single pixels.

# %%
rule = TissueRule.fit(ds, tissue_threshold)  # the rule a model fits on its training scans, here on all
measure = default_measure(ds)
amide = tissue_intensity(ds, measure)  # read once, for the images and the mask
tissue = rule.mask_values(amide)
fig = plots.mean_spectra(ds, tissue, max_pixels=max_pixels, seed=seed)
workflow.save_figure(fig, run, "01_mean_spectra")

# %%
rng = np.random.default_rng(seed)
examples = {}
for label, pool in (("tissue", np.flatnonzero(tissue)), ("background", np.flatnonzero(~tissue))):
    for i in rng.choice(pool, size=min(2, len(pool)), replace=False):
        k, r, c = ds.coords[i]
        examples[f"{label}: {ds.scans[k]} ({r}, {c})"] = ds.read([i])[0]
fig = plots.spectra(ds.wavenumbers, examples, "Example pixel spectra", ds.wavenumbers_known)
workflow.save_figure(fig, run, "01_example_spectra")

# %% [markdown]
# ## One image per scan
# Amide I intensity (mean absorbance 1630–1680 cm⁻¹: `01_amide_i_images`; without a wavenumber axis, the mean
# absorbance over all channels: `01_mean_absorbance_images`): tissue cores stand out from the noise-only background.

# %%
fig, name = plots.intensity_images(ds, amide, measure)
workflow.save_figure(fig, run, f"01_{name}")

# %% [markdown]
# ## Tissue and background
# The mask comes from the spectra alone (amide I intensity: Otsu split, lowered to 10 noise s.d. above the
# background; scans cropped to the core are all tissue), so it works on data without labels. A model fits the
# same rule on its training scans and keeps it; notebooks 03–05 use the model's.

# %%
fractions = {n: float(tissue[ds.scan_of() == k].mean()) for k, n in enumerate(ds.scans)}
print(f"tissue: {rule}\n{rule.how}\ntissue fraction per scan:")
print({n: round(f, 3) for n, f in fractions.items()})
fig = plots.scan_images({n: ds.image(tissue.astype(float), k) for k, n in enumerate(ds.scans)},
                        "Tissue mask (1 = tissue)", "tissue", cmap="gray", vmin=0, vmax=1)
workflow.save_figure(fig, run, "01_tissue_mask")

# %%
if ds.labels is not None:
    fig = plots.scan_images({n: ds.image(ds.labels.astype(float), k) for k, n in enumerate(ds.scans)},
                            "Ground-truth label maps", "class", cmap="tab10", categorical_names=ds.label_names)
    workflow.save_figure(fig, run, "01_label_maps")
    agree = (tissue == (ds.labels > 0)).mean()
    print(f"tissue mask agrees with the ground truth on {agree:.1%} of pixels")
else:
    print("no label maps in this dataset")

# %% [markdown]
# ## Scattering: the same scans uncorrected
# When the scans' uncorrected ("scattered") variant is there, the two are compared pixel by pixel on the tissue
# pixels above: `scattered_dir`, a folder of the same files (for the demo, its scattered twin from the same seed), or
# `scattered_split`, when both variants share one folder under different names. Scans pair up in order; the first
# table says which with which (check that two split lists name the same scans in the same order).
# Scattering adds a broad Mie baseline, changes the path length, and mixes each band with its Kramers–Kronig partner
# (the dispersion artefact), which pulls the apparent amide I maximum down. EMSC is fitted on each variant's tissue
# pixels here twice: basic EMSC (`emsc(2,0)`, which is what the `emsc` step does, so what a model trains with on
# uncorrected scans), and with its dispersion term (`emsc(2,1)`), which is what narrows the apparent amide I
# position but also takes out band shifts that are chemistry, such as the demo tumour's, so anomaly detection does
# better without it (README, Scattering and EMSC). A model fits its EMSC on its training tissue pixels and keeps it.
# After EMSC a spectrum is in units of its variant's reference (the mean tissue spectrum): a pixel as thick as the
# reference keeps its size, a thinner one is scaled up. Figures keep absorbance and these units on separate axes.

# %%
comparison = None
if scattered is not None:
    print(scan_pairs(ds, scattered).to_string(index=False))
    comparison = compare_variants(ds, scattered, tissue, degree=emsc_degree, max_pixels=max_pixels, seed=seed)
    fig = variants.mean_spectra(comparison, ds.wavenumbers_known)
    workflow.save_figure(fig, run, "01_variants_mean_spectra")
else:
    print("no scattered variant to compare (scattered_dir, scattered_split)")

# %% [markdown]
# The table's `s.d. ÷ first` says how much more the apparent amide I position spreads in each variant than in the
# corrected one: basic EMSC leaves the spread as it is, `emsc(2,1)` narrows it. The demo's scattered twin spreads it
# 3.2–3.4×. For a lab's own pair of variants this is the number to compare: it says whether the demo's scattering is
# as strong as theirs (README, Scattering and EMSC).

# %%
if comparison is not None:
    fig = variants.amide_i_positions(comparison)
    workflow.save_figure(fig, run, "01_variants_amide_i_position")
    print(comparison.spread.round(2).to_string())
    print(comparison.difference.round(4).to_string())

# %% [markdown]
# The same pixels before and after EMSC: the least and the most dispersed by EMSC's own estimate, and a median one.
# Top, as measured (absorbance); below, after EMSC (reference units): the scattered variant with basic EMSC, as a
# model trains, and with `emsc(2,1)`, beside the clean variant after basic EMSC, which both should match.

# %%
if comparison is not None:
    fig = variants.before_after_emsc(comparison, ds)
    workflow.save_figure(fig, run, "01_variants_before_after_emsc")

# %% [markdown]
# EMSC's terms per pixel of the scattered variant (the fit with the dispersion term), as maps: the multiplicative
# term (how much reference: thickness and path length), the dispersion term relative to it, and the baseline's mean.
# They show where scattering is strong.

# %%
if comparison is not None:
    terms = comparison.emsc_terms
    for column, label in ((c, label) for c, label in diagnostics.MAP_LABELS.items() if c in terms):
        fig = plots.scan_images({n: ds.image(terms[column].to_numpy(), k) for k, n in enumerate(ds.scans)},
                                f"EMSC on the scattered variant: {label}", label)
        workflow.save_figure(fig, run, f"01_emsc_{column}")

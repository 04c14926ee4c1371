# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Latent exploration
# Where pixels land in the latent space: coloured by scan and by ground truth, embedded with PCA and
# t-SNE, decoded along each latent axis, drawn back as images, and explored scan by scan with linked views. The
# scans, splits and tissue rule are those recorded with the run; figures of tissue use the model's own tissue rule.

# %% tags=["parameters"]
data_dir: str = ""  # empty: the data folder recorded with the run; give another only if the data moved
run_dir: str = ""  # the run folder of 02_train; empty: reports/demo for the demo data, else the newest run on data_dir
checkpoint: str = ""  # model file; empty: run_dir/model/final.pt as written by 02_train
max_points: int = 3000  # pixels used for t-SNE
seed: int = 0

# %%
# %matplotlib inline
import numpy as np

from spectra_vae import workflow
from spectra_vae.views import analysis, components, plots
from spectra_vae.views.widgets import explore

workflow.plain_warnings()  # warnings about the data as their message alone
checked = workflow.check_parameters(dict(max_points=max_points, seed=seed))
max_points, seed = checked["max_points"], checked["seed"]
opened = workflow.open_run(run_dir, checkpoint, data_dir)  # the scans as recorded, never recomputed
vae, splits, data, ckpt, run = opened.vae, opened.splits, opened.data_dir, opened.checkpoint, opened.path
ds = opened.scans()  # every scan of the run
z = vae.transform(ds)
tissue = vae.tissue_mask(ds)  # the model's own tissue rule
print(f"run: {run}\nmodel: {ckpt}\ndata: {data}\n{len(ds)} pixels → latent means of shape {z.shape}; "
      f"{int(tissue.sum())} tissue pixels by the model's rule ({vae.tissue_rule_})")
for note in opened.notes:  # new or changed scans in the data folder since training
    print(f"note: {note}")

# %% [markdown]
# ## Latent means of tissue pixels, coloured by scan and by ground truth

# %%
axes = tuple(f"z{d + 1}" for d in range(2)) if vae.latent_dim >= 2 else ("z1", "-")
z2 = z[:, :2] if vae.latent_dim >= 2 else np.column_stack([z[:, 0], np.zeros(len(z))])
fig = plots.latent_scatter(z2[tissue], ds.scan_of()[tissue], ds.scans, "Latent means of tissue pixels by scan", axes)
workflow.save_figure(fig, run, "04_latent_by_scan")

# %%
if ds.labels is not None:
    fig = plots.latent_scatter(z2[tissue], ds.labels[tissue], ds.label_names,
                               "Latent means of tissue pixels by ground-truth class", axes)
    workflow.save_figure(fig, run, "04_latent_by_label")
else:
    print("no label maps in this dataset")

# %% [markdown]
# ## PCA and t-SNE of the latent means (tissue pixels)

# %%
groups = (ds.labels if ds.labels is not None else ds.scan_of())[tissue]
names = ds.label_names if ds.labels is not None else ds.scans
for method in ("pca", "tsne"):
    emb, idx = analysis.embed(z[tissue], method, max_points=max_points, seed=seed)
    fig = plots.latent_scatter(emb, groups[idx], names, f"{method.upper()} of latent means ({len(idx)} pixels)",
                               (f"{method} 1", f"{method} 2"))
    workflow.save_figure(fig, run, f"04_{method}")

# %% [markdown]
# ## Latent traversals
# Spectra decoded along each latent axis over the range the tissue occupies (the 1st to the 99th percentile of its
# latent means), the other axes held at the tissue's median, on the model's own output axis (after any
# preprocessing: `cut` shortens it).

# %%
fig = plots.latent_traversal(vae.preprocessor_.output_wavenumbers_, analysis.latent_grid(vae, z[tissue]),
                             vae.wavenumbers_known_, plots.value_label(vae.preprocess), "others at the tissue median")
workflow.save_figure(fig, run, "04_traversals")

# %% [markdown]
# ## Latent coordinates as images
# Tissue pixels by the model's rule; background in grey. The colour scale is centred on 0, the prior's mean:
# white is 0, red above, blue below.

# %%
for d in range(vae.latent_dim):
    values = np.where(tissue, z[:, d], np.nan)
    fig = plots.scan_images({n: ds.image(values, k) for k, n in enumerate(ds.scans)},
                            f"Latent mean z{d + 1} per tissue pixel", f"z{d + 1}", cmap="RdBu_r", centre=0.0)
    workflow.save_figure(fig, run, f"04_latent_z{d + 1}_images")

# %% [markdown]
# ## Component spectra and abundance maps (the unmixing architecture)
# An unmixing model (`-p architecture unmixing` in 02) reconstructs each spectrum as thickness × a mixture of
# learned component spectra plus a baseline; its latent means are the mixture's abundances. Here are the
# components, their strongest bands named by wavenumber, and where each one is, scan by scan.

# %%
if vae.architecture == "unmixing":
    fig = components.component_spectra(vae.preprocessor_.output_wavenumbers_, vae.component_spectra_,
                                       vae.wavenumbers_known_)
    workflow.save_figure(fig, run, "04_component_spectra")
    shares = vae.abundances(ds)
    for k in range(vae.latent_dim):
        workflow.save_figure(components.abundance_maps(ds, shares, tissue, k), run, f"04_abundance_{k + 1}_images")
else:
    print(f"this model's architecture is {vae.architecture!r}: component spectra and abundances come with "
          "architecture 'unmixing'")

# %% [markdown]
# ## Explore a scan: click a pixel, brush the latent space
# Interactive in JupyterLab; the figures above stay inline for the report. Pick a scan and a map (amide I,
# reconstruction error, anomaly score, a latent coordinate, the labels) and click a pixel: its spectrum,
# reconstruction and residual appear below and a cross marks it in the latent scatter. Drag a box over the
# scatter to outline those pixels on the map, with their count and mean spectrum; a click there clears it.

# %%
explore(vae, ds)

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
# t-SNE, decoded along each latent axis, and drawn back as images.

# %% tags=["parameters"]
data_dir: str = ""  # directory of .npy scans; empty: the embedded demo data, generated on first use
run_dir: str = ""  # report folder for figures and the model; empty: reports/demo in the repository
checkpoint: str = ""  # model file; empty: run_dir/model/final.pt as written by 02_train
max_points: int = 3000  # pixels used for t-SNE
seed: int = 0

# %%
# %matplotlib inline
import numpy as np

from spectra_vae import analysis, load_dataset, pipeline, plots

checked = pipeline.check_parameters(dict(max_points=max_points, seed=seed))
max_points, seed = checked["max_points"], checked["seed"]
vae, splits, data, ckpt = pipeline.open_run(run_dir, checkpoint, data_dir)
run = pipeline.resolve_run_dir(run_dir)
ds = load_dataset(data)
z = vae.transform(ds)
print(f"model: {ckpt}\ndata: {data}\n{len(ds)} pixels → latent means of shape {z.shape}")

# %% [markdown]
# ## Latent means coloured by scan and by ground truth

# %%
axes = tuple(f"z{d + 1}" for d in range(2)) if vae.latent_dim >= 2 else ("z1", "-")
z2 = z[:, :2] if vae.latent_dim >= 2 else np.column_stack([z[:, 0], np.zeros(len(z))])
fig = plots.latent_scatter(z2, ds.scan_of(), ds.scans, "Latent means by scan", axes)
pipeline.save_figure(fig, run, "04_latent_by_scan")

# %%
if ds.labels is not None:
    fig = plots.latent_scatter(z2, ds.labels, ds.label_names, "Latent means by ground-truth class", axes)
    pipeline.save_figure(fig, run, "04_latent_by_label")
else:
    print("no label maps in this dataset")

# %% [markdown]
# ## PCA and t-SNE of the latent means

# %%
groups = ds.labels if ds.labels is not None else ds.scan_of()
names = ds.label_names if ds.labels is not None else ds.scans
for method in ("pca", "tsne"):
    emb, idx = analysis.embed(z, method, max_points=max_points, seed=seed)
    fig = plots.latent_scatter(emb, groups[idx], names, f"{method.upper()} of latent means ({len(idx)} pixels)",
                               (f"{method} 1", f"{method} 2"))
    pipeline.save_figure(fig, run, f"04_{method}")

# %% [markdown]
# ## Latent traversals
# Spectra decoded along each latent axis, the others held at 0 (the prior mean).

# %%
fig = plots.latent_traversal(ds.wavenumbers, analysis.latent_grid(vae), ds.wavenumbers_known)
pipeline.save_figure(fig, run, "04_traversals")

# %% [markdown]
# ## Latent coordinates as images

# %%
for d in range(vae.latent_dim):
    fig = plots.scan_images({n: ds.image(z[:, d], k) for k, n in enumerate(ds.scans)},
                            f"Latent mean z{d + 1} per pixel", f"z{d + 1}", cmap="coolwarm")
    pipeline.save_figure(fig, run, f"04_latent_z{d + 1}_images")

# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Compare runs
# Several runs side by side: their parameters, loss curves, held-out figures and the best run per criterion.
# `python -m spectra_vae sweep` runs it on the runs it trained; on runs of your own:
# `papermill 06_compare_runs.ipynb out.ipynb -p runs "reports/runs/a,reports/runs/b"` (or `-p run_dir` a folder of
# runs). Every figure is measured on each run's own recorded held-out scans: `rmse` in the space the model
# reconstructs (after its preprocessing) with `pca_rmse` (PCA at as many components) beside it, `score` the
# negative RMSE in absorbance units (comparable across preprocessing), `kl` the mean KL per held-out pixel,
# `active_dims` the latent dimensions whose mean KL exceeds 0.01 nats, and, where labels exist, the AUROC of the
# anomaly score and flag rates on the abnormal scans.

# %% tags=["parameters"]
data_dir = ""  # not used: each run records its own data folder
run_dir = ""  # a folder of runs (a sweep) or one run; empty: reports/demo
runs = ""  # run folders to compare, comma-separated; empty: those in run_dir

# %%
# %matplotlib inline
from spectra_vae import workflow
from spectra_vae.views import plots
from spectra_vae.workflow import compare

workflow.plain_warnings()  # warnings about the data as their message alone
folders = compare.find_runs(run_dir, runs)
report = workflow.resolve_run_dir(run_dir) if not runs else folders[0].parent
table = compare.collect(folders)  # held-out figures from each run's scores.json, computed where missing
print(f"{len(folders)} run(s); figures go to {report / 'figures'}")
shown = compare.varying(table) + [c for c in ("rmse", "pca_rmse", "rmse_vs_pca", "score", "kl", "active_dims",
                                               "auroc", "flag_rate_anomalous", "flag_rate_normal_tissue",
                                               "epochs_trained") if c in table]
table[shown].round(5)

# %% [markdown]
# ## Loss curves
# Validation loss and validation RMSE per epoch, one line per run. The loss is a log scale where it is positive; a
# Gaussian NLL goes below zero, and then the scale is linear, fitted to the epochs after the first tenth. Each run's
# RMSE is in its own model's units: compare runs with different preprocessing by `score` in the table instead.

# %%
histories = {name: workflow.read_history(path) for name, path in zip(table.index, table["path"], strict=True)}
for column, what, ylabel in (("val_loss", "Validation loss", "validation loss (reconstruction + β·KL per pixel)"),
                             ("val_rmse", "Validation RMSE", "validation RMSE (each run's model units)")):
    fig = plots.loss_curves(histories, column, f"{what} per epoch, one line per run", ylabel)
    workflow.save_figure(fig, report, f"06_{column}")

# %% [markdown]
# ## The best run per criterion

# %%
compare.best_runs(table)

# %% [markdown]
# ## Every parameter of every run

# %%
table

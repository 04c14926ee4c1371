# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Train the VAE
# Trains on the training split with per-epoch validation, early stopping and checkpoints
# (`best.pt`, `last.pt`, `final.pt` in `<run_dir>/model/`). The run folder owns its record: `params.json`,
# `splits.json` (the scan lists of each split, the tissue rule), `history.csv`; notebooks 03–05 read it.
# On a server: `papermill 02_train.ipynb out.ipynb -p epochs 50 -p data_dir /data/scans` (a new run folder
# under reports/runs; an existing run is replaced only with `-p overwrite True`, continued with `-p resume True`).

# %% tags=["parameters"]
data_dir: str = "demo"  # folder of scans; "demo": the embedded demo data, generated on first use
run_dir: str = ""  # run folder; empty: reports/demo for the demo data, else a new folder under reports/runs
overwrite: bool = False  # True: replace the run already in run_dir
resume: bool = False  # True: continue the run in run_dir from its last checkpoint to `epochs`, as recorded
epochs: str = "auto"  # "auto": 50 epochs, more on small data (at least 3000 optimiser steps); or a number
preprocess: str = ""  # empty: none; e.g. cut(950,1800)|snv, or emsc on uncorrected scans; see spectra_vae.preprocess
tissue_only: bool = False  # True: train and validate on tissue pixels only (amide I mask); use with snv/vector
tissue_threshold: str = "auto"  # tissue rule: "auto" finds the background, a number sets it, "none": no mask
latent_dim: int = 2
architecture: str = "mlp"  # mlp | spatial (sees each pixel's neighbourhood) | unmixing (component spectra)
neighbourhood: int = 3  # spatial: the k of the k×k neighbourhood
component_start: str = ""  # unmixing: a file of reference spectra to start from (.npy, or a csv with wavenumbers)
hidden_dims: str = "221,110"  # encoder layer sizes; the decoder mirrors them
reconstruction: str = "gaussian"  # gaussian | mse | mae | bce
beta: float = 1.0
batch_size: int = 512
learning_rate: float = 0.002
patience: int = 10  # epochs without validation improvement before stopping; 0 turns it off
seed: int = 0
device: str = "auto"  # auto | cpu | cuda | mps
precision: str = "fp32"  # fp32 | bf16 (mixed precision for GPUs; see the README)
train_split: str = "normal_train"  # keys of data_splits.json (given once, recorded for 03–05); no file: 80/10/10
val_split: str = "normal_val"  # "" for none
test_split: str = "normal_test"
abnormal_split: str = "abnormal"  # scans with anomalies, for 05; "" for none
normal_labels: str = ""  # label names that count as normal, comma-separated (for 05); empty: the defaults

# %%
# %matplotlib inline
from spectra_vae import workflow
from spectra_vae.views import plots

workflow.plain_warnings()  # warnings about the data as their message alone
# the same checks `python -m spectra_vae pipeline` applies before it starts (type, sign, range)
params = workflow.check_parameters(dict(
    epochs=epochs, latent_dim=latent_dim, architecture=architecture, neighbourhood=neighbourhood,
    hidden_dims=hidden_dims, reconstruction=reconstruction, beta=beta,
    batch_size=batch_size, learning_rate=learning_rate, patience=patience, seed=seed, device=device,
    precision=precision, preprocess=preprocess, tissue_only=tissue_only, tissue_threshold=tissue_threshold,
))
params["patience"] = params["patience"] or None  # 0 turns early stopping off
run_options = workflow.check_parameters(dict(train_split=train_split, val_split=val_split, test_split=test_split,
                                              abnormal_split=abnormal_split, normal_labels=normal_labels,
                                              component_start=component_start))
data = workflow.resolve_data_dir(data_dir)
overwrite, resume = workflow.check_parameter("overwrite", overwrite), workflow.check_parameter("resume", resume)
run, replace = workflow.training_run_dir(run_dir, data_dir, overwrite)
print(f"data: {data}\nrun: {run}")
params

# %% [markdown]
# ## Training
# The progress bar shows training loss, validation loss and validation RMSE (in the model's units) per epoch.

# %%
if resume:
    vae, splits, final = workflow.resume(run, epochs=params["epochs"])
    print(f"resumed {run} to {len(vae.history)} epochs with its recorded parameters and splits")
else:
    vae, splits, final = workflow.train(data, run, overwrite=replace, **run_options, **params)
print(splits.how)
print(f"tissue rule of this model: {vae.tissue_rule_} ({vae.tissue_rule_.how})")
for name, part in (("train", splits.train), ("validation", splits.validation), ("test", splits.test)):
    if part is not None:
        print(f"{name:>10}: {len(part):>8} pixels from {part.scans}")

# %%
vae.history.round(5)

# %% [markdown]
# ## Loss curves
# Reconstruction and KL apart (log scale where the values are positive; the Gaussian NLL goes below zero, then a
# linear scale fitted to the epochs after the first tenth, which run far above), and the validation RMSE in the
# model's units (absorbance, unless the preprocessing changes them). The dashed line marks the best epoch, whose
# weights the model keeps.

# %%
fig = plots.training_history(vae.history, vae.best_epoch_, plots.value_label(vae.preprocess))
workflow.save_figure(fig, run, "02_loss_curves")

# %% [markdown]
# ## Where the model went

# %%
import os

for f in sorted([*run.glob("*.json"), *run.glob("*.csv"), *(run / "model").iterdir()]):
    print(f"{f}  ({os.path.getsize(f) / 1e6:.2f} MB)")
print(f"\nbest epoch {vae.best_epoch_} of {len(vae.history)} (planned {vae.epochs_}, epochs={vae.epochs!r}); "
      f"load with SpectraVAE.load({str(final)!r})")

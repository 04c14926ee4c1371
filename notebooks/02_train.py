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
data_dir = ""  # directory of .npy scans; empty: the embedded demo data, generated on first use
run_dir = ""  # run folder; empty: reports/demo for the demo data, else a new folder under reports/runs
overwrite = False  # True: replace the run already in run_dir
resume = False  # True: continue the run in run_dir from its last checkpoint to `epochs` (its recorded parameters)
epochs = 20
preprocess = ""  # e.g. cut(950,1800)|snv ; see spectra_vae.preprocessing; empty: none
tissue_only = False  # True: train and validate on tissue pixels only (amide I mask); needed with snv or vector
tissue_threshold = "auto"  # tissue rule: "auto" finds the background level, a number sets it, "none" = no mask
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
train_split = "normal_train"  # keys of data_splits.json (given here once, recorded for 03–05); no file: 80/10/10
val_split = "normal_val"  # "" for none
test_split = "normal_test"
abnormal_split = "abnormal"  # scans with anomalies, for 05; "" for none
normal_labels = ""  # label names that count as normal, comma-separated (for 05); empty: background,stroma,epithelium

# %%
# %matplotlib inline
from spectra_vae import pipeline, plots, runs
from spectra_vae.loss import RECONSTRUCTIONS
from spectra_vae.preprocessing import Preprocessor
from spectra_vae.tissue import parse_tissue_threshold
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
    tissue_threshold=parse_tissue_threshold(tissue_threshold),
)
Preprocessor(params["preprocess"])  # a bad pipeline fails here, naming the step
data = pipeline.resolve_data_dir(data_dir)
overwrite, resume = pipeline.check_bool("overwrite", overwrite), pipeline.check_bool("resume", resume)
run, replace = runs.training_run_dir(run_dir, data_dir, overwrite)
print(f"data: {data}\nrun: {run}")
params

# %% [markdown]
# ## Training
# The progress bar shows training loss, validation loss and validation RMSE (in the model's units) per epoch.

# %%
if resume:
    vae, splits, final = runs.resume(run, epochs=params["epochs"])
    print(f"resumed {run} to {len(vae.history)} epochs with its recorded parameters and splits")
else:
    vae, splits, final = pipeline.train(data, run, train_split=train_split, val_split=val_split,
                                        test_split=test_split, abnormal_split=abnormal_split,
                                        normal_labels=normal_labels, overwrite=replace, **params)
print(splits.how)
print(f"tissue rule of this model: {vae.tissue_rule_} ({vae.tissue_rule_.how})")
for name, part in (("train", splits.train), ("validation", splits.validation), ("test", splits.test)):
    if part is not None:
        print(f"{name:>10}: {len(part):>8} pixels from {part.scans}")

# %%
vae.history.round(5)

# %% [markdown]
# ## Loss curves
# Reconstruction and KL apart (log scale where the values are positive; the Gaussian NLL can be negative,
# then symlog), and the validation RMSE in absorbance units. The dashed line marks the best epoch, whose
# weights the model keeps.

# %%
fig = plots.training_history(vae.history, vae.best_epoch_, plots.value_label(vae.preprocess))
pipeline.save_figure(fig, run, "02_loss_curves")

# %% [markdown]
# ## Where the model went

# %%
import os

for f in sorted([*run.glob("*.json"), *run.glob("*.csv"), *(run / "model").iterdir()]):
    print(f"{f}  ({os.path.getsize(f) / 1e6:.2f} MB)")
print(f"\nbest epoch {vae.best_epoch_} of {len(vae.history)}; load with SpectraVAE.load({str(final)!r})")

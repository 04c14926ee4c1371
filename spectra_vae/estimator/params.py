"""The model's parameters: one table, declared once (see `spectra_vae.core.params`).

`SpectraVAE`'s constructor takes exactly these, with these defaults (a test holds the two
together); its checks, notebook 02's parameters cell, the pipeline's `-p` checks, `train`'s
options and `--help`, and the docs are all read from here.
"""

from __future__ import annotations

from typing import Any

import torch

from ..core.errors import DataError
from ..core.params import AnyOf, Flag, Nothing, Number, Options, Param, Sizes, Text, Whole, table
from ..model.loss import RECONSTRUCTIONS
from ..model.networks import ARCHITECTURES
from ..model.train import PRECISIONS
from ..preprocess.normalise import METHODS
from ..preprocess.pipeline import parse as parse_preprocess

MAX_LATENT_DIM = 1024
MAX_LAYER_SIZE = 1 << 16
MAX_BATCH_SIZE = 1 << 20


def check_device(device: Any) -> None:
    """'auto', or a CPU, CUDA or MPS device that this machine has; `DataError` saying why not."""
    usage = "must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
    if not isinstance(device, (str, torch.device)):
        raise DataError(usage)
    if device == "auto":
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DataError(usage) from None
    if dev.type == "cuda" and not (torch.cuda.is_available() and (dev.index or 0) < torch.cuda.device_count()):
        raise DataError(f"this machine has {torch.cuda.device_count()} CUDA device(s)")
    mps = getattr(torch.backends, "mps", None)
    if dev.type == "mps" and not (mps is not None and mps.is_available()):
        raise DataError("Apple MPS is not available on this machine")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise DataError(usage)


PARAMETERS: dict[str, Param] = table([
    Param("latent_dim", 2, Whole(1, MAX_LATENT_DIM), "size of the latent space (the number of latent dimensions)"),
    Param("hidden_dims", (221, 110), Sizes(MAX_LAYER_SIZE), "encoder layer sizes; the decoder mirrors them"),
    Param("architecture", "mlp", Options(ARCHITECTURES),
          "mlp: the spectrum alone; spatial: the encoder also sees the pixel's k×k neighbourhood; unmixing: "
          "a Beer–Lambert decoder, thickness × a mixture of learned component spectra + a baseline"),
    Param("neighbourhood", 3, Whole(3, 15), "spatial: the k of the k×k neighbourhood the encoder sees (odd)"),
    Param("reconstruction", "gaussian", Options(RECONSTRUCTIONS),
          "the reconstruction term: gaussian (a calibrated noise level), mse, mae or bce"),
    Param("beta", 1.0, Number(0.0, 1e6), "weight of the KL term (β-VAE; 1 is the ELBO)"),
    Param("normalisation", "auto", Options(("auto", *METHODS)),
          "scaling fitted on the training pixels; auto: global_standard (minmax for bce)"),
    Param("noise", "shared", Options(("shared", "channel")),
          "the Gaussian likelihood's noise level: one for all channels, or one per channel"),
    Param("preprocess", "", Text("cut(950,1800)|snv", validate=parse_preprocess),
          "preprocessing pipeline, e.g. cut(950,1800)|snv, or emsc on scans not corrected for scattering; "
          "empty: none"),
    Param("epochs", "auto", AnyOf((Options(("auto",)), Whole(1))),
          "auto: 50 epochs, more on small data so that training takes at least 3000 optimiser steps"),
    Param("batch_size", 512, Whole(1, MAX_BATCH_SIZE), "pixels per optimiser step"),
    Param("learning_rate", 2e-3, Number(0.0, strict=True), "Adam's peak learning rate"),
    Param("patience", 10, AnyOf((Nothing(), Whole(0, 1_000_000))),
          "epochs without improvement of the validation loss before stopping; 0 or None: no early stopping"),
    Param("seed", 0, Whole(0, 2**62), "random seed of initialisation, shuffling and sampling"),
    Param("device", "auto", Text("auto", validate=check_device), "auto (CUDA when there is one), cpu, cuda, cuda:N "
          "or mps"),
    Param("precision", "fp32", Options(PRECISIONS), "fp32, or bf16: bfloat16 autocast (output layer and loss in "
          "float32)"),
    Param("tissue_threshold", "auto", AnyOf((Options(("auto", "none")), Number(), Nothing())),
          "tissue rule: auto finds the background, a number sets it (absorbance), none: every pixel is tissue"),
    Param("tissue_only", False, Flag(), "train and validate on tissue pixels only (by the tissue rule)"),
    Param("checkpoint_minutes", 30.0, AnyOf((Nothing(), Number(0.0, strict=True))),
          "also write last.pt within an epoch at most this often (None: only at epoch ends)"),
    Param("verbose", True, Flag(), "progress bars and messages while training", cli=False),
])


def check_model_params(values: dict[str, Any]) -> None:
    """Every value checked against the table (type, sign, range); `DataError` naming the first bad one,
    as "SpectraVAE parameter NAME=VALUE: must be …"."""
    for name, value in values.items():
        p = PARAMETERS[name]
        try:
            p.check(value)
        except DataError as exc:
            why = str(exc).split(": ", 1)[-1]
            refused = why.startswith(("expected", "must be")) and "got" in why
            raise DataError(f"SpectraVAE parameter {name}={value!r}: "
                            + (f"must be {p.constraint.text}" if refused else why)) from None
    if values.get("neighbourhood", 3) % 2 == 0:
        raise DataError(f"SpectraVAE parameter neighbourhood={values['neighbourhood']!r}: must be odd (the pixel "
                        "in the middle of its k×k neighbourhood)")
    if values.get("architecture") == "unmixing":
        if values.get("reconstruction") == "bce" or values.get("normalisation") not in ("auto", "global_scale", "none"):
            raise DataError("SpectraVAE parameter architecture='unmixing': its decoder models absorbance (thickness × "
                            "a mixture of non-negative spectra), so it needs normalisation 'auto' (global_scale, no "
                            "centring) or 'none', and a reconstruction other than bce")
    if values.get("reconstruction") == "bce" and values.get("normalisation") not in ("auto", "minmax", "global_minmax"):
        raise DataError(f"SpectraVAE parameter normalisation={values['normalisation']!r}: the bce reconstruction "
                        "needs 'minmax' or 'global_minmax' (values in [0, 1])")

"""What a training run checks before it claims a folder or writes its record: the split names, the
training pixels (enough of them, and tissue where the model needs tissue) and the model's memory.

Without these, the refusal would come from inside `fit` (after the record was written) or from the
anomaly model (after training): "checks that come too late".
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from ..core.errors import DataError
from ..estimator.checks import MIN_TRAINING_PIXELS
from ..io.dataset import SpectralDataset
from ..model.budget import check_training_memory
from ..model.train import resolve_device
from ..preprocess.tissue import TissueRule
from .parameters import NOTEBOOK_PARAMETERS

TISSUE_SAMPLE = 200_000  # pixels the tissue check looks at (all of them in smaller training sets)
ROLES = ("train_split", "val_split", "test_split", "abnormal_split")


def check_split_roles(names: dict[str, Any], with_defaults: bool = False) -> None:
    """One split name per role: the same name as training and abnormal (or any two of the run's four
    splits) would record the same scans in two roles. `with_defaults`: roles not in `names` take their
    default names (a pipeline's notebooks do)."""
    seen: dict[str, str] = {}
    for role in ROLES:
        name = names.get(role, NOTEBOOK_PARAMETERS[role].default if with_defaults else None)
        if not isinstance(name, str) or not name:
            continue
        if name in seen:
            raise DataError(f"parameter {role}: {name!r} is already the {seen[name]}; the splits of one run "
                            "(train, validation, test, abnormal) must be different splits")
        seen[name] = role


def check_training(vae: Any, train: SpectralDataset) -> None:
    """The training set can train `vae` (a `SpectraVAE` with checked parameters): at least two pixels, at least
    two of them tissue by the rule it would fit (the anomaly model learns from training tissue; `tissue_only`
    trains on it), and a model that fits in the memory of the device it would train on."""
    if len(train) < MIN_TRAINING_PIXELS:
        raise DataError(f"{train.source or 'data'}: {len(train)} usable training pixel(s); training needs at least "
                        f"{MIN_TRAINING_PIXELS}")
    n = train.n_channels
    config = SimpleNamespace(n_channels=n, latent_dim=vae.latent_dim, hidden_dims=tuple(vae.hidden_dims),
                             n_inputs=2 * n if getattr(vae, "architecture", "mlp") == "spatial" else n)
    check_training_memory(config, vae.batch_size, resolve_device(vae.device))
    sample = train
    if len(train) > TISSUE_SAMPLE:
        sample = train.select_pixels(np.linspace(0, len(train) - 1, TISSUE_SAMPLE).astype(np.int64))
    rule = TissueRule.fit(sample, vae.tissue_threshold)
    tissue = int(rule.mask(sample).sum())
    if tissue < MIN_TRAINING_PIXELS:
        raise DataError(f"{train.source or 'data'}: {tissue} of {len(sample)} training pixels are tissue by the rule "
                        f"{rule} ({rule.how}); training "
                        + ("on tissue only " if vae.tissue_only else "") + "needs at least "
                        f"{MIN_TRAINING_PIXELS}: set tissue_threshold (a lower number, or none)")


def check_kernel(name: str | None) -> None:
    """A Jupyter kernel asked for by name exists; `DataError` listing the ones there are."""
    if name is None:
        return
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    try:
        manager.get_kernel_spec(name)
    except NoSuchKernel:
        raise DataError(f"--kernel {name!r}: no Jupyter kernel of that name; this machine has "
                        f"{sorted(manager.find_kernel_specs())} (jupyter kernelspec list)") from None

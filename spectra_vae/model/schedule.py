"""How long a run trains and at what rate: the plan of epochs, the learning-rate schedule, the plateau rule.

`plan_epochs` turns `epochs` and `patience` into the epochs, patience and plateau window a run trains
with; `learning_rate` is the rate of each step (warm-up, cosine decay, the final decay a plateau
begins); `on_plateau` says when the best RMSE has stopped improving. `TrainConfig` and `TrainState`
hold how to train and where a run stands (everything a resumed run needs besides weights and
optimiser state).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

WARMUP_STEPS = 100  # the learning rate rises linearly over the first steps of a run (at most one epoch)
LR_FLOOR = 0.1  # after the warm-up the rate decays (cosine) to this fraction of the peak over the planned epochs
# epochs="auto": 50 epochs, or on data so small that 50 epochs are fewer than AUTO_MIN_STEPS optimiser
# steps (six 64×64 scans: 16 steps an epoch at batch 512), as many as make that many steps, with the
# patience stretched alike. Measured in benchmarks/RESULTS.md, "Training length on small data".
AUTO_EPOCHS = 50
AUTO_MIN_STEPS = 3000
# Under "auto", one epoch of patience stands for at least this many optimiser steps (10 epochs: 1000
# steps). With Adam's beta2 0.98 a plateau on small EMSC-corrected data lasted 39-43 epochs of 16 steps
# (624-688 steps), longer than the 608 steps that stretching alone gave; benchmarks/RESULTS.md,
# "Training-seed spread with β₂ 0.98".
AUTO_PATIENCE_STEPS = 100
# epochs="auto" stops on a plateau: when the best monitored RMSE (validation, else training) has improved
# by less than PLATEAU_TOLERANCE (relative) over the last PLATEAU_STEPS optimiser steps, and at least
# PLATEAU_MIN_EPOCHS epochs. Measured in benchmarks/results/epoch_speed.md, "The plateau rule".
PLATEAU_TOLERANCE = 0.01
PLATEAU_STEPS = 300
PLATEAU_MIN_EPOCHS = 3
MAX_RECOVERIES = 3  # non-finite losses recovered from (rolled back, learning rate lowered) before giving up


@dataclass(frozen=True)
class TrainConfig:
    """How to train; `learning_rate` is the peak, reached after `WARMUP_STEPS` steps."""

    epochs: int
    learning_rate: float
    kind: str = "gaussian"
    beta: float = 1.0
    patience: int | None = None
    precision: str = "fp32"
    checkpoint_seconds: float | None = None  # a checkpoint within an epoch at most this often
    max_recoveries: int = MAX_RECOVERIES
    warmup_steps: int = WARMUP_STEPS
    plateau: int | None = None  # stop when the best RMSE improved by < plateau_tolerance over this many epochs
    plateau_tolerance: float = PLATEAU_TOLERANCE


@dataclass
class TrainState:
    """Where a run stands: everything a resumed run needs besides weights and optimiser state."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # batches of epoch `epoch + 1` completed (non-zero for a checkpoint within an epoch)
    step: int = 0  # optimiser steps taken in all
    best_epoch: int = 0
    best_loss: float = math.inf
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    decay_steps: int | None = None  # the learning rate decays over the steps planned when training began
    lr_scale: float = 1.0  # lowered by each recovery
    grad_norm: float = 0.0  # running average of the gradient norm (0: none yet)
    events: list[dict[str, Any]] = field(default_factory=list)  # recoveries, in order
    epoch_rng: torch.Tensor | None = None  # the shuffle generator's state when epoch `epoch + 1` began
    epoch_sums: list[float] | None = None  # loss sums of the batches done in that epoch, all processes
    epoch_seconds: float = 0.0  # time spent on those batches
    rng: list[dict[str, torch.Tensor]] = field(default_factory=list)  # generator states per process, at saving
    anneal_start: int | None = None  # the step at which a plateau began the final decay of the learning rate
    anneal_steps: int = 0  # ... and over how many steps it decays to the floor before training stops


def _cosine(step: int, steps: int | None) -> float:
    if not steps:
        return 1.0
    t = min(1.0, step / steps)
    return LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * t))


def learning_rate(config: TrainConfig, state: TrainState) -> float:
    """The step's learning rate: linear warm-up to the peak, then (with `state.decay_steps`) a
    cosine decay to `LR_FLOOR` × the peak, held there after; lowered by recoveries. Once a plateau
    has begun the final decay (`state.anneal_start`), the rate falls by a cosine from where it was
    to the floor over `state.anneal_steps` steps."""
    warm = min(1.0, (state.step + 1) / max(config.warmup_steps, 1))
    decay = _cosine(state.step, state.decay_steps)
    if state.anneal_start is not None:
        start = _cosine(state.anneal_start, state.decay_steps)
        t = min(1.0, (state.step - state.anneal_start) / max(state.anneal_steps, 1))
        decay = LR_FLOOR + (start - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * t))
    return config.learning_rate * warm * decay * state.lr_scale


def plan_epochs(epochs: int | str, patience: int | None, steps_per_epoch: int
                ) -> tuple[int, int | None, int | None]:
    """The epochs, the patience (epochs without improvement before stopping) and the plateau window
    (epochs over which the best RMSE must improve by `PLATEAU_TOLERANCE`, else training stops) a run
    trains with.

    A whole number of `epochs` is taken as given, and so is `patience`; there is no plateau rule.
    `"auto"` is at most `AUTO_EPOCHS` epochs, stretched on small data to at least `AUTO_MIN_STEPS`
    optimiser steps, and stops on a plateau: the window is `PLATEAU_STEPS` steps (at least
    `PLATEAU_MIN_EPOCHS` epochs). Patience then stands for `AUTO_PATIENCE_STEPS` steps an epoch
    at least, as before; `patience` 0 or None switches both off (every planned epoch is trained).
    """
    if epochs != "auto":
        return int(epochs), patience, None
    steps = max(steps_per_epoch, 1)
    planned = max(AUTO_EPOCHS, math.ceil(AUTO_MIN_STEPS / steps))
    if not patience:
        return planned, patience, None
    window = max(PLATEAU_MIN_EPOCHS, math.ceil(PLATEAU_STEPS / steps))
    return planned, math.ceil(patience * max(planned / AUTO_EPOCHS, AUTO_PATIENCE_STEPS / steps)), window


def on_plateau(curve: list[float], window: int, tolerance: float = PLATEAU_TOLERANCE) -> bool:
    """Whether the best of `curve` (one value an epoch, lower is better) improved by less than
    `tolerance` (relative) over its last `window` epochs."""
    values = [v for v in curve if v is not None and math.isfinite(v)]
    if len(values) <= window:
        return False
    before, now = min(values[:-window]), min(values)
    return now > (1 - tolerance) * before

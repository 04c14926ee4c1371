"""The VAE's anomaly monitor: how normal tissue's residuals vary, and how far a pixel's lie from that.

A pixel the model of normal tissue does not explain leaves a residual x − decode(μ(x)) of one of
two kinds: large where normal residuals also vary (normal molecules in unusual proportions,
which a small latent space cannot hold) or present where normal residuals sit at the noise
floor (a compound normal tissue does not contain). After training, the principal directions of
the residuals of the normal training tissue are found (`mspc.Subspace`, as many as rise above
the noise floor); each pixel is then measured inside them, plainly (`inside`: sensitive along
the directions where normal tissue varies most, where a shift in proportions shows) and scaled
by their variances (`t2`, Hotelling's T²: sensitive along the quieter ones), and outside them
(`q`: a compound normal tissue lacks); each statistic gets a scaled-χ² tail fitted on held-out
normal tissue, and the tails' p-values are combined by Fisher's method into one score.
`calibrate` refits the tails on normal pixels of the user's choice and sets the threshold that
flags the requested share of them (fit sets a first one, at 1 %, on the pixels its tails came
from, so that `predict` works at once). Everything is in the VAE's normalised units (the encoder's
inputs); the model's tissue rule decides which pixels are tissue.

When the preprocessing divides each spectrum by a factor of its own (`emsc`, `snv`, `vector`,
`amide1`), the noise no longer has one size: thin tissue, divided by a small amount of tissue,
carries several times the noise of thick tissue, and unweighted statistics take that noise for
anomaly. The residuals are then weighted by the pixel's own noise level (`noise_level`, from the
spectrum's second differences) relative to normal tissue's median (`Monitor.noise_reference`), so
every pixel is judged against the noise it carries.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..core.distributed import all_reduce, dist_info
from ..core.errors import DataError
from ..core.metrics import pixel_rmse
from ..io.dataset import SpectralDataset
from ..model.loss import kl_divergence, reconstruction_nll
from .mspc import Moments, ScaledChi2, Subspace, fisher
from .protocol import FittedModel
from .scans import design_effect

RESIDUAL_STATISTICS = ("inside", "t2", "q")
STATISTICS = (*RESIDUAL_STATISTICS, "kl")
DEFAULT_STATISTICS = ("inside", "t2", "q")  # chosen by measurement: see the README's anomaly section
DEFAULT_FALSE_POSITIVE_RATE = 0.01  # the threshold fit sets on the tails' pixels, until `calibrate` sets another
MONITOR_MAX_PIXELS = 200_000  # tissue pixels (over all processes) the residual model is fitted on, at most
MONITOR_BLOCK = 8192  # ...drawn as blocks of consecutive pixels, so that flags can still be counted in tiles
QUANTILE_BINS = 1 << 16  # resolution of the threshold pooled over the processes of a distributed run
MAX_NOISE_WEIGHT = 10.0  # a pixel's noise level counts as at least 1/10 of normal tissue's median


@dataclass
class Monitor:
    """A fitted residual model: the subspace, the statistics combined, their tails, the calibration."""

    subspace: Subspace
    statistics: tuple[str, ...]
    tails: dict[str, ScaledChi2]
    tails_from: str  # which pixels the tails were fitted on
    threshold: float | None = None  # on the combined score; set by calibrate
    false_positive_rate: float | None = None
    design_effect: float | None = None  # spatial clustering of flags on the calibration tissue
    calibration: dict[str, Any] = field(default_factory=dict)
    noise_reference: float | None = None  # normal tissue's median noise level; None: residuals not weighted

    def combine(self, values: dict[str, np.ndarray], statistics: tuple[str, ...] | None = None) -> np.ndarray:
        """Fisher's combination of the statistics' tail p-values, −2 Σ log pᵢ (higher = more
        anomalous); `statistics` other than the default ones may be named."""
        return fisher(self.tails[s].log_sf(values[s]) for s in (statistics or self.statistics))

    def to_dict(self) -> dict[str, Any]:
        return {"subspace": self.subspace.to_dict(), "statistics": list(self.statistics),
                "tails": {k: v.to_dict() for k, v in self.tails.items()}, "tails_from": self.tails_from,
                "threshold": self.threshold, "false_positive_rate": self.false_positive_rate,
                "design_effect": self.design_effect, "calibration": dict(self.calibration),
                "noise_reference": self.noise_reference}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Monitor:
        return cls(Subspace.from_dict(d["subspace"]), tuple(d["statistics"]),
                   {k: ScaledChi2.from_dict(v) for k, v in d["tails"].items()}, str(d.get("tails_from", "")),
                   d.get("threshold"), d.get("false_positive_rate"), d.get("design_effect"),
                   dict(d.get("calibration", {})), d.get("noise_reference"))


def noise_level(spectra: np.ndarray) -> np.ndarray:
    """Per spectrum of `(n, C)`, the s.d. of its white noise from second differences along the axis:
    1.4826·median|Δ²x|/√6 (for white noise of s.d. σ, Δ²x has s.d. √6·σ; the median leaves out the
    few channels where a band's curvature adds to it)."""
    d2 = np.diff(np.asarray(spectra, dtype=np.float64), n=2, axis=1)
    return 1.4826 * np.median(np.abs(d2), axis=1) / np.sqrt(6.0)


def noise_weights(spectra: np.ndarray, noise_reference: float) -> np.ndarray:
    """Per spectrum, `noise_reference` over its own noise level, at most `MAX_NOISE_WEIGHT`."""
    return noise_reference / np.maximum(noise_level(spectra), noise_reference / MAX_NOISE_WEIGHT)


def _residuals(chunk: np.ndarray, x: torch.Tensor, x_hat: torch.Tensor, noise_reference: float | None) -> np.ndarray:
    """x − decode(μ) in float64; with a `noise_reference`, each pixel's residual weighted by
    `noise_weights` (`chunk`: the pixels as the model sees them, before normalising)."""
    r = (x - x_hat).double().cpu().numpy()
    return r if noise_reference is None else r * noise_weights(chunk, noise_reference)[:, None]


def _passes(vae: FittedModel, data: SpectralDataset) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor,
                                                                      torch.Tensor, torch.Tensor]]:
    """Per batch: (pixels as the model sees them, normalised x, μ, log σ², decode(μ)); no gradients."""
    with torch.no_grad():
        for chunk, x in vae.normalised_batches(data):
            mu, logvar = vae.model_.encode(x)
            yield chunk, x, mu, logvar, vae.model_.decode(mu)


def residual_moments(vae: FittedModel, data: SpectralDataset, noise_reference: float | None = None) -> Moments:
    """One-pass moments of the residuals x − decode(μ) of `data` (normalised units; weighted by
    each pixel's noise with a `noise_reference`), summed over the processes of a distributed run."""
    moments = Moments()
    for chunk, x, _, _, x_hat in _passes(vae, data):
        moments.update(_residuals(chunk, x, x_hat, noise_reference))
    if dist_info()[1] > 1:
        c = vae.model_config_.n_channels
        local = moments.as_array() if moments.n else np.zeros(3 + 2 * c + c * c)
        moments = Moments.from_array(all_reduce(local), c)
    return moments


def pixel_statistics(vae: FittedModel, data: SpectralDataset, monitor: Monitor | None = None,
                     monitored_only: bool = False) -> dict[str, np.ndarray]:
    """Per pixel of `data` (as the model sees them): reconstruction RMSE (data units), the
    reconstruction NLL of decode(μ) and the KL term, and with a monitor the residual statistics
    (with `monitored_only`, just the statistics a monitor's tails are fitted to: the KL term
    and the residual statistics)."""
    plain = () if monitored_only else ("reconstruction_error", "reconstruction_nll")
    out: dict[str, list[np.ndarray]] = {k: [] for k in (*plain, "kl", *(RESIDUAL_STATISTICS if monitor else ()))}
    for chunk, x, mu, logvar, x_hat in _passes(vae, data):
        out["kl"].append(kl_divergence(mu, logvar).cpu().numpy())
        if not monitored_only:
            out["reconstruction_nll"].append(reconstruction_nll(x_hat, x, vae.reconstruction,
                                                                vae.model_.noise_log_var()).cpu().numpy())
            out["reconstruction_error"].append(pixel_rmse(chunk,
                                                          vae.normaliser_.inverse_transform(x_hat.cpu().numpy())))
        if monitor is not None:
            for k, v in monitor.subspace.statistics(_residuals(chunk, x, x_hat, monitor.noise_reference)).items():
                out[k].append(v)
    return {k: np.concatenate(v).astype(np.float64) if v else np.zeros(0) for k, v in out.items()}


def parse_statistics(method: str) -> tuple[str, ...]:
    """`"inside+q"` → ("inside", "q"): statistics whose tail p-values a score combines."""
    parts = tuple(s.strip() for s in method.split("+") if s.strip())
    if not parts or any(s not in STATISTICS for s in parts) or len(set(parts)) != len(parts):
        raise ValueError(f"a combination names distinct statistics among {STATISTICS} joined by '+'; got {method!r}")
    return parts


def _tails(values: dict[str, np.ndarray], statistics: tuple[str, ...]) -> dict[str, ScaledChi2]:
    """Scaled-χ² tails of each statistic (every one, so any combination can be scored), from its
    mean and variance pooled over all processes."""
    sums = all_reduce(np.array([[len(values[s]), values[s].sum(), (values[s] ** 2).sum()] for s in statistics]))
    tails = {}
    for s, (n, s1, s2) in zip(statistics, sums, strict=True):
        if n < 2:
            raise DataError(f"too few normal tissue pixels ({int(n)}) to fit the tail of the {s} statistic")
        mean = s1 / n
        tails[s] = ScaledChi2.from_moments(mean, max(s2 / n - mean**2, 0.0))
    return tails


def _noise_reference(vae: FittedModel, train: SpectralDataset) -> float | None:
    """The median noise level of the (prepared) training tissue, pooled over processes; None when
    there is no noise to measure (noise-free spectra)."""
    parts = [noise_level(chunk) for chunk in vae.prepare(train).iter_chunks(MONITOR_BLOCK)]
    levels = np.concatenate(parts) if parts else np.zeros(0)
    if all_reduce(np.array([float(len(levels))]))[0] == 0:  # every process takes part, with pixels or without
        return None
    reference = _quantile(levels, 0.5)
    return reference if np.isfinite(reference) and reference > 0 else None


def fit_monitor(vae: FittedModel, train: SpectralDataset, validation: SpectralDataset | None,
                n_components: int | str = "auto", statistics: tuple[str, ...] = DEFAULT_STATISTICS,
                noise_weighted: bool | None = None) -> Monitor:
    """The residual model of a trained VAE: directions from the normal training tissue, tails
    from the normal validation tissue (the training tissue when there is none). `noise_weighted`:
    weight each pixel's residual by its noise level (None: when the preprocessing divides each
    spectrum by a factor of its own, see the module's docstring)."""
    unknown = [s for s in statistics if s not in STATISTICS]
    if unknown or not statistics:
        raise DataError(f"anomaly statistics must be some of {STATISTICS}; got {statistics!r}")
    train = _sample(vae.tissue_rule_.select(train) if vae.tissue_rule_ is not None else train)
    if noise_weighted is None:
        noise_weighted = bool(vae.preprocessor_) and vae.preprocessor_.scales_each_spectrum
    reference = _noise_reference(vae, train) if noise_weighted else None
    moments = residual_moments(vae, train, reference)
    if moments.n < 2:
        raise DataError(f"{train.source or 'data'}: too few training tissue pixels to learn the residuals' "
                        f"structure (n_samples = {moments.n})")
    monitor = Monitor(Subspace.fit(moments, n_components), tuple(statistics), {}, "", noise_reference=reference)
    held_out = validation is not None and len(validation) > 0
    source = (vae.tissue_rule_.select(validation)
              if held_out and validation is not None and vae.tissue_rule_ is not None else validation)
    if not held_out or source is None or len(source) == 0:
        source = train
    source = _sample(source)
    values = pixel_statistics(vae, source, monitor, monitored_only=True)
    monitor.tails = _tails(values, STATISTICS)
    monitor.tails_from = (f"normal validation tissue ({len(source)} pixels)" if source is not train
                          else f"normal training tissue ({len(source)} pixels; no validation data)")
    # A first threshold on the same pixels, so that predict works after fit; `calibrate` on
    # held-out normal scans replaces it (on training tissue the model flags too few pixels).
    _set_threshold(monitor, source, np.ones(len(source), bool), monitor.combine(values), DEFAULT_FALSE_POSITIVE_RATE)
    monitor.calibration["automatic"] = True
    return monitor


def _sample(data: SpectralDataset) -> SpectralDataset:
    """At most `MONITOR_MAX_PIXELS` pixels of `data` (over all processes): blocks of
    `MONITOR_BLOCK` consecutive pixels, spread evenly over the data. A 442×442 residual
    covariance and a 1 % quantile (2 000 pixels beyond it) are precise from 200 000 pixels,
    while the two passes cost time in proportion (8.4 s for 463 704 pixels in a profile on 2 CPU
    cores, so minutes for tens of millions); blocks keep neighbouring pixels together for the
    design effect."""
    world = dist_info()[1]
    cap = MONITOR_MAX_PIXELS // world
    if len(data) <= cap:
        return data
    blocks = cap // MONITOR_BLOCK
    if blocks == 0:
        return data.select_pixels(np.arange(cap))
    starts = np.arange(0, len(data), MONITOR_BLOCK)
    keep = starts[np.unique(np.linspace(0, len(starts) - 1, blocks).round().astype(np.int64))]
    return data.select_pixels(np.concatenate([np.arange(s, min(s + MONITOR_BLOCK, len(data))) for s in keep]))


def _quantile(score: np.ndarray, q: float) -> float:
    """`np.quantile(score, q)`, pooled over the processes of a distributed run (there from a
    histogram of `QUANTILE_BINS` bins between the pooled minimum and maximum)."""
    if dist_info()[1] == 1:
        return float(np.quantile(score, q))
    lo = float(all_reduce(np.array([score.min() if len(score) else np.inf]), op="min")[0])
    hi = float(all_reduce(np.array([score.max() if len(score) else -np.inf]), op="max")[0])
    counts = all_reduce(np.histogram(score, QUANTILE_BINS, (lo, hi))[0].astype(np.float64))
    edges = np.linspace(lo, hi, QUANTILE_BINS + 1)
    return float(edges[1:][np.searchsorted(np.cumsum(counts), q * counts.sum())])


def _set_threshold(monitor: Monitor, normal: SpectralDataset, mask: np.ndarray, score: np.ndarray,
                   false_positive_rate: float) -> None:
    """The threshold flagging `false_positive_rate` of the tissue pixels (`mask`) of `normal`,
    whose combined scores are `score`, and how their flags cluster in space."""
    monitor.threshold = _quantile(score, 1 - false_positive_rate)
    monitor.false_positive_rate = float(false_positive_rate)
    flags = np.zeros(len(normal), bool)
    flags[np.flatnonzero(mask)] = score > monitor.threshold
    monitor.design_effect = design_effect(normal, flags, mask, false_positive_rate)
    monitor.calibration = {"pixels": int(mask.sum()), "scans": list(normal.scans),
                           "flagged_fraction": float((score > monitor.threshold).mean()) if len(score) else 0.0}


def calibrate_monitor(monitor: Monitor, vae: FittedModel, normal: SpectralDataset,
                      false_positive_rate: float) -> Monitor:
    """A copy of `monitor` with its tails refitted on the tissue pixels of `normal` and the threshold
    flagging `false_positive_rate` of them; also how flags cluster there (for scan-level calls).
    The monitor given is left as it was."""
    if not 0 < false_positive_rate < 1:
        raise DataError(f"false_positive_rate must be in (0, 1); got {false_positive_rate!r}")
    monitor = copy.deepcopy(monitor)
    mask = vae.tissue_mask(normal)
    tissue = normal.select_pixels(np.flatnonzero(mask))
    if len(tissue) < 10:
        raise DataError(f"{normal.source or 'data'}: {len(tissue)} normal tissue pixels are too few to calibrate "
                        "a threshold (give at least a few hundred)")
    if len(tissue) * false_positive_rate < 1:
        warnings.warn(f"{normal.source or 'data'}: {len(tissue)} normal tissue pixels cannot resolve a "
                      f"false-positive rate of {false_positive_rate:g}; the threshold is about their maximum",
                      UserWarning, stacklevel=3)
    values = pixel_statistics(vae, tissue, monitor, monitored_only=True)
    monitor.tails = _tails(values, STATISTICS)
    monitor.tails_from = f"calibration tissue ({len(tissue)} pixels of {normal.scans})"
    _set_threshold(monitor, normal, mask, monitor.combine(values), false_positive_rate)
    return monitor

"""The VAE's anomaly monitor: how normal tissue's residuals (and codes) vary, and how far a pixel's lie from that.

A pixel the model of normal tissue does not explain leaves a residual x − decode(μ(x)) of one of
two kinds: large where normal residuals also vary (normal molecules in unusual proportions,
which a small latent space cannot hold) or present where normal residuals sit at the noise
floor (a compound normal tissue does not contain). After training, the principal directions of
the residuals of the normal training tissue are found (`mspc.Subspace`, as many as rise above
the noise floor); each pixel is then measured inside them and outside them (`q`, the squared
prediction error). Inside, two statistics of the same k scores see different shifts: `inside`, the
plain squared projection (large along the directions where normal tissue varies most, where a
change in proportions shows), and `t2`, the same scaled by the directions' variances (Hotelling's T²,
sensitive along the quieter ones). So that they count once, `subspace` is the smaller of their two
tail probabilities, with its own tail on normal tissue: one p-value for the evidence inside. `kl`
(the KL term) and `latent` (the negative log density of the latent mean under a Gaussian mixture of
normal tissue's codes, `latent.LatentDensity`) can be asked for too. Each statistic gets a tail on
normal tissue (`tails`), and the monitor's statistics are combined into one tail probability p
whose null is named (`tails.COMBINATIONS`; by default Fisher's over `subspace` and `q`, χ²₄ for
two independent p-values: a residual's parts inside and outside orthogonal directions are
uncorrelated); the score is −log₁₀ p. `calibration.calibrate_monitor` refits the
tails on normal scans of the user's choice and sets the threshold scan-wise (fit sets a first one,
at 1 %, on the pixels its tails came from, so that `predict` works at once). Everything is in the
VAE's normalised units (the encoder's inputs); the model's tissue rule decides which pixels are
tissue.

When the preprocessing divides each spectrum by a factor of its own (`emsc`, `snv`, `vector`,
`amide1`), the noise no longer has one size: thin tissue, divided by a small amount of tissue,
carries several times the noise of thick tissue, and unweighted statistics take that noise for
anomaly. The residuals are then weighted by the pixel's own noise level (`noise_level`, from the
spectrum's second differences) relative to normal tissue's median (`Monitor.noise_reference`), so
every pixel is judged against the noise it carries.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ..core.distributed import all_reduce, dist_info, gather_objects
from ..core.errors import DataError
from ..core.metrics import pixel_rmse
from ..core.threads import numpy_blas_single_thread
from ..io.dataset import SpectralDataset, shard_positions
from ..model.loss import kl_divergence, reconstruction_nll
from .calibration import (
    calibrate_values,
    check_normal,
    check_rate,
    complement_eigenvalues,
    odd_scans,
    one_scan_caution,
)
from .fitted import (
    DEFAULT_COMBINATION,
    DEFAULT_STATISTICS,
    DEFAULT_TAIL,
    DERIVED,
    STATISTICS,
    Monitor,
    check_choices,
    parse_method,
    parse_statistics,
)
from .latent import LatentDensity
from .mspc import Moments, Subspace
from .protocol import FittedModel
from .scans import MIN_SCANS_FOR_SPREAD
from .spatial import check_images, check_smoothing, near

__all__ = ["DEFAULT_COMBINATION", "DEFAULT_STATISTICS", "DEFAULT_TAIL", "STATISTICS", "Monitor", "calibrate_monitor",
           "fit_monitor", "noise_level", "parse_method", "parse_statistics", "pixel_statistics"]

DEFAULT_FALSE_POSITIVE_RATE = 0.01  # the threshold fit sets on the tails' pixels, until `calibrate` sets another
MONITOR_MAX_PIXELS = 50_000  # tissue pixels (over all processes) the residual model is fitted on, at most
MONITOR_BLOCK = 4096  # ...drawn as blocks of consecutive pixels, so that flags can still be counted in tiles
MAX_NOISE_WEIGHT = 10.0  # a pixel's noise level counts as at least 1/10 of normal tissue's median


def noise_level(spectra: np.ndarray) -> np.ndarray:
    """Per spectrum of `(n, C)`, the s.d. of its white noise from second differences along the axis:
    1.4826·median|Δ²x|/√6 (for white noise of s.d. σ, Δ²x has s.d. √6·σ; the median leaves out the
    few channels where a band's curvature adds to it)."""
    d2 = np.diff(np.asarray(spectra, dtype=np.float64), n=2, axis=1)
    return 1.4826 * np.median(np.abs(d2), axis=1) / np.sqrt(6.0)


def noise_weights(spectra: np.ndarray, noise_reference: float) -> np.ndarray:
    """Per spectrum, `noise_reference` over its own noise level, at most `MAX_NOISE_WEIGHT`."""
    return noise_reference / np.maximum(noise_level(spectra), noise_reference / MAX_NOISE_WEIGHT)


def residuals(chunk: np.ndarray, x: torch.Tensor, x_hat: torch.Tensor, noise_reference: float | None) -> np.ndarray:
    """x − decode(μ) in float64; with a `noise_reference`, each pixel's residual weighted by
    `noise_weights` (`chunk`: the pixels as the model sees them, before normalising)."""
    r = (x - x_hat).double().cpu().numpy()
    return r if noise_reference is None else r * noise_weights(chunk, noise_reference)[:, None]


def reconstruct_at_mean(vae: FittedModel, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                     torch.Tensor]:
    """(what the model reconstructs, μ, log σ², the reconstruction at z = μ) of a normalised batch: the
    one place the monitor asks a model for its reconstruction (deterministic)."""
    mu, logvar, x_hat = vae.model_.infer(x)
    return vae.model_.target(x), mu, logvar, x_hat


def passes(vae: FittedModel, data: SpectralDataset) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor,
                                                                     torch.Tensor, torch.Tensor]]:
    """Per batch: (pixels as the model sees them, normalised target, μ, log σ², its reconstruction at μ)."""
    with torch.no_grad():
        for chunk, x in vae.normalised_batches(data):
            target, mu, logvar, x_hat = reconstruct_at_mean(vae, x)
            yield chunk, target, mu, logvar, x_hat


def residual_moments(vae: FittedModel, data: SpectralDataset, noise_reference: float | None = None,
                     keep_latent: bool = False) -> tuple[Moments, np.ndarray]:
    """One-pass moments of the residuals x − decode(μ) of `data` (normalised units; weighted by each
    pixel's noise with a `noise_reference`), summed over the processes of a distributed run; and,
    with `keep_latent`, the latent means of every process's pixels."""
    moments, mus = Moments(), []
    for chunk, x, mu, _, x_hat in passes(vae, data):
        moments.update(residuals(chunk, x, x_hat, noise_reference))
        if keep_latent:
            mus.append(mu.double().cpu().numpy())
    if dist_info()[1] > 1:
        c = vae.model_config_.n_channels
        local = moments.as_array() if moments.n else np.zeros(3 + 2 * c + c * c)
        moments = Moments.from_array(all_reduce(local), c)
    latent = np.concatenate(mus) if mus else np.zeros((0, vae.latent_dim))
    if keep_latent and dist_info()[1] > 1:
        latent = np.concatenate(gather_objects(latent))
    return moments, latent


@numpy_blas_single_thread
def pixel_statistics(vae: FittedModel, data: SpectralDataset, monitor: Monitor | None = None,
                     monitored_only: bool = False, complement: Moments | None = None) -> dict[str, np.ndarray]:
    """Per pixel of `data` (as the model sees them): reconstruction RMSE (data units), the
    reconstruction NLL of decode(μ) and the KL term, and with a monitor its statistics (with
    `monitored_only`, just those a monitor's tails are fitted to). `complement`, if given, gathers
    the residuals outside the monitor's directions (for Q's eigenvalues)."""
    plain = () if monitored_only else ("reconstruction_error", "reconstruction_nll")
    names = tuple(s for s in monitor.available if s not in DERIVED) if monitor is not None else ("kl",)
    out: dict[str, list[np.ndarray]] = {k: [] for k in (*plain, *names)}
    for chunk, x, mu, logvar, x_hat in passes(vae, data):
        out["kl"].append(kl_divergence(mu, logvar).cpu().numpy())
        if not monitored_only:
            out["reconstruction_nll"].append(reconstruction_nll(x_hat, x, vae.reconstruction,
                                                                vae.model_.noise_log_var()).cpu().numpy())
            out["reconstruction_error"].append(pixel_rmse(chunk,
                                                          vae.normaliser_.inverse_transform(x_hat.cpu().numpy())))
        if monitor is not None:
            r = residuals(chunk, x, x_hat, monitor.noise_reference)
            for k, v in monitor.subspace.statistics(r).items():
                out[k].append(v)
            if monitor.latent is not None:
                out["latent"].append(monitor.latent.statistic(mu.double().cpu().numpy()))
            if complement is not None:
                complement.update(monitor.subspace.outside(r))
    return {k: np.concatenate(v).astype(np.float64) if v else np.zeros(0) for k, v in out.items()}


def block_positions(data: SpectralDataset) -> np.ndarray | None:
    """Positions of at most `MONITOR_MAX_PIXELS` pixels of `data` (the whole data, before a distributed
    run shares them out: the same sample in any number of processes): blocks of `MONITOR_BLOCK`
    consecutive pixels, spread evenly over the data; None when all of them fit."""
    cap = MONITOR_MAX_PIXELS
    if len(data) <= cap:
        return None
    blocks = cap // MONITOR_BLOCK
    if blocks == 0:
        return np.arange(cap)
    starts = np.arange(0, len(data), MONITOR_BLOCK)
    keep = starts[np.unique(np.linspace(0, len(starts) - 1, blocks).round().astype(np.int64))]
    return np.concatenate([np.arange(s, min(s + MONITOR_BLOCK, len(data))) for s in keep])


def sample_blocks(data: SpectralDataset) -> SpectralDataset:
    """At most `MONITOR_MAX_PIXELS` pixels of `data` (`block_positions`). The few principal directions of
    the residuals and a 1 % quantile (500 pixels beyond it) are well determined from 50 000 pixels,
    while the passes cost time in proportion (at 200 000 the monitor took longer than a seed-scale
    epoch on 2 CPU cores); blocks keep neighbouring pixels together for the design effect."""
    positions = block_positions(data)
    return data if positions is None else data.select_pixels(positions)


def local_positions(n_pixels: int) -> np.ndarray | None:
    """This process's share of `n_pixels` positions in a distributed run (`SpectralDataset.shard`'s
    blocks); None in a single process."""
    rank, world = dist_info()
    return None if world == 1 else shard_positions(n_pixels, rank, world)


def tissue_of(vae: FittedModel, data: SpectralDataset, shared: bool = True) -> SpectralDataset:
    """The tissue pixels of `data` by the model's rule (all of `data` without a rule). `shared`: in a
    distributed run every process masks its own share and the masks are exchanged (each reads a share,
    all get the whole; every process must call it)."""
    return data if vae.tissue_rule_ is None else vae.tissue_rule_.select(data, shared=shared)


def with_neighbours(data: SpectralDataset, positions: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """`positions` of `data` with every pixel of `data` in their k×k windows (k = `size`): the sorted
    positions, and which of them are the given ones. A score smoothed over the windows of the given
    pixels then has all their neighbours, at a block's first and last rows too."""
    marked = np.zeros(len(data), bool)
    marked[positions] = True
    every = np.flatnonzero(near(data.coords, marked, size))
    return every, marked[every]


def monitor_sample(vae: FittedModel, train: SpectralDataset, shared: bool = False) -> SpectralDataset:
    """The normal training tissue a residual model is fitted on: `train` (as the model trained on it, all
    of it: in a distributed run every process names the same sample) by the model's tissue rule, at most
    `MONITOR_MAX_PIXELS` of it (`sample_blocks`). The fair baselines are fitted on exactly these pixels.
    `shared`: the tissue measured in shares (`tissue_of`; every process of a distributed run must call it)."""
    return sample_blocks(tissue_of(vae, train, shared))


def _noise_reference(vae: FittedModel, train: SpectralDataset) -> float | None:
    """The median noise level of the (prepared) training tissue, pooled over processes; None when
    there is no noise to measure (noise-free spectra)."""
    parts = [noise_level(chunk) for chunk in vae.prepare(train).iter_chunks(MONITOR_BLOCK)]
    levels = np.concatenate(gather_objects(np.concatenate(parts) if parts else np.zeros(0)))
    if len(levels) == 0:
        return None
    reference = float(np.median(levels))
    return reference if np.isfinite(reference) and reference > 0 else None


@numpy_blas_single_thread
def fit_monitor(vae: FittedModel, train: SpectralDataset, validation: SpectralDataset | None,
                n_components: int | str = "auto", statistics: Sequence[str] = DEFAULT_STATISTICS,
                noise_weighted: bool | None = None, combination: str = DEFAULT_COMBINATION,
                tail_kind: str = DEFAULT_TAIL, latent_components: int | str | None = "bic") -> Monitor:
    """The residual model of a trained VAE: directions (and the latent density) from the normal
    training tissue, tails from the normal validation tissue (the training tissue when there is
    none). `noise_weighted`: weight each pixel's residual by its noise level (None: when the
    preprocessing divides each spectrum by a factor of its own, see the module's docstring).
    `latent_components`: the mixture's size ("bic": chosen by BIC; None: no latent density).
    In a distributed run every process passes all of `train` and `validation`; each scores its share
    of the sample, and the sums are pooled."""
    check_choices(statistics, combination, tail_kind)
    if "latent" in statistics and latent_components is None:
        raise DataError("the latent statistic needs a latent density (latent_components)")
    train = monitor_sample(vae, train, shared=True)
    mine = train.shard(*dist_info())  # this process's share: it scores these, the sums are pooled
    if noise_weighted is None:
        noise_weighted = bool(vae.preprocessor_) and vae.preprocessor_.scales_each_spectrum
    reference = _noise_reference(vae, mine) if noise_weighted else None
    moments, latent_means = residual_moments(vae, mine, reference, keep_latent=latent_components is not None)
    if moments.n < 2:
        raise DataError(f"{train.source or 'data'}: too few training tissue pixels to learn the residuals' "
                        f"structure (n_samples = {moments.n})")
    density = None if latent_components is None else LatentDensity.fit(latent_means, latent_components)
    monitor = Monitor(Subspace.fit(moments, n_components), tuple(statistics), {}, "", noise_reference=reference,
                      combination=combination, tail_kind=tail_kind, latent=density,
                      sample_digest=train.pixel_digest())
    held_out = validation is not None and len(validation) > 0
    source = tissue_of(vae, validation) if held_out and validation is not None else validation
    if not held_out or source is None or len(source) == 0:
        source = train
    # A first threshold, so that predict works after fit; `calibrate` on held-out normal scans
    # replaces it (on training tissue the model flags too few pixels).
    monitor = calibrate_tissue(monitor, vae, source, DEFAULT_FALSE_POSITIVE_RATE)
    monitor.tails_from = (f"normal validation tissue ({monitor.calibration['pixels']} pixels)" if source is not train
                          else f"normal training tissue ({monitor.calibration['pixels']} pixels; no validation data)")
    monitor.calibration["automatic"] = True
    return monitor


def _gathered(values: dict[str, np.ndarray], names: np.ndarray, coords: np.ndarray, counted: np.ndarray
              ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Every process's pixels on every process, the scans numbered by name (0..k−1)."""
    parts = gather_objects((values, names, coords, counted))
    values = {k: np.concatenate([p[0][k] for p in parts]) for k in values}
    names, coords = np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])
    counted = np.concatenate([p[3] for p in parts])
    scans, ids = np.unique(names, return_inverse=True)
    coords = coords.copy()
    coords[:, 0] = ids
    return values, ids.astype(np.int64), coords, [str(s) for s in scans], counted


def calibrate_tissue(monitor: Monitor, vae: FittedModel, tissue: SpectralDataset, rate: float,
                     scan_level: float = 0.01, smoothing: int = 1) -> Monitor:
    """`calibrate_values` on normal tissue pixels (at most `monitor.MONITOR_MAX_PIXELS` of them, in
    blocks of consecutive pixels; with `smoothing`, their neighbours are scored too, so that every
    counted pixel's smoothed score has its whole window). In a distributed run every process passes all
    of `tissue`, scores its share of the sample, and the scores are pooled."""
    positions = block_positions(tissue)
    counted = np.ones(len(tissue) if positions is None else len(positions), bool)
    if positions is not None:
        if smoothing > 1:
            positions, counted = with_neighbours(tissue, positions, smoothing)
        tissue = tissue.select_pixels(positions)
    mine = local_positions(len(tissue))
    if mine is not None:
        tissue, counted = tissue.select_pixels(mine), counted[mine]
    complement = Moments()
    values = pixel_statistics(vae, tissue, monitor, monitored_only=True, complement=complement)
    if dist_info()[1] > 1:
        c = vae.model_config_.n_channels
        local = complement.as_array() if complement.n else np.zeros(3 + 2 * c + c * c)
        complement = Moments.from_array(all_reduce(local), c)
    names = np.asarray(tissue.scans, dtype=object)[tissue.scan_of()] if len(tissue) else np.zeros(0, object)
    values, ids, coords, scans, counted = _gathered(values, names.astype(str), tissue.coords, counted)
    if len(ids) < 2:
        raise DataError(f"{tissue.source or 'data'}: too few normal tissue pixels ({len(ids)}) to fit tails")
    return calibrate_values(monitor, values, ids, coords, rate, scan_level, complement_eigenvalues(complement), scans,
                            smoothing, counted=None if counted.all() else counted)


@numpy_blas_single_thread
def calibrate_monitor(monitor: Monitor, vae: FittedModel, normal: SpectralDataset, false_positive_rate: Any,
                      scan_false_positive_rate: Any = 0.01, normal_labels: Sequence[str] | None = None,
                      smoothing: Any = 1) -> Monitor:
    """A copy of `monitor` calibrated on the tissue pixels of the normal scans `normal`: tails, the
    threshold (cross-conformal over scans, flagging `false_positive_rate` of a new normal scan's
    tissue on average) and the scan-level limit at `scan_false_positive_rate`; with `smoothing` k > 1,
    all of it for the score averaged over each pixel's k×k tissue window (`spatial`). The monitor
    given is left as it was. Warns what fewer than `scans.MIN_SCANS_FOR_SPREAD` scans cannot promise,
    and names calibration scans that look unlike the others."""
    rate = check_rate(false_positive_rate)
    smoothing = check_smoothing(smoothing)
    if smoothing > 1:
        check_images(normal)
    scan_rate = check_rate(scan_false_positive_rate, "scan_false_positive_rate")
    check_normal(normal, normal_labels)
    if vae.tissue_rule_ is None:
        vae.tissue_mask(normal)  # a model saved before tissue rules: its DataError says what to do
    tissue = tissue_of(vae, normal)
    where = normal.source or "data"
    if len(tissue) < 10:
        raise DataError(f"{where}: {len(tissue)} normal tissue pixels are too few to calibrate a threshold "
                        "(give at least a few hundred)")
    if len(tissue) * rate < 1:
        warnings.warn(f"{where}: {len(tissue)} normal tissue pixels cannot resolve a false-positive rate of "
                      f"{rate:g}; the threshold is about their maximum", UserWarning, stacklevel=3)
    m = calibrate_tissue(monitor, vae, tissue, rate, scan_rate, smoothing)
    m.tails_from = f"calibration tissue ({m.calibration['pixels']} pixels of {m.calibration['scans']})"
    k = len(m.calibration["scans"])
    if k < MIN_SCANS_FOR_SPREAD:
        warnings.warn(one_scan_caution(k, rate), UserWarning, stacklevel=3)
    odd = odd_scans(m)
    if odd:
        warnings.warn(f"{where}: calibration scans {odd} are flagged above the limit that the other calibration "
                      "scans set; they may hold abnormal tissue (or normal scans differ more than the others show)",
                      UserWarning, stacklevel=3)
    return m

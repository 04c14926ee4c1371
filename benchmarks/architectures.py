"""The architectures side by side (issue 29): each architecture × latent size × training seed.

Data nothing was tuned on:

- **demo**: fresh generator seeds (`--demo-seeds`), `--layout` scans of `--size`² each (the demo's
  own split file: normal training, validation and test scans, the abnormal ones last);
- **collagen**: the 731 labelled FTIR spectra of orange-spectroscopy's `collagen.csv` (DNA,
  collagen, glycogen, lipids), fetched from its PyPI wheel into the cache once;
- **coffee**: the 60 ATR-FTIR spectra of coffee of three origins that ship with `chemotools`
  (fetched from PyPI alike); both real sets split 70/30 stratified by class (seed 0), 15 % of the
  training part kept for validation (early stopping), as a user would;
- **fermentation**: the 1 629 ATR-MIR spectra measured on-line during a lignocellulose ethanol
  fermentation that ship with `chemotools` (Cabaneros López et al.), cut to 950–1550 cm⁻¹, the region
  with the chemical information that the data's own tutorial models (outside it lie the ATR crystal's
  opaque region, water's bending band near 1640 cm⁻¹ and a few channels of detector artefacts above
  1790 cm⁻¹, 1–3 absorbance units of spread). No classes: consecutive spectra are near copies, so the
  split is by blocks of 50 consecutive spectra (30 % of the blocks held out, seed 0; 15 % of the
  training blocks kept for validation), never within a block.

For each run: held-out RMSE ÷ PCA at the same number of components (PCA fitted on the same training
pixels, in the space the model reconstructs: `views.analysis.compare_with_pca`), the 5-NN accuracy
of the held-out latent means against their labels (tissue classes on the demo, classes on the real
sets; the classifier fitted on the training latents), the anomaly AUROC per kind on the demo's
abnormal scans (tissue by the model's rule; also each score averaged over the tissue of the
`--neighbourhood` window by the package's own option, `anomaly_score(..., smoothing=k)`: the mlp's
smoothed score is the bar the spatial model must clear), the CPU epoch time (median of the run's epochs), and for
`unmixing` on the demo the match between learned and true component spectra (correlation after a
Hungarian assignment) and of abundances with true fractions on held-out tissue. The command, seeds,
machine and commit are printed with every table.

Diagnostics beside the defaults: `--set NAME=VALUE` trains every run with other estimator parameters (a
variant); on labelled real sets each run also reports an oracle reference, the RMSE of a PCA per class
(the class given) ÷ PCA's (what telling the classes apart is worth); `--unmixing-start truth` starts
unmixing's component spectra from the demo's true ones (does the model keep the truth once it has it?),
`--unmixing-start class-means` on real sets from each class's mean training spectrum;
and the demo's true fractions are printed per seed (how far the data reach towards each pure spectrum).
"""

from __future__ import annotations

import argparse
import io
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

from benchmarks.anomaly_real import fetch_real_spectra
from benchmarks.common import demo_data, epochs_arg, fetch_from_wheel, machine
from spectra_vae import SpectraVAE, anomaly, load_dataset
from spectra_vae.core.errors import DataError
from spectra_vae.io.demo import COMPONENTS
from spectra_vae.io.demo_truth import read_demo_truth
from spectra_vae.io.finite import cache_dir
from spectra_vae.views.analysis import compare_with_pca
from spectra_vae.workflow.parameters import check_parameter

ARCHITECTURES = ("mlp", "spatial", "unmixing")


def fetch_coffee() -> tuple[np.ndarray, np.ndarray] | None:
    """chemotools' coffee spectra (60 ATR-FTIR spectra, three origins) from its PyPI wheel, cached."""
    folder = cache_dir() / "datasets"
    spectra, labels = folder / "chemotools_coffee_spectra.csv", folder / "chemotools_coffee_labels.csv"
    if not fetch_from_wheel("chemotools==0.5.0", {"chemotools/datasets/data/coffee_spectra.csv": spectra,
                                                  "chemotools/datasets/data/coffee_labels.csv": labels},
                            "coffee spectra"):
        return None
    x = pd.read_csv(io.StringIO(spectra.read_text())).to_numpy(np.float32)
    y = pd.read_csv(io.StringIO(labels.read_text()))["labels"].to_numpy()
    return x, y


FERMENTATION_RANGE = (950.0, 1550.0)  # cm⁻¹: where the chemical information is
BLOCK = 50  # consecutive fermentation spectra that are split together


def fetch_fermentation() -> tuple[np.ndarray, np.ndarray] | None:
    """chemotools' on-line fermentation spectra (1 629 ATR-MIR spectra in time order) from its PyPI wheel,
    cached, cut to `FERMENTATION_RANGE`: (spectra, wavenumbers)."""
    target = cache_dir() / "datasets" / "chemotools_fermentation_spectra.csv"
    if not fetch_from_wheel("chemotools==0.5.0", {"chemotools/datasets/data/fermentation_spectra.csv": target},
                            "fermentation spectra"):
        return None
    frame = pd.read_csv(io.StringIO(target.read_text()))
    wn = np.array([float(c) for c in frame.columns])
    keep = (wn >= FERMENTATION_RANGE[0]) & (wn <= FERMENTATION_RANGE[1])
    return frame.to_numpy(np.float32)[:, keep], wn[keep]


def block_split(rows: np.ndarray, test_size: float, seed: int, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """`rows` (indices of a time series) split by blocks of `block` consecutive indices: whole blocks go to
    the second part, `test_size` of them, chosen with `seed`. For time series, whose neighbours are near
    copies: a held-out spectrum's neighbours are held out with it."""
    idx = np.asarray(rows)
    blocks = idx // block
    ids = np.unique(blocks)
    rng = np.random.default_rng(seed)
    held = rng.choice(ids, size=max(1, round(test_size * len(ids))), replace=False)
    out = np.isin(blocks, held)
    return idx[~out], idx[out]


def setting(text: str) -> tuple[str, object]:
    """`--set NAME=VALUE`: one more estimator parameter for every run (a variant of the defaults), read
    and checked as notebook 02's `-p NAME VALUE` is (e.g. `hidden_dims=512,256`, `beta=0.5`)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VALUE (e.g. beta=0.5)")
    name = name.strip()
    if name in ("latent_dim", "architecture", "seed", "epochs", "neighbourhood", "verbose"):
        raise argparse.ArgumentTypeError(f"{name} has its own option")
    try:
        return name, check_parameter(name, value.strip())
    except DataError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def classwise_pca_ratio(x: np.ndarray, y: np.ndarray, fit_idx: np.ndarray, test_idx: np.ndarray, k: int) -> float:
    """Held-out RMSE of an oracle piecewise-linear model ÷ PCA-k's: each held-out spectrum reconstructed
    by the k-component PCA of its own class (the class given, not inferred), both fitted on `fit_idx`.
    What a model gains by telling the classes apart, and no more."""
    def pca_residual(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        mean = train.mean(axis=0)
        _, _, vt = np.linalg.svd(train - mean, full_matrices=False)
        basis = vt[:k]
        centred = test - mean
        return centred - (centred @ basis.T) @ basis

    xf = x.astype(np.float64)
    classwise = np.concatenate([pca_residual(xf[fit_idx[y[fit_idx] == c]], xf[test_idx[y[test_idx] == c]])
                                for c in np.unique(y[test_idx])])
    overall = pca_residual(xf[fit_idx], xf[test_idx])
    return float(np.sqrt((classwise ** 2).mean()) / np.sqrt((overall ** 2).mean()))


def pca_ladder(x: np.ndarray, fit_idx: np.ndarray, test_idx: np.ndarray, k_max: int = 50) -> np.ndarray:
    """Held-out RMSE of PCA with 1, 2, …, `k_max` components, fitted on `fit_idx` (index k − 1: k components)."""
    xf = x.astype(np.float64)
    mean = xf[fit_idx].mean(axis=0)
    _, _, vt = np.linalg.svd(xf[fit_idx] - mean, full_matrices=False)
    centred = xf[test_idx] - mean
    out = []
    for k in range(1, min(k_max, len(vt)) + 1):
        residual = centred - (centred @ vt[:k].T) @ vt[:k]
        out.append(np.sqrt((residual ** 2).mean()))
    return np.asarray(out)


def equivalent_components(ladder: np.ndarray, rmse: float) -> float:
    """How many PCA components reach `rmse` (`pca_ladder`), interpolated on the log scale between whole
    numbers: what a model of that error is worth in principal components ("the VAE is worth about two");
    NaN beyond the ladder's last rung, 1 at or above its first."""
    if rmse >= ladder[0]:
        return 1.0
    below = np.flatnonzero(ladder <= rmse)
    if not len(below):
        return float("nan")
    k = int(below[0])  # ladder[k] ≤ rmse < ladder[k − 1]: between k and k + 1 components
    lo, hi = np.log(ladder[k - 1]), np.log(ladder[k])
    return float(k + (lo - np.log(rmse)) / (lo - hi))


def knn_accuracy(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, y_test: np.ndarray) -> float:
    """5-NN accuracy of held-out latent means, the classifier fitted on the training latents."""
    keep_tr, keep_te = y_train >= 0, y_test >= 0
    if len(np.unique(y_train[keep_tr])) < 2 or not keep_te.any():
        return float("nan")
    knn = KNeighborsClassifier(5).fit(z_train[keep_tr], y_train[keep_tr])
    return float((knn.predict(z_test[keep_te]) == y_test[keep_te]).mean())


def true_fractions(folder: Path, data) -> tuple[np.ndarray, list[str], np.ndarray]:
    """The demo's true component spectra, their names, and each pixel's true fractions `(n_pixels, n)`."""
    parts, components, names = [], None, []
    for k, name in enumerate(data.scans):
        components, names, truth = read_demo_truth(folder, name)
        rc = data.coords[data.scan_of() == k]
        parts.append(truth.fractions[rc[:, 1], rc[:, 2]])
    assert components is not None
    return components, names, np.concatenate(parts)


def fraction_spread(folder: Path, data) -> str:
    """Each true component's fraction over the tissue of `data` (1st–99th percentile, and the maximum):
    how far the data reach towards each pure spectrum, which is what unmixing can identify it from."""
    _, names, frac = true_fractions(folder, data)
    tissue = frac.sum(axis=1) > 0
    return ", ".join(f"{n} {np.percentile(frac[tissue, j], 1):.2f}–{np.percentile(frac[tissue, j], 99):.2f} "
                     f"(max {frac[tissue, j].max():.2f})" for j, n in enumerate(names) if frac[tissue, j].max() > 0)


def component_match(vae: SpectraVAE, folder: Path, test) -> dict[str, float]:
    """Learned against true components (Hungarian on correlation, over the true tissue components present
    in the held-out tissue) and learned abundances against true fractions on that tissue."""
    learned = vae.component_spectra_
    components, names, frac = true_fractions(folder, test)
    tissue = frac.sum(axis=1) > 0
    present = [j for j in range(len(names)) if frac[tissue, j].max(initial=0) > 0.02]
    corr = np.array([[np.corrcoef(learned[i], components[j])[0, 1] for j in present] for i in range(len(learned))])
    rows, cols = linear_sum_assignment(-corr)
    a = vae.abundances(test)
    out = {}
    for i, c in zip(rows, cols, strict=True):
        j = present[c]
        out[f"spectrum r {names[j]}"] = float(corr[i, c])
        out[f"abundance r {names[j]}"] = float(np.corrcoef(a[tissue, i], frac[tissue, j])[0, 1])
    return out


def demo_runs(args: argparse.Namespace) -> pd.DataFrame:
    rows = []
    for data_seed in args.demo_seeds:
        n_abnormal = max(1, args.layout // 3)
        folder = demo_data(f"arch_{args.layout}x{args.size}_s{data_seed}", args.layout, args.size, data_seed,
                           n_abnormal=n_abnormal)
        split = {s: load_dataset(folder, split=s) for s in ("normal_train", "normal_val", "normal_test", "abnormal")}
        train, val, test, ab = (split[s] for s in ("normal_train", "normal_val", "normal_test", "abnormal"))
        print(f"demo {data_seed}, true fractions over the training tissue: {fraction_spread(folder, train)}",
              flush=True)
        true_spectra = read_demo_truth(folder, train.scans[0])[0][:len(COMPONENTS)]  # the tissue's, no paraffin
        for arch in args.architectures:
            for k in args.latent_dims:
                start = None
                if arch == "unmixing" and args.unmixing_start == "truth":
                    if k != len(true_spectra):
                        print(f"unmixing, latent {k}: no start from the truth (it holds {len(true_spectra)} "
                              "tissue components); skipped", flush=True)
                        continue
                    start = true_spectra
                for seed in args.seeds:
                    vae = SpectraVAE(latent_dim=k, architecture=arch, seed=seed, epochs=args.epochs,
                                     neighbourhood=args.neighbourhood, verbose=False,
                                     **dict(args.set)).fit(train, validation=val, component_start=start)
                    table = compare_with_pca(vae, train, test)
                    row = {"data": f"demo {data_seed}", "architecture": arch, "latent": k, "seed": seed,
                           "rmse ÷ PCA": table.loc["VAE", "rmse"] / table.loc["PCA", "rmse"],
                           "rmse": table.loc["VAE", "rmse"],
                           "5-NN": knn_accuracy(vae.transform(train), train.labels, vae.transform(test), test.labels),
                           "epoch s": float(vae.history.seconds.median()), "epochs": len(vae.history)}
                    mask = vae.tissue_mask(ab)
                    # the package's smoothing option over the spatial model's own window (the bar it must clear)
                    scores = {"VAE": vae.anomaly_score(ab),
                              "VAE smoothed": vae.anomaly_score(ab, smoothing=args.neighbourhood)}
                    table = anomaly.evaluate_kinds(scores, ab, mask)
                    for (kind, name), auroc in table["AUROC"].items():
                        row[f"AUROC {kind}" + (f" {args.neighbourhood}×{args.neighbourhood}" if name != "VAE"
                                               else "")] = float(auroc)
                    if arch == "unmixing":
                        row |= component_match(vae, folder, test)
                    rows.append(row)
                    print(pd.Series(row).to_frame().T.round(4).to_string(index=False), flush=True)
    return pd.DataFrame(rows)


def real_runs(name: str, x: np.ndarray, y: np.ndarray | None, wn: np.ndarray | None,
              args: argparse.Namespace) -> pd.DataFrame:
    """Each architecture × latent size × seed on a real table: split 70/30 stratified by class `y` and 15 %
    of the training part for validation; with `y` None (a time series), by blocks (`block_split`)."""
    rows = []
    if y is None:
        tr, te = block_split(np.arange(len(x)), 0.3, seed=0)
    else:
        tr, te = train_test_split(np.arange(len(x)), test_size=0.3, stratify=y, random_state=0)
    frame = (lambda idx: pd.DataFrame(x[idx], columns=wn)) if wn is not None else (lambda idx: x[idx])
    codes = np.full(len(x), -1) if y is None else pd.Series(y).astype("category").cat.codes.to_numpy()
    classes = np.unique(y) if y is not None else np.array([])
    for arch in [a for a in args.architectures if a != "spatial"]:  # tables have no neighbourhoods
        for k in args.latent_dims:
            if arch == "unmixing" and args.unmixing_start == "class-means" and (y is None or k != len(classes)):
                print(f"{name}, unmixing, latent {k}: no start from the class means ({len(classes)} classes); skipped",
                      flush=True)
                continue
            for seed in args.seeds:
                if y is None:
                    fit_idx, val_idx = block_split(tr, 0.15, seed)
                else:
                    fit_idx, val_idx = train_test_split(tr, test_size=0.15, stratify=y[tr], random_state=seed)
                start = None
                if arch == "unmixing" and args.unmixing_start == "class-means" and y is not None:
                    # each class's mean training spectrum, as a lab's reference spectra would be (≥ 0)
                    start = np.clip([x[fit_idx[y[fit_idx] == c]].mean(axis=0) for c in classes], 0, None)
                vae = SpectraVAE(latent_dim=k, architecture=arch, seed=seed, epochs=args.epochs, verbose=False,
                                 **dict(args.set)).fit(frame(fit_idx), validation=frame(val_idx),
                                                       component_start=start)
                train_ds, test_ds = load_dataset(frame(fit_idx)), load_dataset(frame(te))
                table = compare_with_pca(vae, train_ds, test_ds)
                row = {"data": name, "architecture": arch, "latent": k, "seed": seed,
                       "rmse ÷ PCA": table.loc["VAE", "rmse"] / table.loc["PCA", "rmse"],
                       "rmse": table.loc["VAE", "rmse"],
                       "5-NN": knn_accuracy(vae.transform(train_ds), codes[fit_idx], vae.transform(test_ds), codes[te]),
                       "class-wise PCA ÷ PCA": (float("nan") if y is None
                                                 else classwise_pca_ratio(x, y, fit_idx, te, k)),
                       "PCA components at its RMSE": equivalent_components(ladder := pca_ladder(x, fit_idx, te),
                                                                             table.loc["VAE", "rmse"]),
                       "PCA components at 0.5× PCA": equivalent_components(ladder, 0.5 * ladder[k - 1]),
                       "epoch s": float(vae.history.seconds.median()), "epochs": len(vae.history)}
                rows.append(row)
                print(pd.Series(row).to_frame().T.round(4).to_string(index=False), flush=True)
    return pd.DataFrame(rows)


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean (min–max over seeds) of every figure, per data set, architecture and latent size."""
    figures = [c for c in frame.columns if c not in ("data", "architecture", "latent", "seed")]
    grouped = frame.assign(data=frame["data"].str.replace(r"demo \d+", "demo", regex=True)).groupby(
        ["data", "architecture", "latent"])
    out = {}
    for col in figures:
        g = grouped[col]
        out[col] = g.mean().round(3).astype(str) + " (" + g.min().round(3).astype(str) + "–" + \
            g.max().round(3).astype(str) + ")"
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["demo", "collagen", "coffee", "fermentation"],
                    choices=("demo", "collagen", "coffee", "fermentation"))
    ap.add_argument("--architectures", nargs="+", default=list(ARCHITECTURES), choices=ARCHITECTURES)
    ap.add_argument("--latent-dims", type=int, nargs="+", default=[2, 5])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    ap.add_argument("--demo-seeds", type=int, nargs="+", default=[31, 32], help="demo generator seeds")
    ap.add_argument("--layout", type=int, default=8, help="demo scans per seed (a third abnormal)")
    ap.add_argument("--size", type=int, default=64, help="demo scan height and width")
    ap.add_argument("--epochs", type=epochs_arg, default="auto")
    ap.add_argument("--set", type=setting, nargs="+", default=[], metavar="NAME=VALUE",
                    help="estimator parameters for every run, a variant of the defaults (e.g. beta=0.5 "
                    "hidden_dims=512,256)")
    ap.add_argument("--unmixing-start", choices=("generic", "truth", "class-means"), default="generic",
                    help="unmixing's component spectra start from generic bands (the default); on the demo from "
                    "its true spectra (truth: does the model keep the truth once it has it?); on labelled real "
                    "sets from each class's mean training spectrum (class-means: reference spectra as a lab "
                    "would have them), at a latent size equal to the number of classes")
    ap.add_argument("--neighbourhood", type=int, default=3, help="spatial's k×k window, and the smoothing of every "
                    "architecture's score beside its raw score")
    args = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"command: python -m benchmarks.architectures {shlex.join(sys.argv[1:])}\ncommit: {commit}\n"
          f"machine: {machine()}\n", flush=True)
    frames = []
    if "demo" in args.datasets:
        frames.append(demo_runs(args))
    if "collagen" in args.datasets:
        real = fetch_real_spectra()
        if real is not None:
            y = real.pop("type").to_numpy()
            wn = np.array([float(c) for c in real.columns])
            order = np.argsort(wn)
            frames.append(real_runs("collagen", real.to_numpy(np.float32)[:, order], y, wn[order], args))
    if "coffee" in args.datasets:
        coffee = fetch_coffee()
        if coffee is not None:
            frames.append(real_runs("coffee", coffee[0], coffee[1], None, args))
    if "fermentation" in args.datasets:
        fermentation = fetch_fermentation()
        if fermentation is not None:
            frames.append(real_runs("fermentation", fermentation[0], None, fermentation[1], args))
    if frames:
        print("\nsummary: mean (min–max) over training seeds and demo seeds")
        print(summarise(pd.concat(frames, ignore_index=True)).to_string())


if __name__ == "__main__":
    main()

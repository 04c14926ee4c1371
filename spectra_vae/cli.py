"""Command line: `python -m spectra_vae {pipeline,train,sweep,export,convert,demo-data}` (also `spectra-vae`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .core.errors import DataError, TrainingError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spectra-vae", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    pl = sub.add_parser("pipeline", help="run the numbered notebooks in order with papermill")
    pl.add_argument("--data", default="", help="directory of .npy scans (default: the demo data)")
    pl.add_argument("--out", default="", help="run folder for executed notebooks, HTML, figures, model "
                    "(default: a new folder under reports/runs; reports/demo for the demo data)")
    pl.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="a notebook parameter, e.g. -p epochs 50 (repeatable)")
    pl.add_argument("--notebooks", default=None, help="folder of the notebooks (default: the repository's)")
    pl.add_argument("--no-html", action="store_true", help="skip the HTML copies")
    pl.add_argument("--kernel", default=None, help="Jupyter kernel to run the notebooks with (default: theirs)")
    pl.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    pl.add_argument("--quiet", action="store_true", help="no live cell progress and output")
    pl.add_argument("--recheck", action="store_true",
                    help="check every pixel for NaN/inf again instead of using the remembered result")

    tr = sub.add_parser("train", help="train a VAE without Jupyter")
    tr.add_argument("--data", default="", help="directory of .npy scans (default: the demo data)")
    tr.add_argument("--out", default="", help="run folder; checkpoints go to OUT/model/ (default: a new folder "
                    "under reports/runs)")
    tr.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    tr.add_argument("--resume", default="", metavar="RUN",
                    help="continue the run in RUN from its last checkpoint, on its recorded splits, to --epochs")
    tr.add_argument("--epochs", default=None, metavar="N|auto",
                    help="a whole number, or auto (the default): 50 epochs, more on small data so that the run "
                    "takes at least 3000 optimiser steps; with --resume the default is the run's plan")
    tr.add_argument("--latent-dim", type=int, default=2)
    tr.add_argument("--hidden-dims", default="221,110")
    tr.add_argument("--reconstruction", default="gaussian", choices=("gaussian", "mse", "mae", "bce"))
    tr.add_argument("--beta", type=float, default=1.0)
    tr.add_argument("--batch-size", type=int, default=512)
    tr.add_argument("--learning-rate", type=float, default=2e-3)
    tr.add_argument("--patience", type=int, default=10, help="0 turns early stopping off")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--device", default="auto")
    tr.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                    help="bf16: train under bfloat16 autocast (output layer and loss in float32)")
    tr.add_argument("--preprocess", default="",
                    help='a pipeline such as "cut(950,1800)|snv", or emsc on scans not corrected for scattering '
                         '(see spectra_vae.preprocessing)')
    tr.add_argument("--tissue-only", action="store_true",
                    help="train and validate on tissue pixels only (amide I above the background)")
    tr.add_argument("--tissue-threshold", default="auto", help='"auto", "none" (no mask) or a number (absorbance)')
    tr.add_argument("--checkpoint-minutes", type=float, default=30.0,
                    help="also write OUT/model/last.pt within an epoch at most this often (0: only at epoch ends)")
    tr.add_argument("--train-split", default="normal_train")
    tr.add_argument("--val-split", default="normal_val")
    tr.add_argument("--test-split", default="normal_test")
    tr.add_argument("--abnormal-split", default="abnormal",
                    help="split of abnormal scans, recorded for anomaly detection ('' for none)")
    tr.add_argument("--normal-labels", default="", help="label names that count as normal, comma-separated")
    tr.add_argument("--recheck", action="store_true",
                    help="check every pixel for NaN/inf again instead of using the remembered result")

    sw = sub.add_parser("sweep", help="train one run per combination of parameters and compare them")
    sw.add_argument("--data", default="", help="directory of .npy scans (default: the demo data)")
    sw.add_argument("--out", required=True, help="folder of the sweep: one run per combination, runs.csv, "
                    "06_compare_runs.ipynb")
    sw.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                    help="values to try, e.g. --grid latent_dim=2,5,10 (repeatable; ';' separates values "
                    "that hold commas: --grid 'hidden_dims=221,110;64,32')")
    sw.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="one value for every run, e.g. -p epochs 50 or -p hidden_dims 221,110")
    sw.add_argument("--kernel", default=None, help="Jupyter kernel to run the notebooks with")
    sw.add_argument("--overwrite", action="store_true", help="replace runs already in --out")
    sw.add_argument("--quiet", action="store_true", help="no live cell progress and output")

    ex = sub.add_parser("export", help="write a run's per-pixel maps as HDF5 and a table (Orange/Quasar, HyperSpy)")
    ex.add_argument("run", help="run folder")
    ex.add_argument("--out", required=True, help="output folder: maps.h5, pixels.csv, figures/")

    cv = sub.add_parser("convert", help="write any supported format as .npy scans + wavenumbers.npy")
    cv.add_argument("source", help="a file or directory (.npy, .csv, .mat, .h5, ENVI .hdr, Agilent .dat/.seq/.dmt)")
    cv.add_argument("destination", help="output directory")

    dd = sub.add_parser("demo-data", help="write demo scans")
    dd.add_argument("--out", required=True)
    dd.add_argument("--n-scans", type=int, default=6)
    dd.add_argument("--height", type=int, default=64)
    dd.add_argument("--width", type=int, default=64)
    dd.add_argument("--seed", type=int, default=0)
    dd.add_argument("--scatter", action="store_true",
                    help="the 'uncorrected' variant: the same scans plus scattering (path length, dispersion, Mie)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a refusal or failure is one `error:` line on stderr and exit status 1."""
    args = _parser().parse_args(argv)
    from .io.finite import RECHECK_ENV
    from .preprocess.tissue import parse_tissue_threshold
    from .workflow import notebooks as pipeline

    if getattr(args, "recheck", False):
        os.environ[RECHECK_ENV] = "1"  # inherited by the notebooks' kernels
    try:
        if args.command == "pipeline":
            # text as typed: each value is read as the type its notebook declares (`epochs: int = 30`)
            params = dict(args.parameter)
            if len(params) != len(args.parameter):
                twice = sorted({k for k, _ in args.parameter if [n for n, _ in args.parameter].count(k) > 1})
                raise DataError(f"parameter {twice[0]}: given more than once with -p")
            written = pipeline.run_pipeline(args.data, args.out, params, notebooks_dir=args.notebooks,
                                            html=not args.no_html, kernel_name=args.kernel,
                                            overwrite=args.overwrite, live=not args.quiet)
            print(f"done: {len(written)} files")
        elif args.command == "train" and args.resume:
            from .workflow import runs

            epochs = None if args.epochs is None else pipeline.check_epochs("epochs", args.epochs)
            vae, splits, final = runs.resume(args.resume, epochs=epochs)
            print(f"resumed {args.resume}: {len(vae.history)} epochs in all; model: {final}")
        elif args.command == "train":
            vae, splits, final = pipeline.train(
                args.data, args.out, latent_dim=args.latent_dim,
                epochs=pipeline.check_epochs("epochs", "auto" if args.epochs is None else args.epochs),
                hidden_dims=pipeline.parse_hidden_dims(args.hidden_dims), reconstruction=args.reconstruction,
                beta=args.beta, batch_size=args.batch_size, learning_rate=args.learning_rate,
                patience=args.patience or None, seed=args.seed, device=args.device, precision=args.precision,
                train_split=args.train_split, val_split=args.val_split, test_split=args.test_split,
                abnormal_split=args.abnormal_split, normal_labels=args.normal_labels,
                preprocess=args.preprocess, tissue_only=args.tissue_only,
                tissue_threshold=parse_tissue_threshold(args.tissue_threshold), overwrite=args.overwrite,
                checkpoint_minutes=args.checkpoint_minutes or None)
            from .model.train import dist_info
            from .views.analysis import compare_with_pca

            rank, world = dist_info()
            if world > 1:
                import torch

                torch.distributed.barrier()
                torch.distributed.destroy_process_group()
            if rank == 0:
                print(splits.how)
                print(f"trained {len(vae.history)} epochs (best {vae.best_epoch_}) in {world} process(es); "
                      f"model: {final}")
                print(compare_with_pca(vae, splits.train, splits.test).to_string())
        elif args.command == "sweep":
            from .workflow.sweep import parse_grid, run_sweep

            fixed = {k: pipeline.parse_value(v) for k, v in args.parameter}
            table = run_sweep(args.data, args.out, parse_grid(args.grid), fixed, kernel_name=args.kernel,
                              overwrite=args.overwrite, live=not args.quiet)
            print(table.to_string())
            print(f"table: {args.out}/runs.csv; comparison: {args.out}/06_compare_runs.ipynb")
        elif args.command == "export":
            from .workflow.export import export_run

            written = export_run(args.run, args.out)
            print(f"wrote {len(written)} files to {args.out}")
        elif args.command == "convert":
            from .io.convert import convert

            written = convert(args.source, args.destination)
            print(f"wrote {len(written)} files to {args.destination}")
        elif args.command == "demo-data":
            from .io.demo import make_demo_dataset

            path = make_demo_dataset(args.out, n_scans=args.n_scans, height=args.height, width=args.width,
                                     seed=args.seed, scatter=args.scatter)
            print(f"demo scans written to {path}")
    except (DataError, TrainingError, pipeline.PipelineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk, a folder that vanished, a permission refused while writing
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

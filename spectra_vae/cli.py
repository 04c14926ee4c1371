"""Command line: `python -m spectra_vae {pipeline,train,sweep,export,convert,demo-data}` (also `spectra-vae`).

Each subcommand is one function (`argparse`'s `set_defaults(func=...)`); `train`'s model options and
their help, and the notebook parameters `pipeline --help` lists, are written from the parameter
table (`spectra_vae.workflow.parameters`), so the command line, the notebooks and the estimator
cannot drift apart.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from .core.errors import DataError, TrainingError
from .core.logs import show_messages
from .core.params import Flag, Param
from .io.finite import RECHECK_ENV
from .workflow.parameters import ALL_PARAMETERS, NOTEBOOK_PARAMETERS, SPLIT_PARAMETERS
from .workflow.paths import DEMO, DEMO_DATA

logger = logging.getLogger("spectra_vae.cli")

DATA_HELP = f"folder of scans (default: {DEMO_DATA}, the embedded demo data, generated on first use)"
RECHECK_HELP = "check every pixel for NaN/inf again instead of using the remembered result"


def _notebook_parameters_help() -> str:
    """The -p names a pipeline takes, one line each, from the parameter table."""
    lines = ["notebook parameters (-p NAME VALUE; each notebook takes those it declares):"]
    for p in ALL_PARAMETERS.values():
        if p.name in ("data_dir", "run_dir", "verbose"):
            continue
        lines.append(f"  {p.name:<20} {p.describe()}")
    return "\n".join(lines)


def _add_table_option(parser: argparse.ArgumentParser, p: Param) -> None:
    """One option of `train` from its table entry: a switch for a parameter that is off by default, else
    a value as typed, checked by the table's constraint."""
    if isinstance(p.constraint, Flag) and p.default is False:
        parser.add_argument(p.flag, dest=p.name, action="store_const", const=True, default=None, help=p.help)
    else:
        parser.add_argument(p.flag, dest=p.name, default=None, metavar=p.name.upper(), help=p.describe())


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spectra-vae", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    pl = sub.add_parser("pipeline", help="run the numbered notebooks in order with papermill",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_notebook_parameters_help())
    pl.add_argument("--data", default=DEMO_DATA, help=DATA_HELP)
    pl.add_argument("--out", default="", help="run folder for executed notebooks, HTML, figures, model "
                    "(default: a new folder under reports/runs; reports/demo for the demo data)")
    pl.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="a notebook parameter, e.g. -p epochs 50 (repeatable; the names are listed below)")
    pl.add_argument("--notebooks", default=None, help="folder of the notebooks (default: the repository's)")
    pl.add_argument("--no-html", action="store_true", help="skip the HTML copies")
    pl.add_argument("--kernel", default=None, help="Jupyter kernel to run the notebooks with (default: theirs)")
    pl.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    pl.add_argument("--quiet", action="store_true", help="no live cell progress and output")
    pl.add_argument("--recheck", action="store_true", help=RECHECK_HELP)
    pl.set_defaults(func=_pipeline)

    tr = sub.add_parser("train", help="train a VAE without Jupyter")
    tr.add_argument("--data", default=DEMO_DATA, help=DATA_HELP)
    tr.add_argument("--out", default="", help="run folder; checkpoints go to OUT/model/ (default: a new folder "
                    "under reports/runs)")
    tr.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    tr.add_argument("--resume", default="", metavar="RUN",
                    help="continue the run in RUN from its last checkpoint, on its recorded splits, to --epochs "
                    "(default: the run's plan)")
    table = [p for p in ALL_PARAMETERS.values()
             if p.cli and p.name not in NOTEBOOK_PARAMETERS
             or p.name in (*SPLIT_PARAMETERS, "normal_labels", "component_start")]
    for param in table:
        _add_table_option(tr, param)
    tr.add_argument("--recheck", action="store_true", help=RECHECK_HELP)
    tr.set_defaults(func=_train, table=[p.name for p in table])

    sw = sub.add_parser("sweep", help="train one run per combination of parameters and compare them")
    sw.add_argument("--data", default=DEMO_DATA, help=DATA_HELP)
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
    sw.set_defaults(func=_sweep)

    ex = sub.add_parser("export", help="write a run's per-pixel maps as HDF5 and a table (Orange/Quasar, HyperSpy)")
    ex.add_argument("run", help="run folder")
    ex.add_argument("--out", required=True, help="output folder: maps.h5, pixels.csv, figures/")
    ex.set_defaults(func=_export)

    cv = sub.add_parser("convert", help="write any supported format as .npy scans + wavenumbers.npy")
    cv.add_argument("source", help="a file or directory (.npy, .csv, .mat, .h5, ENVI .hdr, Agilent .dat/.seq/.dmt)")
    cv.add_argument("destination", help="output directory")
    cv.set_defaults(func=_convert)

    dd = sub.add_parser("demo-data", help="write demo scans")
    dd.add_argument("--out", required=True, help="output folder")
    dd.add_argument("--n-scans", type=int, default=DEMO["n_scans"], help="number of scans")
    dd.add_argument("--height", type=int, default=DEMO["height"], help="pixels per column")
    dd.add_argument("--width", type=int, default=DEMO["width"], help="pixels per row")
    dd.add_argument("--seed", type=int, default=DEMO["seed"], help="random seed: the same seed, the same scans")
    dd.add_argument("--scatter", action="store_true",
                    help="the 'uncorrected' variant: the same scans plus scattering (path length, dispersion, Mie)")
    dd.set_defaults(func=_demo_data)
    return p


def _once(pairs: list[list[str]]) -> dict[str, str]:
    """-p NAME VALUE pairs as a dict; a name given twice is an error."""
    params = dict(pairs)
    if len(params) != len(pairs):
        names = [n for n, _ in pairs]
        twice = sorted({k for k in names if names.count(k) > 1})
        raise DataError(f"parameter {twice[0]}: given more than once with -p")
    return params


def _pipeline(args: argparse.Namespace) -> None:
    from .workflow.notebooks import run_pipeline

    # text as typed: each value is read as the type its notebook declares (`epochs: str = "auto"`)
    written = run_pipeline(args.data, args.out, _once(args.parameter), notebooks_dir=args.notebooks,
                           html=not args.no_html, kernel_name=args.kernel, overwrite=args.overwrite,
                           live=not args.quiet)
    print(f"done: {len(written)} files")


def _train(args: argparse.Namespace) -> None:
    from .workflow import runs

    given = {name: getattr(args, name) for name in args.table if getattr(args, name) is not None}
    checked = {name: ALL_PARAMETERS[name].check(value, text=True) for name, value in given.items()}
    if args.resume:
        vae, splits, final = runs.resume(args.resume, epochs=checked.get("epochs"))
        print(f"resumed {args.resume}: {len(vae.history)} epochs in all; model: {final}")
        return
    if checked.get("patience") == 0:
        checked["patience"] = None
    if checked.get("checkpoint_minutes") == 0:
        checked["checkpoint_minutes"] = None
    vae, splits, final = runs.train(args.data, args.out, overwrite=args.overwrite, **checked)
    from .core.distributed import dist_info
    from .views.analysis import compare_with_pca

    rank, world = dist_info()
    if world > 1:
        import torch

        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    if rank == 0:
        print(splits.how)
        print(f"trained {len(vae.history)} epochs (best {vae.best_epoch_}) in {world} process(es); model: {final}")
        print(compare_with_pca(vae, splits.train, splits.test).to_string())


def _sweep(args: argparse.Namespace) -> None:
    from .workflow.sweep import parse_grid, run_sweep

    table = run_sweep(args.data, args.out, parse_grid(args.grid), _once(args.parameter), kernel_name=args.kernel,
                      overwrite=args.overwrite, live=not args.quiet)
    print(table.to_string())
    print(f"table: {args.out}/runs.csv; comparison: {args.out}/06_compare_runs.ipynb")


def _export(args: argparse.Namespace) -> None:
    from .workflow.export import export_run

    written = export_run(args.run, args.out)
    print(f"wrote {len(written)} files to {args.out}")


def _convert(args: argparse.Namespace) -> None:
    from .io.convert import convert

    written = convert(args.source, args.destination)
    print(f"wrote {len(written)} files to {args.destination}")


def _demo_data(args: argparse.Namespace) -> None:
    from .io.demo import make_demo_dataset

    path = make_demo_dataset(args.out, n_scans=args.n_scans, height=args.height, width=args.width, seed=args.seed,
                             scatter=args.scatter)
    print(f"demo scans written to {path}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a refusal or failure is one `error:` line on stderr and exit status 1."""
    args = _parser().parse_args(argv)
    from .workflow.notebooks import PipelineError

    show_messages()
    if getattr(args, "recheck", False):
        os.environ[RECHECK_ENV] = "1"  # inherited by the notebooks' kernels
    func: Any = args.func
    try:
        func(args)
    except (DataError, TrainingError, PipelineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk, a folder that vanished, a permission refused while writing
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

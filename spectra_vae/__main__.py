"""Command line: `python -m spectra_vae {pipeline,train,demo-data}` (also `spectra-vae`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .errors import DataError, TrainingError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spectra-vae", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    pl = sub.add_parser("pipeline", help="run the numbered notebooks in order with papermill")
    pl.add_argument("--data", default="", help="directory of .npy scans (default: the demo data)")
    pl.add_argument("--out", default="reports/run", help="report folder for executed notebooks, HTML, figures, model")
    pl.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="a notebook parameter, e.g. -p epochs 50 (repeatable)")
    pl.add_argument("--notebooks", default=None, help="folder of the notebooks (default: the repository's)")
    pl.add_argument("--no-html", action="store_true", help="skip the HTML copies")

    tr = sub.add_parser("train", help="train a VAE without Jupyter")
    tr.add_argument("--data", default="", help="directory of .npy scans (default: the demo data)")
    tr.add_argument("--out", required=True, help="run folder; checkpoints go to OUT/model/")
    tr.add_argument("--epochs", type=int, default=50)
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
                    help='a pipeline such as "cut(950,1800)|snv" (see spectra_vae.preprocessing)')
    tr.add_argument("--tissue-only", action="store_true",
                    help="train and validate on tissue pixels only (amide I above the background)")
    tr.add_argument("--checkpoint-minutes", type=float, default=30.0,
                    help="also write OUT/model/last.pt within an epoch at most this often (0: only at epoch ends)")
    tr.add_argument("--resume", action="store_true",
                    help="go on from OUT/model/last.pt when it exists (e.g. a requeued batch job)")
    tr.add_argument("--train-split", default="normal_train")
    tr.add_argument("--val-split", default="normal_val")
    tr.add_argument("--test-split", default="normal_test")

    cv = sub.add_parser("convert", help="write any supported format as .npy scans + wavenumbers.npy")
    cv.add_argument("source", help="a file or directory (.npy, .csv, .mat, .h5, ENVI .hdr, Agilent .dat/.seq/.dmt)")
    cv.add_argument("destination", help="output directory")

    dd = sub.add_parser("demo-data", help="write demo scans")
    dd.add_argument("--out", required=True)
    dd.add_argument("--n-scans", type=int, default=6)
    dd.add_argument("--height", type=int, default=64)
    dd.add_argument("--width", type=int, default=64)
    dd.add_argument("--seed", type=int, default=0)
    dd.add_argument("--scatter", action="store_true", help="add scattering baselines ('uncorrected')")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from . import pipeline

    try:
        if args.command == "pipeline":
            params = {k: pipeline.parse_value(v) for k, v in args.parameter}
            written = pipeline.run_pipeline(args.data, args.out, params, notebooks_dir=args.notebooks,
                                            html=not args.no_html)
            print(f"done: {len(written)} files in {args.out}")
        elif args.command == "train":
            vae, splits, final = pipeline.train(
                args.data, args.out, epochs=args.epochs, latent_dim=args.latent_dim,
                hidden_dims=pipeline.parse_hidden_dims(args.hidden_dims), reconstruction=args.reconstruction,
                beta=args.beta, batch_size=args.batch_size, learning_rate=args.learning_rate,
                patience=args.patience or None, seed=args.seed, device=args.device, precision=args.precision,
                train_split=args.train_split, val_split=args.val_split, test_split=args.test_split,
                preprocess=args.preprocess, tissue_only=args.tissue_only,
                checkpoint_minutes=args.checkpoint_minutes or None, resume=args.resume)
            from .analysis import compare_with_pca
            from .train import dist_info

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
        elif args.command == "convert":
            from .formats import convert

            written = convert(args.source, args.destination)
            print(f"wrote {len(written)} files to {args.destination}")
        elif args.command == "demo-data":
            from .demo import make_demo_dataset

            path = make_demo_dataset(args.out, n_scans=args.n_scans, height=args.height, width=args.width,
                                     seed=args.seed, scatter=args.scatter)
            print(f"demo scans written to {path}")
    except (DataError, TrainingError, pipeline.PipelineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

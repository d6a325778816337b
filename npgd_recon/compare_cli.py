"""``npgd-compare INPUT.h5 [...] --out DIR``: every method side by side on fully sampled data."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from bart_baselines.runner import BartError
from npgd_recon.compare import (
    DEFAULT_METHODS,
    CompareOptions,
    compare_file,
    write_report,
    write_tables,
)
from npgd_recon.inference import PRECISIONS
from npgd_recon.reconstruct import METHODS


def _methods(text: str) -> tuple[str, ...]:
    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise argparse.ArgumentTypeError(f"unknown methods {unknown}; choose from {METHODS}")
    return methods


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="npgd-compare", description=__doc__)
    parser.add_argument("inputs", type=Path, nargs="+", help="ISMRMRD files, fully sampled")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--undersample", type=float, default=5.0, metavar="R")
    parser.add_argument("--mask", choices=["vdrad", "poisson", "lines"], default="vdrad")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", type=_methods, default=DEFAULT_METHODS)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="network precision (auto: bf16 where the hardware has it natively)")
    parser.add_argument("--npgd-weights")
    parser.add_argument("--resnet-weights")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    options = CompareOptions(args.undersample, args.mask, args.seed, args.methods, args.device,
                             precision=args.precision, npgd_weights=args.npgd_weights,
                             resnet_weights=args.resnet_weights, progress=not args.quiet)
    try:
        if args.out.exists() and any(args.out.iterdir()) and not args.force:
            raise FileExistsError(f"--out {args.out} exists and is not empty (use --force)")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{args.out.name}.", dir=args.out.parent))
        try:
            records, shapes = [], []
            for path in args.inputs:
                file_records, shape = compare_file(path, staging, options)
                records += file_records
                shapes.append(shape)
            markdown = write_tables(records, staging)
            write_report(records, staging, options, shapes[0])
            if args.out.exists():
                shutil.rmtree(args.out)
            staging.rename(args.out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except (ValueError, OSError, BartError) as error:
        print(f"npgd-compare: error: {error}", file=sys.stderr)
        return 2
    print(markdown)
    print(f"report: {args.out / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

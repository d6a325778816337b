"""``npgd-compare INPUT.h5 [...] --out DIR``: every method side by side on fully sampled data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from npgd_recon.cli._common import Parser, add_mask_options, add_model_options, run
from npgd_recon.recon.methods import METHODS

PROG = "npgd-compare"


def _methods(text: str) -> tuple[str, ...]:
    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise argparse.ArgumentTypeError(f"unknown methods {unknown}; choose from {METHODS}")
    return methods


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog=PROG, description=__doc__)
    parser.add_argument("inputs", type=Path, nargs="+", help="ISMRMRD files, fully sampled")
    parser.add_argument("--out", type=Path, required=True,
                        help="report folder to create: metrics.json/.csv, summary.md, "
                             "report.html and one PNG per volume")
    parser.add_argument("--undersample", type=float, default=5.0, metavar="R",
                        help="retrospective acceleration (default 5: 20%% of k-space)")
    add_mask_options(parser)
    parser.add_argument("--methods", type=_methods, default=METHODS,
                        metavar="M1,M2,...",
                        help=f"comma-separated methods among {', '.join(METHODS)} "
                             f"(default: all, in this order)")
    add_model_options(parser, weights=False, batch=False)
    parser.add_argument("--npgd-weights", help="model for npgd (default: the shipped one)")
    parser.add_argument("--resnet-weights", help="model for resnet (default: the shipped one)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    return run(PROG, lambda: _compare(args))


def _compare(args: argparse.Namespace) -> int:
    from npgd_recon.analysis.compare import CompareOptions, compare_file, write_report, write_tables
    from npgd_recon.io.atomic import atomic_output_dir

    options = CompareOptions(args.undersample, args.mask, args.seed, args.methods, args.device,
                             precision=args.precision, npgd_weights=args.npgd_weights,
                             resnet_weights=args.resnet_weights, progress=not args.quiet)
    with atomic_output_dir(args.out, args.force) as staging:
        records, planes = [], []
        for path in args.inputs:
            file_records, shape, is_3d = compare_file(path, staging, options)
            records += file_records
            planes.append((shape, is_3d))
        markdown = write_tables(records, staging)
        write_report(records, staging, options, *planes[0])
    print(markdown)
    print(f"report: {args.out / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

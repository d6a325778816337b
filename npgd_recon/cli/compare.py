"""``npgd-compare INPUT.h5 [...] --out DIR``: every method side by side on fully sampled data.

Metrics skip the slices whose fully sampled reference is empty (all zero up to rounding, such as
the air beyond the object in the outer planes of a 3-D volume): they have no SNR; the report and
metrics.json say how many were skipped and which."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bart_baselines.runner import available_cores
from bart_baselines.tuning import MAX_EXTENSIONS, expected_runs
from npgd_recon.cli._common import Parser, add_mask_options, add_model_options, run
from npgd_recon.core.choices import MAP_SETS
from npgd_recon.recon.methods import METHODS

PROG = "npgd-compare"


def _methods(text: str) -> tuple[str, ...]:
    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise argparse.ArgumentTypeError(f"unknown methods {unknown}; choose from {METHODS}")
    return methods


def _cs_lambda(text: str) -> float | dict[str, float]:
    """``L`` (every CS method) or ``METHOD=L,METHOD=L`` (per method)."""
    try:
        if "=" not in text:
            return float(text)
        pairs = [item.split("=") for item in text.split(",")]
        lams = {method.strip(): float(value) for method, value in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a number L nor METHOD=L,METHOD=L (e.g. cswv=1e-4,cstv=3e-3)"
        ) from None
    if len(lams) != len(pairs):
        raise argparse.ArgumentTypeError(f"a method is named twice in {text!r}")
    return lams


def _threads(text: str) -> int:
    try:
        threads = int(text)
    except ValueError:
        threads = 0
    if threads < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return threads


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog=PROG, description=__doc__)
    parser.add_argument("inputs", type=Path, nargs="+", help="ISMRMRD files, fully sampled")
    parser.add_argument("--out", type=Path, required=True,
                        help="report folder to create: metrics.json/.csv, summary.md, "
                             "report.html, one PNG per volume and one per slice in slices/")
    parser.add_argument("--undersample", type=float, default=5.0, metavar="R",
                        help="retrospective acceleration (default 5: 20%% of k-space)")
    add_mask_options(parser)
    parser.add_argument("--methods", type=_methods, default=METHODS,
                        metavar="M1,M2,...",
                        help=f"comma-separated methods among {', '.join(METHODS)} "
                             f"(default: all, in this order)")
    add_model_options(parser, weights=False, batch=False)
    parser.add_argument("--npgd-weights", help="model for npgd (default: the shipped one for "
                        "the device and each case's matrix)")
    parser.add_argument("--resnet-weights", help="model for resnet (default: the shipped one)")
    runs = expected_runs()
    parser.add_argument("--cs-lambda", type=_cs_lambda, metavar="L|METHOD=L,...",
                        help="fixed CS weight in normalised units: one value for both CS "
                             "methods (e.g. 1e-3) or one per method (cswv=1e-4,cstv=3e-3); "
                             "a method given one is not tuned")
    parser.add_argument("--cs-tuning", choices=("truth", "auto"), default="truth",
                        help="how CS methods without --cs-lambda get theirs. truth (default): "
                             "the best SNR against the fully sampled reference, a search of "
                             f"about {runs} BART runs per CS method (up to "
                             f"{runs + MAX_EXTENSIONS}), each a 300-iteration CS reconstruction "
                             "of 3 slices: often longer than the comparison itself (8 coils, "
                             "128x128, 2 shared cores: 98 s for CS-WV, 62 s for CS-TV; over 20 "
                             "minutes on larger files under load). auto: the data-driven lambda "
                             "of npgd-recon, no extra BART runs")
    parser.add_argument("--map-sets", type=int, choices=(1, 2), default=MAP_SETS,
                        help=f"sets of ESPIRiT coil maps every method gets (default {MAP_SETS}); "
                             "2 is soft SENSE, as npgd-recon --map-sets 2 (the reference keeps "
                             "one set)")
    parser.add_argument("--threads", type=_threads, metavar="N",
                        help="OpenMP threads of every BART call (coil maps, CS, tuning; "
                             "default: $NPGD_THREADS, else the cores this process may use, "
                             f"{available_cores()} here)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    return run(PROG, lambda: _compare(args))


def _compare(args: argparse.Namespace) -> int:
    from bart_baselines.runner import set_default_threads
    from npgd_recon.analysis.compare import CompareOptions, compare_file, write_report, write_tables
    from npgd_recon.io.atomic import atomic_output_dir

    set_default_threads(args.threads)
    options = CompareOptions(args.undersample, args.mask, args.seed, args.methods, args.device,
                             precision=args.precision, npgd_weights=args.npgd_weights,
                             resnet_weights=args.resnet_weights, progress=not args.quiet,
                             cs_lambda=args.cs_lambda, tune_cs=args.cs_tuning == "truth",
                             map_sets=args.map_sets, map_error=args.map_error)
    with atomic_output_dir(args.out, args.force) as staging:
        cases, planes = [], []
        for path in args.inputs:
            file_cases, shape, is_3d = compare_file(path, staging, options)
            cases += file_cases
            planes.append((shape, is_3d))
        markdown = write_tables(cases, staging)
        write_report(cases, staging, options, *planes[0])
    print(markdown)
    print(f"report: {args.out / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

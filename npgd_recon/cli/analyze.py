"""``npgd-analyze``: the paper's analysis (section 4, 5.3, Remark 1) as sub-commands.

    npgd-analyze contraction full.h5 --undersample 5 --out DIR [--weights W] [--seeds 0 1 2]
    npgd-analyze superres --out DIR [--weights npgd-sr-faces] [--images FOLDER]
    npgd-analyze debias --out DIR [--weights W ...] [--volume ch2.nii.gz] [--undersample 5]

Each writes ``DIR/<command>.json`` and its PNGs into a temporary folder renamed to ``DIR`` at the
end, so a failure leaves nothing behind; bad input is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from npgd_recon.cli._common import DEVICES, Parser, run
from npgd_recon.core.errors import NpgdError
from npgd_recon.models.registry import CPU_DEFAULT, RESNET_CPU, SHARED_DEFAULT, SR_DEFAULT
from sampling import GENERATORS

PROG = "npgd-analyze"
CH2 = "/usr/share/mricron/templates/ch2.nii.gz"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    c = commands.add_parser("contraction", help="nRMSE, eta1, eta2 per iteration on MRI data")
    c.add_argument("inputs", nargs="+", type=Path, help="fully sampled ISMRMRD .h5 file(s)")
    c.add_argument("--undersample", type=float, required=True, metavar="R",
                   help="retrospective acceleration R")
    c.add_argument("--seeds", type=int, nargs="+", default=[0], help="mask seeds")
    c.add_argument("--problems", type=int, default=8, help="2-D problems per volume")
    c.add_argument("--weights", default=SHARED_DEFAULT,
                   help=f"shipped model name or file with one shared proximal (default "
                        f"{SHARED_DEFAULT}: the analysis needs one fixed point)")
    c.add_argument("--group", default="dataset", help="HDF5 group (default: dataset)")

    s = commands.add_parser("superres", help="the super-resolution experiment (Fig. 4, 5)")
    s.add_argument("--weights", default=SR_DEFAULT, help="super-resolution model")
    s.add_argument("--images", type=Path, help="image folder (its test split: every 5th file)")
    s.add_argument("--count", type=int, default=20, help="held-out images to analyse")

    d = commands.add_parser("debias", help="SNR / SSIM with and without de-biasing")
    d.add_argument("--weights", nargs="+", default=[CPU_DEFAULT, RESNET_CPU],
                   help=f"models to de-bias (default {CPU_DEFAULT} {RESNET_CPU})")
    d.add_argument("--volume", default=CH2, help="held-out NIfTI volume (default Colin27)")
    d.add_argument("--undersample", type=float, default=5.0, metavar="R",
                   help="retrospective acceleration R (default 5)")
    d.add_argument("--slices", type=int, default=12, help="held-out slices (default 12)")
    d.add_argument("--noise", type=float, default=0.01, help="k-space noise, fraction of peak")
    d.add_argument("--iterations", type=int, nargs="+", default=[1, 5, 20],
                   help="de-biasing iteration counts to compare with none")

    c.add_argument("--mask", choices=sorted(GENERATORS), default="vdrad",
                   help="mask family (default vdrad)")
    for sub in (c, s, d):
        sub.add_argument("--device", choices=DEVICES, default="auto",
                         help="where the network runs (auto: CUDA when present, else CPU)")
        sub.add_argument("--out", type=Path, required=True, help="folder to create")
        sub.add_argument("--force", action="store_true", help="replace an existing --out")
    return parser


def _run(args: argparse.Namespace, out: Path) -> dict:
    from npgd_recon.analysis.experiments import run_contraction, run_debias, run_superres

    if args.command == "contraction":
        if args.problems < 1:
            raise NpgdError(f"--problems must be at least 1, got {args.problems}")
        return run_contraction(args.inputs, out, weights=args.weights, accel=args.undersample,
                               seeds=args.seeds, mask_kind=args.mask, count=args.problems,
                               group=args.group, device=args.device)
    if args.command == "superres":
        if args.count < 1:
            raise NpgdError(f"--count must be at least 1, got {args.count}")
        return run_superres(out, weights=args.weights, images=args.images, count=args.count,
                            device=args.device)
    if any(k < 1 for k in args.iterations) or args.slices < 1:
        raise NpgdError("--iterations and --slices must be at least 1")
    return run_debias(out, weights=args.weights, volume=args.volume, accel=args.undersample,
                      slices=args.slices, noise=args.noise, iterations=tuple(args.iterations),
                      device=args.device)


def _headline(command: str, result: dict) -> str:
    if command == "debias":
        return "; ".join(f"{r['model']} debias {r['debias_iterations']}: {r['snr_db']:.2f} dB, "
                         f"SSIM {r['ssim']:.4f}" for r in result["results"])
    return (f"{result['problems']} problems | nRMSE {result['nrmse'][0]:.3f} -> "
            f"{result['nrmse'][-1]:.3f} | max mean eta1+eta2 {result['eta_sum_max']:.3f}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(PROG, lambda: _analyze(args))


def _analyze(args: argparse.Namespace) -> int:
    from npgd_recon.io.atomic import atomic_output_dir

    with atomic_output_dir(args.out, args.force) as staging:
        result = _run(args, staging)
        (staging / f"{args.command}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"{args.command} -> {args.out}/{args.command}.json | {_headline(args.command, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
import shutil
import sys
import tempfile
from pathlib import Path

from bart_baselines.runner import BartError
from npgd_recon.analyze import SR_DEFAULT, run_contraction, run_debias, run_superres
from npgd_recon.checkpoint import CheckpointError
from npgd_recon.registry import CPU_DEFAULT, RESNET_CPU

CH2 = "/usr/share/mricron/templates/ch2.nii.gz"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="npgd-analyze", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    c = commands.add_parser("contraction", help="nRMSE, eta1, eta2 per iteration on MRI data")
    c.add_argument("inputs", nargs="+", type=Path, help="fully sampled ISMRMRD .h5 file(s)")
    c.add_argument("--undersample", type=float, required=True, metavar="R")
    c.add_argument("--mask", choices=["vdrad", "poisson", "lines"], default="vdrad")
    c.add_argument("--seeds", type=int, nargs="+", default=[0], help="mask seeds")
    c.add_argument("--problems", type=int, default=8, help="2-D problems per volume")
    c.add_argument("--weights", default=CPU_DEFAULT, help="shipped model name or file")
    c.add_argument("--group", default="dataset", help="HDF5 group (default: dataset)")

    s = commands.add_parser("superres", help="the super-resolution experiment (Fig. 4, 5)")
    s.add_argument("--weights", default=SR_DEFAULT, help="super-resolution model")
    s.add_argument("--images", type=Path, help="image folder (its test split: every 5th file)")
    s.add_argument("--count", type=int, default=20, help="held-out images to analyse")

    d = commands.add_parser("debias", help="SNR / SSIM with and without de-biasing")
    d.add_argument("--weights", nargs="+", default=[CPU_DEFAULT, RESNET_CPU])
    d.add_argument("--volume", default=CH2, help="held-out NIfTI volume (default Colin27)")
    d.add_argument("--undersample", type=float, default=5.0, metavar="R")
    d.add_argument("--slices", type=int, default=12)
    d.add_argument("--noise", type=float, default=0.01, help="k-space noise, fraction of peak")
    d.add_argument("--iterations", type=int, nargs="+", default=[1, 5, 20],
                   help="de-biasing iteration counts to compare with none")

    for sub in (c, s, d):
        sub.add_argument("--out", type=Path, required=True, help="folder to create")
        sub.add_argument("--force", action="store_true", help="replace an existing --out")
    return parser


def _run(args: argparse.Namespace, out: Path) -> dict:
    if args.command == "contraction":
        if args.problems < 1:
            raise ValueError(f"--problems must be at least 1, got {args.problems}")
        return run_contraction(args.inputs, out, weights=args.weights, accel=args.undersample,
                               seeds=args.seeds, mask_kind=args.mask, count=args.problems,
                               group=args.group)
    if args.command == "superres":
        if args.count < 1:
            raise ValueError(f"--count must be at least 1, got {args.count}")
        return run_superres(out, weights=args.weights, images=args.images, count=args.count)
    if any(k < 1 for k in args.iterations) or args.slices < 1:
        raise ValueError("--iterations and --slices must be at least 1")
    return run_debias(out, weights=args.weights, volume=args.volume, accel=args.undersample,
                      slices=args.slices, noise=args.noise, iterations=tuple(args.iterations))


def _headline(command: str, result: dict) -> str:
    if command == "debias":
        return "; ".join(f"{r['model']} debias {r['debias_iterations']}: {r['snr_db']:.2f} dB, "
                         f"SSIM {r['ssim']:.4f}" for r in result["results"])
    return (f"{result['problems']} problems | nRMSE {result['nrmse'][0]:.3f} -> "
            f"{result['nrmse'][-1]:.3f} | max mean eta1+eta2 {result['eta_sum_max']:.3f}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out: Path = args.out
    tmp, new_parent = None, not out.parent.exists()
    try:
        if out.exists() and not args.force:
            raise FileExistsError(f"--out {out} exists (use --force)")
        out.parent.mkdir(exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        result = _run(args, tmp)
        (tmp / f"{args.command}.json").write_text(json.dumps(result, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
        tmp = None
    except (ValueError, OSError, BartError, CheckpointError) as error:
        print(f"npgd-analyze: error: {error}", file=sys.stderr)
        return 2
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            if new_parent:
                out.parent.rmdir()
    print(f"{args.command} -> {out}/{args.command}.json | {_headline(args.command, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

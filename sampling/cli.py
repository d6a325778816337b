"""``npgd-mask``: write a sampling pattern as .npy, BART .cfl/.hdr and a PNG picture."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sampling import GENERATORS, make_mask
from sampling.export import save_cfl, save_npy, save_png


def _shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must look like 200x100, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="npgd-mask",
        description="Generate a Cartesian undersampling mask (phase-encode plane).",
    )
    parser.add_argument("out", type=Path,
                        help="output base name; writes OUT.npy, OUT.cfl/.hdr, OUT.png")
    parser.add_argument("--shape", type=_shape, default=(200, 100), help="NYxNZ (default 200x100)")
    parser.add_argument("--accel", type=float, default=5.0,
                        help="acceleration R (rate 1/R; default 5)")
    parser.add_argument("--kind", choices=sorted(GENERATORS), default="vdrad",
                        help="pattern family (default vdrad)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--calib", type=_shape, default=None,
                        help="calibration box CYxCZ; lines uses CY, the fully sampled rows "
                             "(a single number CY is enough there)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = {"seed": args.seed}
    if args.calib is not None:
        options["calib"] = args.calib
    try:
        pattern = make_mask(args.kind, args.shape, args.accel, **options)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        base = args.out.with_suffix("") if args.out.suffix in (".npy", ".cfl", ".png") else args.out
        save_npy(pattern, base.with_name(base.name + ".npy"))
        save_cfl(pattern, base)
        save_png(pattern, base.with_name(base.name + ".png"))
    except (ValueError, OSError) as error:
        print(f"npgd-mask: error: {error}", file=sys.stderr)
        return 2
    print(f"{pattern.kind} {args.shape[0]}x{args.shape[1]} R={args.accel:g}: "
          f"{int(pattern.mask.sum())} samples, rate {pattern.rate:.4%} -> {base}.npy/.cfl/.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``npgd-recon input.h5 --out series/``: ISMRMRD raw data to a DICOM series."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bart_baselines.runner import BartError
from npgd_recon.debias import DEFAULT_ITERATIONS
from npgd_recon.inference import PRECISIONS
from npgd_recon.ismrmrd_reader import read_raw
from npgd_recon.pipeline import reconstruct_study, write_outputs
from npgd_recon.reconstruct import METHODS, make_reconstructor


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="npgd-recon",
        description="Reconstruct ISMRMRD raw data with NPGD (or a baseline) into a DICOM series.")
    parser.add_argument("input", type=Path, help="ISMRMRD / MRD HDF5 raw data")
    parser.add_argument("--out", type=Path, required=True, help="DICOM series folder to create")
    parser.add_argument("--group", default="dataset", help="HDF5 group (default: dataset)")
    parser.add_argument("--method", choices=METHODS, default="npgd")
    parser.add_argument("--weights", help="shipped model name or .safetensors file")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--batch", type=int, default=8, help="slices per network batch")
    parser.add_argument("--debias", action="store_true",
                        help="de-bias the network output (paper Remark 1: masks frozen, "
                             "proximal replaced by its linear map, iterated again)")
    parser.add_argument("--debias-iterations", type=int, default=DEFAULT_ITERATIONS,
                        metavar="N", help=f"at most N de-biasing iterations "
                                          f"(default {DEFAULT_ITERATIONS})")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="network precision (auto: bf16 where the hardware has it natively)")
    parser.add_argument("--undersample", type=float, metavar="R",
                        help="retrospectively undersample fully sampled data by R")
    parser.add_argument("--mask", choices=["vdrad", "poisson", "lines"], default="vdrad",
                        help="mask family for --undersample (default vdrad)")
    parser.add_argument("--seed", type=int, default=0, help="mask seed for --undersample")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--png", action="store_true", help="also write a preview picture OUT.png")
    parser.add_argument("--also-ismrmrd", type=Path, metavar="OUT.h5",
                        help="also write the images as ISMRMRD")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.out.exists() and any(args.out.iterdir()) and not args.force:
            raise FileExistsError(f"--out {args.out} exists and is not empty (use --force)")
        recon = make_reconstructor(args.method, args.weights, args.device, args.batch,
                                   precision=args.precision,
                                   debias=args.debias_iterations if args.debias else 0)
        study = read_raw(args.input, args.group)
        result = reconstruct_study(study, recon, accel=args.undersample, mask_kind=args.mask,
                                   seed=args.seed, progress=not args.quiet)
        files = write_outputs(result, study, recon, args.out, force=args.force, png=args.png,
                              also_ismrmrd=args.also_ismrmrd)
    except (ValueError, OSError, BartError) as error:
        print(f"npgd-recon: error: {error}", file=sys.stderr)
        return 2
    model = f", model {recon.model_name} ({recon.precision})" if recon.model_name else ""
    print(f"{len(files)} images written to {args.out} | method {recon.method}{model} | "
          f"device {recon.device.type} | {result.seconds:.2f} s reconstruction")
    return 0


if __name__ == "__main__":
    sys.exit(main())

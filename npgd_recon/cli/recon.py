"""``npgd-recon input.h5 --out series/``: ISMRMRD raw data to a DICOM series."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from npgd_recon.cli._common import Parser, add_mask_options, add_model_options, run
from npgd_recon.core.choices import DEFAULT_DEBIAS_ITERATIONS as DEFAULT_ITERATIONS
from npgd_recon.core.choices import MAP_SETS, VIRTUAL_COILS
from npgd_recon.core.errors import NpgdError
from npgd_recon.recon.methods import METHODS

if TYPE_CHECKING:
    from npgd_recon.recon.base import Reconstructor

PROG = "npgd-recon"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Reconstruct ISMRMRD raw data with NPGD (or a baseline) into a DICOM series.")
    parser.add_argument("input", type=Path, help="ISMRMRD / MRD HDF5 raw data")
    parser.add_argument("--out", type=Path, required=True, help="DICOM series folder to create")
    parser.add_argument("--group", default="dataset", help="HDF5 group (default: dataset)")
    parser.add_argument("--method", choices=METHODS, default="npgd",
                        help="reconstruction method (default npgd)")
    add_model_options(parser)
    parser.add_argument("--cs-lambda", type=float, metavar="LAMBDA",
                        help="CS regularisation weight for cswv / cstv in normalised units "
                             "(default: chosen from the data's noise level)")
    parser.add_argument("--debias", action="store_true",
                        help="de-bias the network output (paper Remark 1: masks frozen, "
                             "proximal replaced by its linear map, iterated again)")
    parser.add_argument("--debias-iterations", type=int, default=DEFAULT_ITERATIONS,
                        metavar="N", help=f"at most N de-biasing iterations "
                                          f"(default {DEFAULT_ITERATIONS})")
    parser.add_argument("--undersample", type=float, metavar="R",
                        help="retrospectively undersample fully sampled data by R "
                             "(default: reconstruct the data as acquired)")
    add_mask_options(parser)
    parser.add_argument("--virtual-coils", type=int, default=VIRTUAL_COILS, metavar="N",
                        help=f"compress more than N coils to N virtual coils before the coil "
                             f"maps (default {VIRTUAL_COILS}; 0 keeps every coil)")
    parser.add_argument("--map-sets", type=int, choices=(1, 2), default=MAP_SETS,
                        help=f"sets of ESPIRiT coil maps per 2-D slice (default {MAP_SETS}); 2 is "
                             "soft SENSE, for objects that fill or overfill the field of view: "
                             "every method solves for an image per set and writes the first")
    parser.add_argument("--force", action="store_true", help="replace existing outputs")
    parser.add_argument("--png", action="store_true", help="also write a preview picture OUT.png")
    parser.add_argument("--also-ismrmrd", type=Path, metavar="OUT.h5",
                        help="also write the images as ISMRMRD")
    parser.add_argument("--series-number", type=int, metavar="N",
                        help="DICOM SeriesNumber (default: the method's place in "
                             f"{', '.join(METHODS)}, 1 to {len(METHODS)}, plus 100 x the raw "
                             "data's initialSeriesNumber when its header has one)")
    parser.add_argument("--series-description", metavar="TEXT",
                        help="DICOM SeriesDescription, at most 64 characters (default: method, "
                             "model, precision and R=acceleration with --undersample)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--timings", action="store_true",
                        help="print seconds per stage (read, coil maps, waiting for the model, "
                             "reconstruction, writing) on stderr and write them beside the "
                             "series as OUT.timings.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(PROG, lambda: _recon(args))


def _recon(args: argparse.Namespace) -> int:
    from npgd_recon.io.dicom_writer import LONG_STRING
    from npgd_recon.io.ismrmrd_file import read_raw
    from npgd_recon.recon.methods import make_reconstructor
    from npgd_recon.recon.pipeline import (
        PendingReconstructor,
        UndersamplingError,
        format_timings,
        plan_outputs,
        reconstruct_study,
        series_description,
        timed,
        write_outputs,
        write_timings,
    )

    if args.batch < 1:
        raise NpgdError(f"--batch must be at least 1, got {args.batch}")
    if args.virtual_coils < 0:
        raise NpgdError(f"--virtual-coils must be 0 (off) or more, got {args.virtual_coils}")
    if args.cs_lambda is not None and not args.cs_lambda > 0:
        raise NpgdError(f"--cs-lambda must be positive, got {args.cs_lambda:g}")
    if args.undersample is not None and not args.undersample > 1:
        raise NpgdError(f"--undersample must be above 1, got {args.undersample:g}")
    if args.series_number is not None and not 0 < args.series_number < 2**31:
        raise NpgdError(f"--series-number must be from 1 to {2**31 - 1}, got {args.series_number}")
    text = args.series_description
    if text is not None and (len(text) > LONG_STRING or "\\" in text or not text.isprintable()):
        raise NpgdError(f"--series-description must be at most {LONG_STRING} printable "
                        f"characters without a backslash, got {text!r}")
    outputs, staging = plan_outputs(args.out, force=args.force, png=args.png,
                                    also_ismrmrd=args.also_ismrmrd, timings=args.timings)
    stages: dict[str, float] = {}
    with outputs:
        with timed(stages, "read"):
            study = read_raw(args.input, args.group)
        plane = study.volumes[0].kspace.shape[-2:]  # the default model may depend on it
        if args.map_sets > 1 and study.is_3d and study.n_coils > 1 and not args.quiet:
            print(f"{PROG}: 3-D data: one set of coil maps per volume (--map-sets applies to "
                  f"2-D slices)", file=sys.stderr, flush=True)

        def build() -> Reconstructor:  # in the background: imports torch, loads the model
            from npgd_recon.recon.base import ReconOptions
            return make_reconstructor(args.method, ReconOptions(
                weights=args.weights, device=args.device, batch=args.batch, lam=args.cs_lambda,
                precision=args.precision, debias=args.debias_iterations if args.debias else 0,
                plane=plane, coils=study.n_coils,
                map_sets=1 if study.is_3d else args.map_sets, map_error=args.map_error))

        def announce(recon: Reconstructor) -> None:
            if recon.model_name and not args.quiet:
                print(f"{PROG}: {study.n_coils}-coil data, {plane[0]}x{plane[1]} planes: model "
                      f"{recon.model_name} ({recon.precision}) on {recon.device.type}",
                      file=sys.stderr, flush=True)

        # built while bart ecalib computes the coil maps (npgd_recon.recon.pipeline)
        pending = PendingReconstructor(args.method, build, announce)
        try:
            result = reconstruct_study(study, pending, accel=args.undersample,
                                       mask_kind=args.mask, seed=args.seed,
                                       progress=not args.quiet,
                                       virtual_coils=args.virtual_coils,
                                       map_sets=args.map_sets)
        except UndersamplingError as error:
            message = str(error).replace("accel", "R").replace("lower R or shrink calib",
                                                                "choose a lower R")
            raise NpgdError(f"--undersample {args.undersample:g}: {message}") from None
        stages.update(result.stages)
        recon = pending.result()
        with timed(stages, "writing"):
            files = write_outputs(
                result, study, recon, staging, series_number=args.series_number,
                description=text or series_description(recon, args.undersample))
        if args.timings:
            write_timings(staging["timings"], stages, study, recon, len(files))
    model = f", model {recon.model_name} ({recon.precision})" if recon.model_name else ""
    print(f"{len(files)} images written to {args.out} | method {recon.method}{model} | "
          f"device {recon.device.type} | {result.seconds:.2f} s reconstruction")
    if args.timings:
        print(f"{PROG}: seconds per stage\n{format_timings(stages)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

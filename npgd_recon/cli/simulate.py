"""``npgd-simulate``: write an ISMRMRD raw-data file from a phantom, a NIfTI volume or a .npy.

Sources are normalised to a peak magnitude of 1 (so ``--noise`` is relative to the peak);
NIfTI magnitudes get a smooth random phase. 2-D multi-slice scans undersample whole ky lines
(``--mask lines``); 3-D scans undersample the ky-kz plane (``vdrad`` by default, ``poisson``
or ``lines``) and write one readout per acquired ``(ky, kz)``. The summary line gives the
matrix in the order ``--matrix`` takes it (NYxNX, or NYxNZxNX for 3-D).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from npgd_recon.cli._common import Parser, run
from npgd_recon.core.errors import NpgdError
from npgd_recon.sim.coils import COIL_GEOMETRIES
from npgd_recon.sim.phantoms import shepp_logan
from npgd_recon.sim.volumes import Voxel, load_nifti, load_npy, peak_normalised, resample
from sampling import GENERATORS, make_mask, multicoil_calib

PROG = "npgd-simulate"


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"matrix must look like 128x96, got {text!r}") from None
    if len(sizes) not in (2, 3) or min(sizes) < 2:
        raise argparse.ArgumentTypeError(f"matrix must be NYxNX or NYxNZxNX, got {text!r}")
    return sizes


class _DefaultsHelp(argparse.HelpFormatter):
    """Help that shows every default: ``(default: X)`` after an option whose text does not say
    it already (flags, off by default, and required options have none)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = action.default in (None, argparse.SUPPRESS) or action.default is False
        if unset or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description=__doc__.splitlines()[0], formatter_class=_DefaultsHelp)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--phantom", choices=["shepp-logan"], help="a synthetic phantom")
    source.add_argument("--nifti", type=Path, help="a NIfTI magnitude volume (axial slices)")
    source.add_argument("--npy", type=Path, help="a .npy image [y, x] or stack [n, y, x]")
    parser.add_argument("--out", type=Path, required=True, help="output ISMRMRD .h5 file")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    parser.add_argument("--3d", dest="volumetric", action="store_true",
                        help="3-D scan (phase encodes along y and z) instead of 2-D slices")
    parser.add_argument("--matrix", type=_sizes,
                        help="NYxNX (2-D) or NYxNZxNX (3-D); default 128x128 / 64x32x64 for "
                             "the phantom, the source size otherwise (resampled if given)")
    parser.add_argument("--slices", default=None,
                        help="slice count N (phantom; central N of a file) or range A:B "
                             "(default: 1 for the phantom, every slice of a file)")
    parser.add_argument("--coils", type=int, default=1, help="receive coils")
    parser.add_argument("--coil-geometry", choices=COIL_GEOMETRIES, default="birdcage",
                        help="simulated array: a birdcage-like ring (default) or surface loops "
                             "on a cylinder (Biot-Savart)")
    parser.add_argument("--undersample", type=float, default=1.0, metavar="R",
                        help="acceleration R (default 1: fully sampled)")
    parser.add_argument("--mask", choices=sorted(GENERATORS), default=None,
                        help="undersampling pattern (default: lines for 2-D, vdrad for 3-D)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the mask, the noise and the NIfTI phase")
    parser.add_argument("--noise", type=float, default=0.0, metavar="SIGMA",
                        help="complex noise std per k-space sample (peak magnitude is 1)")
    parser.add_argument("--noise-readouts", type=int, default=32,
                        help="noise-calibration readouts written first (0: none)")
    parser.add_argument("--oversampling", type=int, default=2, help="readout oversampling")
    parser.add_argument("--echo-fraction", type=float, default=1.0,
                        help="fraction of each readout acquired (asymmetric echo below 1)")
    parser.add_argument("--voxel-size", type=float, default=None,
                        help="in-plane voxel of the written matrix in mm (default: a NIfTI's "
                             "own voxel, scaled by any --matrix resampling; else 1)")
    parser.add_argument("--slice-thickness", type=float, default=None,
                        help="slice (2-D) or partition (3-D) thickness in mm (default: a NIfTI's "
                             "own, scaled by resampling; else 3 for 2-D, the voxel for 3-D)")
    return parser


def _phantom(args) -> np.ndarray:
    if args.volumetric:
        ny, nz, nx = args.matrix or (64, 32, 64)
        return shepp_logan((nz, ny, nx))
    ny, nx = args.matrix or (128, 128)
    try:
        count = int(args.slices or 1)
    except ValueError:
        count = 0
    if count < 1:
        raise NpgdError("for the phantom, --slices is a slice count N >= 1")
    return shepp_logan((ny, nx))[None] if count == 1 else shepp_logan((count, ny, nx))


def _source(args) -> tuple[np.ndarray, Voxel | None]:
    """The object ``[slice|z, y, x]`` (peak magnitude 1) and its voxel in mm, if known."""
    if args.matrix is not None and len(args.matrix) != (3 if args.volumetric else 2):
        raise NpgdError("--matrix is NYxNX for 2-D slices and NYxNZxNX with --3d")
    if args.phantom:
        return peak_normalised(_phantom(args)), None
    if args.nifti is not None:
        stack, voxel = load_nifti(args.nifti, slices=args.slices, seed=args.seed)
    else:
        stack, voxel = load_npy(args.npy, slices=args.slices), None
    if args.matrix is not None:
        if args.volumetric:
            ny, nz, nx = args.matrix
            shape = (nz, ny, nx)
        else:
            shape = (stack.shape[0], *args.matrix)
        stack, voxel = resample(stack, shape, voxel)
    return peak_normalised(stack), voxel


def _voxels(args, voxel: Voxel | None) -> tuple[tuple[float, float], float]:
    """In-plane ``(dy, dx)`` and slice/partition thickness in mm: the options, else the
    source's (NIfTI), else 1 mm in-plane and 3 mm slices (2-D) or cubic voxels (3-D)."""
    if args.voxel_size is not None and args.voxel_size <= 0:
        raise NpgdError(f"--voxel-size must be positive, got {args.voxel_size:g}")
    dz, dy, dx = voxel or (None, 1.0, 1.0)
    if args.voxel_size is not None:
        dy = dx = args.voxel_size
    thickness = args.slice_thickness or dz or (dy if args.volumetric else 3.0)
    return (dy, dx), thickness


def _pattern(args, shape: tuple[int, int, int]):
    if args.undersample <= 1:
        return None
    kind = args.mask or ("vdrad" if args.volumetric else "lines")
    if not args.volumetric and kind != "lines":
        raise NpgdError("2-D multi-slice scans undersample whole ky lines: use --mask lines "
                         "(vdrad/poisson need --3d)")
    plane = (shape[1], shape[0]) if args.volumetric else (shape[1], shape[2])
    options = {"seed": args.seed}
    if args.coils > 1:  # enough calibration data for ESPIRiT maps
        options["calib"] = multicoil_calib(plane)
    return make_mask(kind, plane, args.undersample, **options)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(PROG, lambda: _simulate(args))


def _simulate(args: argparse.Namespace) -> int:
    from npgd_recon.io.atomic import Outputs
    from npgd_recon.sim.scan_writer import ScanSettings, write_scan

    image, voxel = _source(args)
    in_plane, thickness = _voxels(args, voxel)
    settings = ScanSettings(coils=args.coils, coil_geometry=args.coil_geometry,
                            noise=args.noise,
                            noise_readouts=args.noise_readouts, oversampling=args.oversampling,
                            echo_fraction=args.echo_fraction,
                            voxel_mm=in_plane,
                            slice_mm=thickness, seed=args.seed)
    pattern = _pattern(args, image.shape)
    with Outputs(args.force) as outputs:
        truth = write_scan(outputs.file(args.out), image, volumetric=args.volumetric,
                           pattern=pattern, settings=settings, keep_maps=False)
    count, ny, nx = image.shape
    matrix = f"3-D {ny}x{count}x{nx} (NYxNZxNX)" if args.volumetric \
        else f"{count}-slice 2-D {ny}x{nx} (NYxNX)"
    print(f"{matrix}, {args.coils} coil(s), {truth.mask.mean():.1%} of phase encodes acquired "
          f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

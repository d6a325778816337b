"""``npgd-convert meas.dat --out meas.h5``: a Siemens twix file as an ISMRMRD raw-data file.

The measurement (the last one of a multi-raid file) becomes an ISMRMRD header built from its
protocol and one acquisition per readout, noise-adjustment readouts of earlier measurements
first (``ACQ_IS_NOISE_MEASUREMENT``); reflected, phase-correction and feedback readouts keep
their ISMRMRD flags. ``npgd-recon`` reads the result exactly as it reads the .dat itself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from npgd_recon.cli._common import Parser, run

PROG = "npgd-convert"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="Siemens twix raw data (.dat, VB or VD/VE)")
    parser.add_argument("--out", type=Path, required=True, help="ISMRMRD HDF5 file to write")
    parser.add_argument("--group", default="dataset",
                        help="HDF5 group to write (default: dataset)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(PROG, lambda: _convert(args))


def _convert(args: argparse.Namespace) -> int:
    from npgd_recon.io.assembly import RawDataError
    from npgd_recon.io.atomic import Outputs
    from npgd_recon.io.ismrmrd_file import raw_format
    from npgd_recon.io.twix import read_twix_scan, write_ismrmrd

    with Outputs(args.force) as outputs:
        staged = outputs.file(args.out)
        if raw_format(args.input) != "twix":
            raise RawDataError(f"{args.input}: an HDF5 file, not a Siemens twix file; "
                               "there is nothing to convert")
        scan = read_twix_scan(args.input)
        count = write_ismrmrd(staged, scan.header, scan.acquisitions, args.group)
    space = scan.header.encoding[0].encodedSpace.matrixSize
    channels = scan.header.acquisitionSystemInformation.receiverChannels
    print(f"{count} acquisitions ({scan.noise} noise) from measurement {scan.measurements} of "
          f"{scan.measurements}, {channels} channel(s), encoded {space.x}x{space.y}x{space.z} "
          f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

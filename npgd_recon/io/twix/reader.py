"""Open a twix file with twixtools and turn its measurement into ISMRMRD (header + readouts).

Multi-raid (VD/VE) files hold several measurements; the last is the scan, earlier ones are
adjustments whose noise-adjustment readouts (``NOISEADJSCAN``) are kept, first, as
``ACQ_IS_NOISE_MEASUREMENT`` acquisitions so that the reader prewhitens with them; their other
readouts are dropped. Noise readouts inside the scan's own measurement are kept in place.

Failures are :class:`~npgd_recon.io.assembly.RawDataError` naming the file: a measurement that
ends past the end of the file (truncated), anything twixtools cannot parse, a readout whose
samples lie past the end of the file, a measurement without imaging readouts.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from npgd_recon.core.errors import one_line
from npgd_recon.io.assembly import RawDataError, RawStudy, assemble_study
from npgd_recon.io.twix.detect import RAID_ENTRY_BYTES, is_multi_raid
from npgd_recon.io.twix.protocol import dwell_us, header_from_protocol
from npgd_recon.io.twix.readouts import (
    NOT_IMAGING,
    TwixAcquisitions,
    acquisition_heads,
    noise_dwell_us,
    summarise,
)

__all__ = ["TwixScan", "read_twix_scan", "read_twix_study"]


@dataclass
class TwixScan:
    """One twix measurement as ISMRMRD.

    Attributes:
        header: the XML header (``ismrmrd.xsd.ismrmrdHeader``).
        acquisitions: the readouts (:class:`~npgd_recon.io.twix.readouts.TwixAcquisitions`):
            noise first, then the scan's readouts in acquisition order.
        measurements: how many measurements (raids) the file holds.
        noise: how many readouts are noise measurements.
    """

    header: object
    acquisitions: TwixAcquisitions
    measurements: int
    noise: int


def read_twix_study(path: str | Path) -> RawStudy:
    """Read a twix file into a :class:`~npgd_recon.io.assembly.RawStudy` (the same assembly
    as ISMRMRD files)."""
    scan = read_twix_scan(path)
    return assemble_study(scan.header, scan.acquisitions, str(path))


def read_twix_scan(path: str | Path) -> TwixScan:
    """Read a twix file's last measurement (and earlier measurements' noise) as ISMRMRD.

    Raises:
        RawDataError: truncated, unparsable, or without imaging readouts.
    """
    path = Path(path)
    size = path.stat().st_size
    _check_raid_extents(path, size)
    measurements = _parse(path)
    if not measurements or "hdr" not in measurements[-1]:
        raise RawDataError(f"{path}: the twix file holds no measurement")
    scan = measurements[-1]
    multi_raid = bool(scan["mdb"]) and scan["mdb"][0].version_is_ve
    noise = [m for earlier in measurements[:-1] for m in earlier["mdb"]
             if m.is_flag_set("NOISEADJSCAN")]
    mdbs = noise + list(scan["mdb"])
    for i, mdb in enumerate(mdbs):
        if int(mdb.mem_pos) + int(mdb.dma_len) > size:
            raise RawDataError(f"{path}: readout {i} ends past the end of the file "
                               f"({size} bytes); truncated twix file")
    imaging = [i for i, m in enumerate(mdbs) if not any(m.is_flag_set(f) for f in NOT_IMAGING)]
    if not imaging:
        raise RawDataError(f"{path}: the twix measurement has no imaging readouts")
    protocol = scan["hdr"]
    dwell = dwell_us(protocol)
    names = {id(m): str(raid["hdr"].get("MeasYaps", {}).get("tProtocolName", ""))
             for raid in measurements for m in raid["mdb"]}
    is_noise = [m.is_flag_set("NOISEADJSCAN") for m in mdbs]
    times = [noise_dwell_us(int(m.mdh.SamplesInScan) or 1, names[id(m)], multi_raid)
             if flagged else dwell for m, flagged in zip(mdbs, is_noise)]
    heads = acquisition_heads(mdbs, times)
    summary = summarise([mdbs[i] for i in imaging], heads[imaging])
    return TwixScan(header=header_from_protocol(protocol, summary),
                    acquisitions=TwixAcquisitions(heads, mdbs, str(path)),
                    measurements=len(measurements), noise=sum(is_noise))


def _check_raid_extents(path: Path, size: int) -> None:
    """A VD/VE file whose raid header places a measurement past the end is truncated."""
    with open(path, "rb") as file:
        first = file.read(8 + 64 * RAID_ENTRY_BYTES)
    if not is_multi_raid(first):
        return
    count = struct.unpack("<I", first[4:8])[0]
    for k in range(count):
        entry = first[8 + k * RAID_ENTRY_BYTES:8 + (k + 1) * RAID_ENTRY_BYTES]
        if len(entry) < 24:
            raise RawDataError(f"{path}: truncated twix file (raid header cut short)")
        offset, length = struct.unpack("<QQ", entry[8:24])
        if offset + length > size or offset >= size:
            raise RawDataError(f"{path}: measurement {k + 1} of {count} ends at byte "
                               f"{offset + length}, past the end of the file ({size} bytes); "
                               "truncated twix file")


def _parse(path: Path) -> list[dict]:
    """twixtools' measurements, its progress messages silenced; any failure one line."""
    import twixtools

    with contextlib.ExitStack() as stack:
        name = str(path.resolve())
        if not os.path.splitext(name)[1]:  # twixtools appends ".dat" to a name without one
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="npgd-twix-"))
            os.symlink(name, os.path.join(folder, "meas.dat"))
            name = os.path.join(folder, "meas.dat")
        stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        try:
            return twixtools.read_twix(name, parse_pmu=False, parse_geometry=False,
                                       keep_syncdata=False, verbose=False)
        except Exception as error:  # twixtools raises many parser-specific types
            raise RawDataError(f"{path}: not a readable Siemens twix file "
                               f"({type(error).__name__}: {one_line(error)})") from error


"""Read ISMRMRD raw data files (.h5): the file front end of :mod:`npgd_recon.io.assembly`.

``read_raw(path)`` opens the HDF5 file, parses the XML header, checks the acquisition table and
hands it, read in chunks, to :func:`~npgd_recon.io.assembly.assemble_study`. Every failure,
including truncated or corrupt HDF5, is a :class:`~npgd_recon.io.assembly.RawDataError` naming
the file.

Siemens twix files (.dat) are read too: :func:`raw_format` tells them from HDF5 by their first
bytes, never by the name, and ``read_raw`` hands them to :mod:`npgd_recon.io.twix`, which builds
the same header and acquisitions for the same assembly (``group`` does not apply to them).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
from ismrmrd import xsd
from xsdata.exceptions import ConverterWarning

from npgd_recon.io.assembly import RawDataError, RawStudy, assemble_study
from npgd_recon.io.twix import is_twix, read_twix_study

__all__ = ["read_raw", "parse_header", "raw_format"]


class _HDF5Acquisitions:
    """An ISMRMRD group's ``data`` table as an :class:`~npgd_recon.io.assembly.AcquisitionTable`."""

    def __init__(self, table: h5py.Dataset) -> None:
        self._table = table
        self.heads = table.fields("head")[:]

    def rows(self, start: int, stop: int) -> Sequence[np.ndarray]:
        return self._table.fields("data")[start:stop]


def read_raw(path: str | Path, group: str = "dataset") -> RawStudy:
    """Read an ISMRMRD (or Siemens twix) file into a :class:`~npgd_recon.io.assembly.RawStudy`.

    Args:
        path: the ISMRMRD HDF5 file, or a Siemens twix file (told apart by content).
        group: the dataset group inside an HDF5 file (ISMRMRD's default ``"dataset"``).

    Raises:
        RawDataError: the file is missing, neither HDF5 nor twix, truncated or corrupt, lacks the
            group, the XML header or acquisitions, is not Cartesian, or holds inconsistent or
            non-finite data.
    """
    path = Path(path)
    if raw_format(path) == "twix":
        return read_twix_study(path)
    try:
        with h5py.File(path, "r") as file:
            return _read_group(file, group, path)
    except RawDataError:
        raise
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, MemoryError) as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise RawDataError(f"{path}: truncated or corrupt HDF5 file ({reason})") from error


def raw_format(path: str | Path) -> str:
    """``"hdf5"`` (ISMRMRD) or ``"twix"`` (Siemens .dat), told by the file's content.

    Raises:
        RawDataError: the file is missing or is neither.
    """
    path = Path(path)
    if not path.is_file():
        raise RawDataError(f"{path}: no such file")
    if h5py.is_hdf5(path):
        return "hdf5"
    try:
        if is_twix(path):
            return "twix"
    except OSError as error:
        raise RawDataError(f"{path}: cannot be read ({error.strerror})") from error
    raise RawDataError(f"{path}: not an HDF5 file (ISMRMRD raw data is HDF5) nor a Siemens "
                       "twix file")


def parse_header(text: str | bytes, source: str):
    """Parse ISMRMRD XML into ``ismrmrd.xsd.ismrmrdHeader``; a :class:`RawDataError` if invalid."""
    try:
        with warnings.catch_warnings():  # a value xsdata cannot convert is an invalid header
            warnings.simplefilter("error", ConverterWarning)
            return xsd.CreateFromDocument(text.encode() if isinstance(text, str) else bytes(text))
    except Exception as error:  # xsdata raises several parser-specific types
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise RawDataError(f"{source}: the XML header is not a valid ISMRMRD header ({reason})") \
            from error


def _read_group(file: h5py.File, group: str, path: Path) -> RawStudy:
    if group not in file or not isinstance(file[group], h5py.Group):
        raise RawDataError(f"{path}: no ISMRMRD group {group!r} (groups: {', '.join(file) or '-'})")
    if "xml" not in file[group]:
        raise RawDataError(f"{path}: group {group!r} has no XML header dataset 'xml'")
    try:
        text = file[group]["xml"][0]
    except (IndexError, ValueError, OSError) as error:
        raise RawDataError(f"{path}: the XML header dataset cannot be read ({error})") from error
    header = parse_header(text, str(path))
    table = file[group].get("data")
    if not isinstance(table, h5py.Dataset) or table.shape == (0,):
        raise RawDataError(f"{path}: group {group!r} holds no acquisitions ('data' is missing)")
    if table.dtype.names is None or not {"head", "data"} <= set(table.dtype.names):
        raise RawDataError(f"{path}: 'data' is not an ISMRMRD acquisition table")
    return assemble_study(header, _HDF5Acquisitions(table), str(path))

"""Scan geometry: the header's encoding space and where each reconstructed 2-D image lies.

:class:`Encoding` holds the encoded/recon matrices, fields of view and counter limits of an
ISMRMRD header; :class:`PlaneGeometry` places one 2-D image in the patient and
:class:`VolumeIndex` names the volume it belongs to (its ISMRMRD counters): the shared language
of the raw-data reader and the DICOM writer.

Coordinates are ISMRMRD / DICOM patient coordinates (LPS: x to the patient's left, y posterior,
z head), in millimetres. An image array is ``[y, x]`` (rows, columns); ``x_dir`` is the direction
of increasing column index and ``y_dir`` that of increasing row index, which are DICOM's row and
column direction cosines (ImageOrientationPatient = ``x_dir`` then ``y_dir``).

The field-of-view centre ``centre`` is the image origin of the centred FFT convention, pixel
``(ny // 2, nx // 2)``; so the centre of the first (top-left) voxel, DICOM's
ImagePositionPatient, is ``centre - (n // 2) * spacing`` along both in-plane directions.

Header numbers: the ones reconstruction needs (matrix, fields of view) must be numbers, or the
header is refused (ValueError, one line); an optional one (:func:`header_number`: system, scanner
and sequence values) that is empty or not a finite number is ignored with one warning on this
module's logger.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

_AXES = np.eye(3)
log = logging.getLogger(__name__)


def header_number(value, field: str, source: str) -> float | None:
    """An optional header number as a float; None when the header leaves it out.

    An empty field (``<H1resonanceFrequency_Hz></H1resonanceFrequency_Hz>``) or a value that is
    not a finite number is ignored: None, and a warning ``source: header field FIELD is empty;
    ignored``.
    """
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if math.isfinite(number):
        return number
    what = "empty" if value == "" else f"{value!r}, not a number"
    log.warning("%s: header field %s is %s; ignored", source, field, what)
    return None


class VolumeIndex(NamedTuple):
    """The ISMRMRD counters that tell an image's volume apart from the others of a study."""

    contrast: int = 0
    phase: int = 0
    repetition: int = 0
    set: int = 0


@dataclass(frozen=True)
class PlaneGeometry:
    """Position of one 2-D image ``[ny, nx]`` in patient coordinates.

    Attributes:
        centre: ``(3,)`` mm, centre of the image's field of view.
        x_dir: ``(3,)`` unit vector along increasing column index (image axis -1).
        y_dir: ``(3,)`` unit vector along increasing row index (image axis -2).
        spacing: ``(dy, dx)`` mm between row centres and between column centres.
        shape: ``(ny, nx)`` pixels.
        thickness: slice thickness in mm.
        table_position: ``(3,)`` mm, the patient table position the scanner reported.
    """

    centre: np.ndarray
    x_dir: np.ndarray
    y_dir: np.ndarray
    spacing: tuple[float, float]
    shape: tuple[int, int]
    thickness: float
    table_position: np.ndarray

    @property
    def normal(self) -> np.ndarray:
        """``(3,)`` unit slice normal ``x_dir x y_dir`` (DICOM's convention)."""
        return np.cross(self.x_dir, self.y_dir)

    @property
    def field_of_view(self) -> tuple[float, float]:
        """``(fov_y, fov_x)`` in mm."""
        return (self.shape[0] * self.spacing[0], self.shape[1] * self.spacing[1])

    def first_voxel(self) -> np.ndarray:
        """``(3,)`` mm, centre of voxel ``[0, 0]`` (DICOM ImagePositionPatient)."""
        (ny, nx), (dy, dx) = self.shape, self.spacing
        return self.centre - (nx // 2) * dx * self.x_dir - (ny // 2) * dy * self.y_dir

    def orientation(self) -> np.ndarray:
        """``(6,)`` DICOM ImageOrientationPatient: ``x_dir`` then ``y_dir``."""
        return np.concatenate([self.x_dir, self.y_dir])


def directions(read_dir, phase_dir, slice_dir) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orthonormal ``(read, phase, slice)`` unit vectors from an acquisition header.

    Files that leave the directions at zero (e.g. ``ismrmrd_generate_cartesian_shepp_logan``)
    get the axial default ``read = x, phase = y, slice = z``. A missing slice direction is
    completed as ``read x phase``; the phase direction is made orthogonal to the read direction.

    Raises:
        ValueError: the read and phase directions are parallel.
    """
    vectors = [np.asarray(v, dtype=np.float64).reshape(3) for v in (read_dir, phase_dir, slice_dir)]
    if not np.any(vectors[0]) and not np.any(vectors[1]):
        return _AXES[0].copy(), _AXES[1].copy(), _AXES[2].copy()
    read = _unit(vectors[0], "read_dir")
    phase = vectors[1] - (vectors[1] @ read) * read
    phase = _unit(phase, "phase_dir (parallel to read_dir?)")
    slice_ = vectors[2] if np.any(vectors[2]) else np.cross(read, phase)
    return read, phase, _unit(slice_, "slice_dir")


def _unit(vector: np.ndarray, name: str) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm < 1e-6:
        raise ValueError(f"acquisition {name} is not a usable direction: {vector.tolist()}")
    return vector / norm


_UNLIMITED = (0, 65535)
_LIMIT_NAMES = {"kspace_encode_step_1": "kspace_encoding_step_1",
                "kspace_encode_step_2": "kspace_encoding_step_2"}


@dataclass(frozen=True)
class Encoding:
    """The first encoding space of an ISMRMRD header, as the reader and writer need it.

    Attributes:
        nx, ny, nz: encoded matrix (readout samples including oversampling, phase encodes,
            partitions; ``nz == 1`` for 2-D scans).
        fov: encoded field of view ``(x, y, z)`` in mm (``z`` is the slice thickness in 2-D).
        recon_fov: recon field of view ``(x, y, z)`` in mm.
        nx_keep: readout pixels kept after removing oversampling (the recon FOV at the encoded
            resolution; ``nx`` when the FOVs agree).
        limits: ``name -> (minimum, maximum, center)`` for the counters the header limits.
    """

    nx: int
    ny: int
    nz: int
    fov: tuple[float, float, float]
    recon_fov: tuple[float, float, float]
    nx_keep: int
    limits: dict

    @classmethod
    def from_header(cls, header) -> Encoding:
        """Parse ``header.encoding[0]``; ValueError names what is missing or unsupported."""
        if not header.encoding:
            raise ValueError("the XML header has no <encoding> section")
        enc = header.encoding[0]
        trajectory = getattr(enc.trajectory, "value", enc.trajectory)
        if trajectory != "cartesian":
            raise ValueError(f"trajectory is {trajectory!r}; only Cartesian data can be read")
        space, recon = enc.encodedSpace, enc.reconSpace
        if None in (space, recon) or None in (space.matrixSize, space.fieldOfView_mm,
                                               recon.fieldOfView_mm):
            raise ValueError("the XML header lacks the encoded or recon space")
        matrix = (space.matrixSize.x, space.matrixSize.y, space.matrixSize.z or 1)
        fov = _field_of_view(space.fieldOfView_mm, "encodedSpace")
        recon_fov = _field_of_view(recon.fieldOfView_mm, "reconSpace")
        if min(matrix) < 1 or min(fov[:2]) <= 0:
            raise ValueError(f"the encoded space is unusable: matrix {matrix}, FOV {fov} mm")
        keep = matrix[0]
        if 0 < recon_fov[0] < fov[0]:
            keep = max(1, int(round(matrix[0] * recon_fov[0] / fov[0])))
        limits = {}
        for name, value in (vars(enc.encodingLimits) if enc.encodingLimits else {}).items():
            if value is not None:
                limits[name] = (value.minimum, value.maximum, value.center)
        return cls(*matrix, fov=fov, recon_fov=recon_fov, nx_keep=keep, limits=limits)

    @property
    def is_3d(self) -> bool:
        """True for volumetric (two phase-encode directions) scans."""
        return self.nz > 1

    @property
    def plane(self) -> tuple[int, int]:
        """The matrix of one 2-D reconstruction problem: ``(ny, nx_keep)`` for a 2-D scan
        (a slice, oversampling removed), ``(ny, nz)`` for a 3-D one (a readout position)."""
        return (self.ny, self.nz) if self.is_3d else (self.ny, self.nx_keep)

    def centre_of(self, counter: str) -> int:
        """The counter value that encodes k = 0 for ``kspace_encode_step_1`` / ``_2``."""
        size = self.ny if counter == "kspace_encode_step_1" else self.nz
        limit = self.limits.get(_LIMIT_NAMES[counter])
        return int(limit[2]) if limit is not None else size // 2

    def counter_range(self, counter: str) -> tuple[int, int]:
        """Allowed ``(low, high)`` values of an acquisition counter (inclusive)."""
        if counter in _LIMIT_NAMES:
            size = self.ny if counter == "kspace_encode_step_1" else self.nz
            low = self.centre_of(counter) - size // 2
            limit = self.limits.get(_LIMIT_NAMES[counter], (low, low + size - 1))
            return max(low, limit[0]), min(low + size - 1, limit[1])
        limit = self.limits.get(counter)
        return _UNLIMITED if limit is None else (int(limit[0]), int(limit[1]))

    def row(self, e1: int) -> int:
        """Row (ky index, centre at ``ny // 2``) of phase-encode counter ``e1``."""
        return e1 - self.centre_of("kspace_encode_step_1") + self.ny // 2

    def col(self, e2: int) -> int:
        """Column (kz index, centre at ``nz // 2``) of partition-encode counter ``e2``."""
        return e2 - self.centre_of("kspace_encode_step_2") + self.nz // 2

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size ``(dx, dy, dz)`` in mm (``dz``: slice thickness for 2-D)."""
        return self.fov[0] / self.nx, self.fov[1] / self.ny, self.fov[2] / self.nz

    def slice_plane(self, head) -> PlaneGeometry:
        """Geometry of a 2-D slice ``[ny, nx_keep]`` from one of its acquisition headers."""
        read, phase, _ = directions(head["read_dir"], head["phase_dir"], head["slice_dir"])
        dx, dy, dz = self.spacing
        thickness = self.recon_fov[2] if self.recon_fov[2] > 0 else dz
        return PlaneGeometry(centre=np.asarray(head["position"], dtype=np.float64),
                             x_dir=read, y_dir=phase, spacing=(dy, dx),
                             shape=(self.ny, self.nx_keep), thickness=float(thickness),
                             table_position=np.asarray(head["patient_table_position"], float))

    def partition_plane(self, head, index: int) -> PlaneGeometry:
        """Geometry of readout position ``index`` of a 3-D scan: the plane ``[ny, nz]``."""
        read, phase, slice_ = directions(head["read_dir"], head["phase_dir"], head["slice_dir"])
        dx, dy, dz = self.spacing
        offset = (index - self.nx_keep // 2) * dx
        centre = np.asarray(head["position"], dtype=np.float64) + offset * read
        return PlaneGeometry(centre=centre, x_dir=slice_, y_dir=phase, spacing=(dy, dz),
                             shape=(self.ny, self.nz), thickness=float(dx),
                             table_position=np.asarray(head["patient_table_position"], float))


def _field_of_view(fov, space: str) -> tuple[float, float, float]:
    """A header ``fieldOfView_mm`` as three finite numbers; ValueError naming it otherwise."""
    values = (fov.x, fov.y, fov.z)
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        numbers = (math.nan,)
    if not all(math.isfinite(v) for v in numbers):
        shown = ", ".join("empty" if v == "" else str(v) for v in values)
        raise ValueError(f"the header's {space} fieldOfView_mm is ({shown}); reconstruction "
                         "needs three numbers")
    return numbers

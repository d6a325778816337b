"""The sampling-pattern container shared by every mask generator, the geometry they share
(calibration box, elliptical radius) and argument checks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class MaskError(ValueError):
    """A mask that cannot be made as asked (bad shape, acceleration or calibration); the
    message says what, in one line. Callers outside this package treat it as a user error."""


@dataclass(frozen=True)
class SamplingPattern:
    """A Cartesian sampling pattern on the phase-encode plane.

    Attributes:
        mask: bool array of the plane's shape; True where k-space is sampled.
            Centred convention: the k-space centre is at ``(ny // 2, nz // 2)``.
        order: int array ``(n, 2)``: the (row, col) of every sampled point, each once,
            in the order a scanner plays them.
        kind: generator name (``"vdrad"``, ``"poisson"``, ``"lines"``).
        accel: the requested acceleration (the rate asked for is ``1 / accel``).
        params: the generator's options, as used (for provenance, e.g. in checkpoints).
    """

    mask: np.ndarray
    order: np.ndarray
    kind: str
    accel: float
    params: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Achieved sampling rate: sampled points / all points."""
        return float(self.mask.sum()) / self.mask.size


def target_count(size: int, accel: float) -> int:
    """Number of samples that realises rate ``1 / accel`` on ``size`` points."""
    return int(round(size / accel))


def check_shape(shape: tuple[int, ...], ndim: int = 2) -> tuple[int, ...]:
    """Validate a mask shape; return it as a tuple of ints."""
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise MaskError(f"shape must be a tuple of {ndim} sizes, got {shape!r}") from None
    if len(shape) != ndim:
        raise MaskError(
            f"shape must have {ndim} dimensions (phase-encode plane), got {shape}; "
            "give e.g. (200, 100)"
        )
    if min(shape) < 4:
        raise MaskError(f"every dimension of shape must be at least 4, got {shape}")
    return shape


def check_accel(accel: float) -> float:
    """Validate an acceleration factor (finite, >= 1)."""
    accel = float(accel)
    if not np.isfinite(accel) or accel < 1:
        raise MaskError(f"accel must be a finite number >= 1, got {accel}")
    return accel


def check_calib(calib: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """Validate a calibration-region size against the mask shape."""
    calib = tuple(int(c) for c in calib)
    if len(calib) != len(shape) or any(c < 0 or c > s for c, s in zip(calib, shape)):
        raise MaskError(f"calib {calib} must have one size per dimension, each in [0, shape]")
    return calib


def default_calib(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Default calibration box: a tenth of each dimension, at least 4 (ESPIRiT needs some)."""
    return tuple(max(4, s // 10) for s in shape)


def multicoil_calib(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Calibration size for multi-coil data: ESPIRiT needs more than its 6x6 kernel, so at
    least a quarter of each side, up to 24 (a tenth when that is more)."""
    return tuple(max(s // 10, min(24, s // 4)) for s in shape)


def calib_box(shape: tuple[int, ...], calib: tuple[int, ...]) -> np.ndarray:
    """Bool array of ``shape``, True on the centred calibration box of size ``calib``."""
    box = np.zeros(shape, dtype=bool)
    index = tuple(slice(s // 2 - c // 2, s // 2 - c // 2 + c) for s, c in zip(shape, calib))
    box[index] = True
    return box


def elliptical_radius(shape: tuple[int, int]) -> np.ndarray:
    """Normalised elliptical radius of every grid point (1 on the inscribed ellipse), centred
    at ``(ny // 2, nz // 2)``."""
    ny, nz = shape
    ky = (np.arange(ny) - ny // 2) / (ny / 2)
    kz = (np.arange(nz) - nz // 2) / (nz / 2)
    return np.sqrt(ky[:, None] ** 2 + kz[None, :] ** 2)


def check_feasible(n_target: int, n_calib: int, n_max: int, accel: float, what: str) -> None:
    """Raise MaskError when the requested count cannot be met."""
    if n_calib > n_target:
        raise MaskError(
            f"accel={accel:g} asks for {n_target} samples but the calibration region alone "
            f"holds {n_calib}; lower accel or shrink calib"
        )
    if n_target > n_max:
        raise MaskError(
            f"accel={accel:g} asks for {n_target} samples but {what} holds only {n_max}; "
            "raise accel"
        )

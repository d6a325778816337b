"""Synthetic receive coils: smooth sensitivities of a birdcage-like ring or of a ring of surface
loops, and a correlated noise covariance.

Not to be confused with :func:`npgd_recon.recon.pipeline.espirit_coil_maps`, which estimates
sensitivities from measured data with BART's ESPIRiT.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from npgd_recon.core.errors import NpgdError

__all__ = ["COIL_GEOMETRIES", "synthetic_coil_maps", "coil_noise_covariance"]

#: Simulated coil arrays: ``birdcage`` (Gaussian sensitivities with a linear phase on a ring),
#: ``loops`` (the quasi-static field of circular surface loops on a cylinder, Biot-Savart).
COIL_GEOMETRIES = ("birdcage", "loops")

LOOP_RING = 1.5  # radius of the cylinder the loops sit on (the object's half width is 1)
LOOP_SEGMENTS = 48  # straight pieces per loop in the Biot-Savart sum


def synthetic_coil_maps(coils: int, shape: tuple[int, ...], oversampling: int = 1,
                        select: range | None = None,
                        geometry: str = "birdcage") -> np.ndarray:
    """Smooth sensitivities ``[coil, *shape[:-1], nx * oversampling]`` of a simulated array.

    ``birdcage``: coils on a ring around the object in the y-x plane (3-D: alternately above
    and below the centre in z), Gaussian magnitude, each with its own linear phase. ``loops``:
    circular surface loops on a cylinder of radius :data:`LOOP_RING` around the z axis, their
    planes tangent to it, neighbours overlapping by a tenth of a diameter as decoupled arrays
    do (radius at most 1; 3-D: alternately above and below the centre), each coil's
    sensitivity the transverse field ``B_x - i B_y`` of a unit current (magnitude falling off
    with depth, phase from the geometry). Normalised so ``sum_c |S_c|^2 = 1`` everywhere, as
    ESPIRiT's maps are. The object spans ``[-1, 1]`` along every axis; along x the maps
    continue over the oversampled field of view. ``select``: only these coils (still
    normalised over all ``coils``), so that a large array can be built a few coils at a time.
    """
    if geometry not in COIL_GEOMETRIES:
        raise NpgdError(f"coil geometry must be one of {', '.join(COIL_GEOMETRIES)}, "
                        f"got {geometry!r}")
    picked = range(coils) if select is None else select
    if coils == 1:
        return np.ones((len(picked), *shape[:-1], shape[-1] * oversampling), dtype=np.complex64)
    if geometry == "loops" and len(shape) == 2:  # training draws these per item: cached
        return _loop_maps_2d(coils, tuple(shape), oversampling)[list(picked)]
    raw = _birdcage if geometry == "birdcage" else _loop
    return _normalised(raw, coils, shape, oversampling, picked)


@lru_cache(maxsize=16)  # training draws a few (count, crop) pairs; bounds memory
def _loop_maps_2d(coils: int, shape: tuple[int, int], oversampling: int) -> np.ndarray:
    """All ``coils`` loop maps of a 2-D plane (read-only: shared by every caller)."""
    maps = _normalised(_loop, coils, shape, oversampling, range(coils))
    maps.flags.writeable = False
    return maps


def _normalised(raw, coils: int, shape: tuple[int, ...], oversampling: int,
                picked: range) -> np.ndarray:
    """Coils ``picked`` of ``raw(c, coils, grid, ndim)`` divided by the root of the whole
    array's ``sum_c |S_c|^2`` (each coil computed twice: a large volume never holds them all)."""
    nx = shape[-1] * oversampling
    axes = [(np.arange(n) - n // 2) / (n / 2) for n in shape[:-1]]
    axes.append((np.arange(nx) - nx // 2) / (shape[-1] / 2))
    grid = np.meshgrid(*axes, indexing="ij", sparse=True)  # broadcast, never full-size copies
    full = tuple(len(a) for a in axes)
    power = np.zeros(full)
    for c in range(coils):
        power += np.abs(raw(c, coils, grid, len(shape))) ** 2
    maps = np.empty((len(picked),) + full, dtype=np.complex64)
    for i, c in enumerate(picked):
        maps[i] = raw(c, coils, grid, len(shape)) / np.sqrt(power)
    return maps


def _birdcage(c: int, coils: int, grid: list[np.ndarray], ndim: int) -> np.ndarray:
    """Coil ``c`` of the birdcage-like ring before normalisation: a Gaussian in magnitude, a
    linear phase."""
    angle = 2 * np.pi * c / coils
    y, x = grid[-2], grid[-1]
    distance = (y - 1.3 * np.sin(angle)) ** 2 + (x - 1.3 * np.cos(angle)) ** 2
    if ndim == 3:
        distance = distance + (grid[0] - (0.5 if c % 2 else -0.5)) ** 2
    phase = angle + 0.6 * (np.cos(angle) * y - np.sin(angle) * x)
    return np.exp(-distance / 2.0 + 1j * phase)


def _loop(c: int, coils: int, grid: list[np.ndarray], ndim: int) -> np.ndarray:
    """Coil ``c`` of the loop array before normalisation: ``B_x - i B_y`` of a unit current in a
    circular loop (Biot-Savart over :data:`LOOP_SEGMENTS` pieces; the distance softened by a
    twentieth of the radius, so that points of an oversampled field of view near a wire stay
    finite)."""
    angle = 2 * np.pi * c / coils
    radius = min(1.0, 1.1 * np.pi * LOOP_RING / coils)  # 1.1 x the spacing, as a diameter
    centre = np.array([LOOP_RING * np.cos(angle), LOOP_RING * np.sin(angle),
                       (0.5 if c % 2 else -0.5) if ndim == 3 else 0.0])
    tangent = np.array([-np.sin(angle), np.cos(angle), 0.0])
    axis_z = np.array([0.0, 0.0, 1.0])
    y, x = grid[-2], grid[-1]
    z = grid[0] if ndim == 3 else 0.0
    soft = (radius / 20) ** 2
    field = [0.0, 0.0]  # B_x, B_y
    for phi in 2 * np.pi * (np.arange(LOOP_SEGMENTS) + 0.5) / LOOP_SEGMENTS:
        point = centre + radius * (np.cos(phi) * tangent + np.sin(phi) * axis_z)
        piece = radius * (2 * np.pi / LOOP_SEGMENTS) * (-np.sin(phi) * tangent
                                                         + np.cos(phi) * axis_z)
        dx, dy, dz = x - point[0], y - point[1], z - point[2]
        cube = (dx * dx + dy * dy + dz * dz + soft) ** 1.5
        field[0] = field[0] + (piece[1] * dz - piece[2] * dy) / cube  # (dl x r)_x
        field[1] = field[1] + (piece[2] * dx - piece[0] * dz) / cube  # (dl x r)_y
    return field[0] - 1j * field[1]

def coil_noise_covariance(coils: int, seed: int = 0) -> np.ndarray:
    """Correlated coil-noise covariance ``Psi = D C D``: gains 0.7-1.3, correlation 0.5^|i-j|."""
    gains = np.random.default_rng(seed).uniform(0.7, 1.3, coils)
    index = np.arange(coils)
    correlation = 0.5 ** np.abs(index[:, None] - index[None, :])
    return (gains[:, None] * correlation * gains[None, :]).astype(np.complex128)

"""Variable-density radial view ordering (VDRad) on a Cartesian phase-encode plane.

Built from the published description (Cheng, Vasanawala et al., Stanford); no code was copied.
Half-spokes start at the k-space centre and run outward; successive spokes turn by the golden
angle (pi * (3 - sqrt(5)), about 137.5 degrees). Along a spoke the normalised radius of sample j
is ``((j + u) / n) ** power`` with a per-spoke random shift ``u``, so the spacing between samples
grows with |k| as a power law (``power > 1``: denser centre). Positions are scaled to an ellipse
inscribed in the plane (corners are never sampled), rounded to the grid and merged where they
coincide; a centred calibration box is always fully sampled.

Exact rate: spokes form a sequence, so a mask with more spokes contains the mask with fewer.
The generator walks that sequence and stops at exactly ``round(size / accel)`` samples,
truncating the last spoke at its outer end, so the achieved rate differs from ``1 / accel`` by
at most half a sample.
"""

from __future__ import annotations

import numpy as np

from sampling.pattern import (
    MaskError,
    SamplingPattern,
    calib_box,
    check_accel,
    check_calib,
    check_feasible,
    check_shape,
    default_calib,
    elliptical_radius,
    target_count,
)

GOLDEN_ANGLE = np.pi * (3.0 - np.sqrt(5.0))
_CHUNK = 256


def _grid_angle(shape: tuple[int, int]) -> np.ndarray:
    ny, nz = shape
    ky = (np.arange(ny) - ny // 2) / (ny / 2)
    kz = (np.arange(nz) - nz // 2) / (nz / 2)
    return np.arctan2(kz[None, :], ky[:, None])


def _spoke_points(shape, first, count, samples_per_spoke, power, theta0, shifts):
    """Flat grid indices ``(count, samples_per_spoke)`` of spokes ``first .. first+count-1``."""
    ny, nz = shape
    spokes = np.arange(first, first + count)
    theta = theta0 + spokes * GOLDEN_ANGLE
    j = np.arange(samples_per_spoke)[None, :] + shifts[spokes, None]
    r = (j / samples_per_spoke) ** power
    iy = np.rint(ny // 2 + r * np.cos(theta)[:, None] * (ny / 2)).astype(np.int64)
    iz = np.rint(nz // 2 + r * np.sin(theta)[:, None] * (nz / 2)).astype(np.int64)
    inside = (iy >= 0) & (iy < ny) & (iz >= 0) & (iz < nz)
    flat = np.where(inside, np.clip(iy, 0, ny - 1) * nz + np.clip(iz, 0, nz - 1), -1)
    return flat


def vdrad(
    shape: tuple[int, int],
    accel: float = 5.0,
    *,
    calib: tuple[int, int] | None = None,
    seed: int = 0,
    power: float = 1.5,
    samples_per_spoke: int | None = None,
) -> SamplingPattern:
    """Variable-density radial-view-ordered Cartesian mask.

    Args:
        shape: ``(ny, nz)`` phase-encode plane (e.g. ``(200, 100)``).
        accel: acceleration; the mask samples ``round(ny * nz / accel)`` points.
        calib: fully sampled centred box ``(cy, cz)``; default a tenth of each side (>= 4).
        seed: seeds the spoke rotation offset and the per-spoke radial shifts.
        power: exponent of the radial power law (> 0; > 1 concentrates samples at the centre).
        samples_per_spoke: samples on each spoke before merging; default
            ``max(8, round(max(shape) / (2 sqrt(accel))))``.

    Returns:
        SamplingPattern with ``.mask`` (bool ``shape``) and ``.order`` (``(n, 2)``, spoke by
        spoke, each spoke centre outward; calibration points join the spoke nearest in angle).

    Raises:
        MaskError: bad shape, accel < 1, a rate the calibration box already exceeds, or one
            above what the elliptical support holds.
    """
    shape = check_shape(shape)
    accel = check_accel(accel)
    calib = check_calib(default_calib(shape) if calib is None else calib, shape)
    if not power > 0:
        raise MaskError(f"power must be positive, got {power}")
    if samples_per_spoke is None:
        samples_per_spoke = max(8, round(max(shape) / (2 * np.sqrt(accel))))
    if samples_per_spoke < 2:
        raise MaskError(f"samples_per_spoke must be at least 2, got {samples_per_spoke}")

    box = calib_box(shape, calib)
    support = (elliptical_radius(shape) <= 1.0) | box
    n_target = target_count(box.size, accel)
    n_calib = int(box.sum())
    check_feasible(n_target, n_calib, int(support.sum()), accel, "the elliptical support")

    rng = np.random.default_rng(seed)
    theta0 = rng.uniform(0, 2 * np.pi)
    max_spokes = 50 * (shape[0] + shape[1]) + _CHUNK
    shifts = rng.uniform(0, 1, size=max_spokes)

    taken = box.ravel().copy()
    novel_idx: list[np.ndarray] = []
    novel_spoke: list[np.ndarray] = []
    needed = n_target - n_calib
    first = 0
    while needed > 0:
        if first >= max_spokes - _CHUNK:
            raise MaskError(
                f"VDRad could not reach accel={accel:g} on {shape}; raise accel or power"
            )
        flat = _spoke_points(shape, first, _CHUNK, samples_per_spoke, power, theta0, shifts)
        spoke_id = np.broadcast_to(np.arange(first, first + _CHUNK)[:, None], flat.shape)
        flat, spoke_id = flat.ravel(), spoke_id.ravel()
        valid = flat >= 0
        flat, spoke_id = flat[valid], spoke_id[valid]
        keep = support.ravel()[flat]
        flat, spoke_id = flat[keep], spoke_id[keep]
        _, first_pos = np.unique(flat, return_index=True)
        first_pos = np.sort(first_pos)
        new = first_pos[~taken[flat[first_pos]]][:needed]
        taken[flat[new]] = True
        novel_idx.append(flat[new])
        novel_spoke.append(spoke_id[new])
        needed -= new.size
        first += _CHUNK

    mask = taken.reshape(shape)
    order = _view_order(
        shape, box, np.concatenate(novel_idx), np.concatenate(novel_spoke), theta0
    )
    params = dict(calib=list(calib), seed=seed, power=power, samples_per_spoke=samples_per_spoke)
    return SamplingPattern(mask=mask, order=order, kind="vdrad", accel=accel, params=params)


def _view_order(shape, box, novel_idx, novel_spoke, theta0) -> np.ndarray:
    """Spoke by spoke, centre outward; calibration points join the spoke nearest in angle."""
    calib_idx = np.flatnonzero(box.ravel())
    spokes = np.unique(novel_spoke)
    if spokes.size:
        spoke_theta = np.mod(theta0 + spokes * GOLDEN_ANGLE, 2 * np.pi)
        point_theta = np.mod(_grid_angle(shape).ravel()[calib_idx], 2 * np.pi)
        diff = np.abs(point_theta[:, None] - spoke_theta[None, :])
        diff = np.minimum(diff, 2 * np.pi - diff)
        calib_spoke = spokes[np.argmin(diff, axis=1)]
    else:
        calib_spoke = np.zeros(calib_idx.size, dtype=np.int64)
    idx = np.concatenate([novel_idx, calib_idx])
    spoke = np.concatenate([novel_spoke, calib_spoke])
    radius = elliptical_radius(shape).ravel()[idx]
    ordering = np.lexsort((radius, spoke))
    rows, cols = np.unravel_index(idx[ordering], shape)
    return np.stack([rows, cols], axis=1).astype(np.int64)

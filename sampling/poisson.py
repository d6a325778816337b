"""Variable-density Poisson-disc masks: sigpy's generator, then an exact-rate adjustment."""

from __future__ import annotations

import numpy as np

from sampling.pattern import (
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


def poisson(
    shape: tuple[int, int],
    accel: float = 5.0,
    *,
    calib: tuple[int, int] | None = None,
    seed: int = 0,
) -> SamplingPattern:
    """Variable-density Poisson-disc mask with exactly ``round(size / accel)`` samples.

    ``sigpy.mri.poisson`` draws the pattern (density ``1 / (1 + s r)``, corners cropped) to
    within its own tolerance; the few surplus points farthest from the centre are then dropped,
    or missing points added where the pattern is sparsest nearest the centre (seeded), so the
    count is exact. ``.order`` runs centre outward by elliptical radius.
    """
    shape = check_shape(shape)
    accel = check_accel(accel)
    calib = check_calib(default_calib(shape) if calib is None else calib, shape)
    box = calib_box(shape, calib)
    radius = elliptical_radius(shape)
    support = (radius <= 1.0) | box
    n_target = target_count(box.size, accel)
    check_feasible(n_target, int(box.sum()), int(support.sum()), accel, "the elliptical support")

    if n_target == support.sum():
        mask = support.copy()
    else:
        import sigpy.mri  # seconds to import: only when a Poisson mask is asked for

        mask = sigpy.mri.poisson(shape, max(accel, 1.0 + 1e-6), calib=calib, dtype=np.float32,
                                 seed=seed, tol=0.05 * accel).astype(bool)
        mask = (mask | box) & support
    mask = _adjust_count(mask, box, support, radius, n_target, np.random.default_rng(seed))
    flat = np.flatnonzero(mask.ravel())
    flat = flat[np.argsort(radius.ravel()[flat], kind="stable")]
    order = np.stack(np.unravel_index(flat, shape), axis=1).astype(np.int64)
    return SamplingPattern(mask=mask, order=order, kind="poisson", accel=accel,
                           params=dict(calib=list(calib), seed=seed))


def _adjust_count(mask, box, support, radius, n_target, rng) -> np.ndarray:
    mask = mask.copy()
    surplus = int(mask.sum()) - n_target
    jitter = rng.uniform(0, 1e-3, size=mask.shape)
    if surplus > 0:
        candidates = np.flatnonzero((mask & ~box).ravel())
        outermost = candidates[np.argsort(-(radius + jitter).ravel()[candidates])[:surplus]]
        mask.ravel()[outermost] = False
    elif surplus < 0:
        candidates = np.flatnonzero((support & ~mask).ravel())
        innermost = candidates[np.argsort((radius + jitter).ravel()[candidates])[:-surplus]]
        mask.ravel()[innermost] = True
    return mask

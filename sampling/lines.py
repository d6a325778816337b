"""1-D variable-density line masks (ky only) for 2-D multi-slice Cartesian acquisitions."""

from __future__ import annotations

import numpy as np

from sampling.pattern import (
    MaskError,
    SamplingPattern,
    check_accel,
    check_feasible,
    check_shape,
    target_count,
)


def vd_lines(
    shape: tuple[int, int],
    accel: float = 5.0,
    *,
    calib: int | None = None,
    seed: int = 0,
    power: float = 2.0,
) -> SamplingPattern:
    """Variable-density phase-encode lines on a ``(ny, nx)`` plane (rows = ky, full readouts).

    ``round(ny / accel)`` rows are sampled: a fully sampled centred block of ``calib`` rows
    (default ``max(4, ny // 12)``), the rest drawn without replacement with probability
    ``(1 - |k|) ** power`` (seeded). With whole lines the rate is exact up to half a line,
    i.e. within ``0.5 / ny`` of ``1 / accel``. ``.order`` plays lines centre outward,
    alternating sides, each line's points left to right.
    """
    shape = check_shape(shape)
    accel = check_accel(accel)
    ny, nx = shape
    calib = max(4, ny // 12) if calib is None else int(calib)
    if not 0 <= calib <= ny:
        raise MaskError(f"calib must be between 0 and {ny} lines, got {calib}")
    n_lines = target_count(ny, accel)
    check_feasible(n_lines, calib, ny, accel, "the plane")

    k = np.abs(np.arange(ny) - ny // 2) / (ny / 2)
    rows = np.zeros(ny, dtype=bool)
    rows[ny // 2 - calib // 2: ny // 2 - calib // 2 + calib] = True
    free = np.flatnonzero(~rows)
    weight = np.clip(1.0 - k[free], 1e-6, None) ** power
    pick = np.random.default_rng(seed).choice(free, size=n_lines - calib, replace=False,
                                              p=weight / weight.sum())
    rows[pick] = True

    mask = np.repeat(rows[:, None], nx, axis=1)
    centre_out = np.lexsort((np.arange(ny), np.abs(np.arange(ny) - ny // 2)))
    line_order = centre_out[rows[centre_out]]
    order = np.stack([np.repeat(line_order, nx), np.tile(np.arange(nx), line_order.size)], axis=1)
    return SamplingPattern(mask=mask, order=order.astype(np.int64), kind="lines", accel=accel,
                           params=dict(calib=calib, seed=seed, power=power))

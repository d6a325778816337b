"""Best-SNR search for the CS regularisation weight: a log grid, then a refinement around the best.

SNR is the magnitude SNR of ``npgd_recon.core.metrics`` (the published tables' definition), averaged
over the slices of a stack. Lambdas are in the normalised units of ``bart_baselines.cs``.

Cost: one ``bart pics`` run per lambda tried, :func:`expected_runs` of them (13 with the default
grid and two refinements) when the best lambda lies inside the grid, one more per extension
beyond its edges (at most ``MAX_EXTENSIONS``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bart_baselines.cs import cs_tv, cs_wavelet

DEFAULT_GRID = tuple(float(v) for v in 10.0 ** np.arange(-5.0, -0.99, 0.5))
MAX_EXTENSIONS = 4
_METHODS = {"wavelet": cs_wavelet, "tv": cs_tv}


def expected_runs(grid: tuple[float, ...] = DEFAULT_GRID, refinements: int = 2) -> int:
    """BART runs of :func:`tune_lambda` when its best lambda lies inside ``grid`` (each
    extension beyond an edge adds one, up to ``MAX_EXTENSIONS``)."""
    return len(grid) + 2 * refinements


def tune_lambda(
    kspace: np.ndarray,
    mask: np.ndarray | None,
    reference: np.ndarray,
    metric: Callable[[np.ndarray, np.ndarray], np.ndarray | float],
    method: str = "wavelet",
    sens: np.ndarray | str | None = None,
    iters: int = 300,
    threads: int | None = None,
    *,
    stack: bool = False,
    grid: tuple[float, ...] = DEFAULT_GRID,
    refinements: int = 2,
) -> tuple[float, list[tuple[float, float]]]:
    """Find the lambda with the best ``metric(reference, image)`` (higher is better).

    The log-spaced ``grid`` is evaluated first and extended by its own ratio (up to
    ``MAX_EXTENSIONS`` times) while the best value sits on its edge; then each refinement
    evaluates the best lambda times and divided by the square root of the current ratio, and
    halves the ratio (in log) for the next round.

    Args:
        kspace, mask, sens, iters, threads, stack: as for :func:`bart_baselines.cs.cs_wavelet`
            (pass maps rather than ``"espirit"`` to avoid one ``ecalib`` per lambda).
        reference: the true image ``[y, x]`` (``[slice, y, x]`` with ``stack``).
        metric: ``metric(reference, image)`` per slice, higher is better (e.g. SNR in dB).
        method: ``"wavelet"`` (CS-WV) or ``"tv"`` (CS-TV).
        grid: increasing, log-evenly spaced starting lambdas (at least two).
        refinements: rounds of refinement after the grid.

    Returns:
        ``(best_lambda, table)``, the table holding every ``(lambda, score)`` tried, sorted by
        lambda.

    Raises:
        ValueError: unknown method, a grid that is not increasing and positive, or a
            reference whose shape differs from the reconstruction's.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {', '.join(_METHODS)}, got {method!r}")
    lams = np.asarray(grid, dtype=float)
    if lams.ndim != 1 or lams.size < 2 or lams[0] <= 0 or np.any(np.diff(lams) <= 0):
        raise ValueError(f"grid must hold at least two increasing positive lambdas, got {grid}")
    reconstruct = _METHODS[method]
    snrs: dict[float, float] = {}

    def score(lam: float) -> float:
        if lam not in snrs:
            image = reconstruct(kspace, mask, sens, lam, iters, threads, stack=stack)
            if image.shape != np.shape(reference):
                raise ValueError(f"reference {np.shape(reference)} differs from the "
                                 f"reconstruction {image.shape}")
            snrs[lam] = float(np.mean(metric(reference, image)))
        return snrs[lam]

    for lam in lams:
        score(float(lam))
    ratio = float(lams[-1] / lams[-2])
    low, high = float(lams[0]), float(lams[-1])
    for _ in range(MAX_EXTENSIONS):
        best = max(snrs, key=snrs.get)
        if best == low:
            low /= ratio
            score(low)
        elif best == high:
            high *= ratio
            score(high)
        else:
            break
    step = ratio
    for _ in range(refinements):
        step = float(np.sqrt(step))
        best = max(snrs, key=snrs.get)
        score(best / step)
        score(best * step)
    best = max(snrs, key=snrs.get)
    return best, sorted(snrs.items())

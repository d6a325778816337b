"""Cartesian k-space sampling patterns: VDRad (default), variable-density Poisson disc, VD lines."""

import numpy as np

from sampling.lines import vd_lines
from sampling.pattern import MaskError, SamplingPattern, multicoil_calib
from sampling.poisson import poisson
from sampling.vdrad import vdrad

GENERATORS = {"vdrad": vdrad, "poisson": poisson, "lines": vd_lines}


def make_mask(kind: str, shape: tuple[int, int], accel: float = 5.0, **options) -> SamplingPattern:
    """Build a pattern by generator name (``vdrad``, ``poisson`` or ``lines``).

    ``calib`` may be given as a 2-D box ``(ny, nx)`` for every kind; ``lines`` uses its first
    size (the number of fully sampled rows), so callers need not know which kind takes what.
    """
    if kind not in GENERATORS:
        raise MaskError(f"unknown mask kind {kind!r}; choose one of {', '.join(GENERATORS)}")
    calib = options.get("calib")
    if kind == "lines" and calib is not None and not isinstance(calib, int | np.integer):
        options["calib"] = tuple(calib)[0]
    return GENERATORS[kind](shape, accel, **options)


__all__ = ["MaskError", "SamplingPattern", "multicoil_calib", "vdrad", "poisson", "vd_lines",
           "make_mask", "GENERATORS"]

"""Cartesian k-space sampling patterns: VDRad (default), variable-density Poisson disc, VD lines."""

from sampling.lines import vd_lines
from sampling.pattern import SamplingPattern, multicoil_calib
from sampling.poisson import poisson
from sampling.vdrad import vdrad

GENERATORS = {"vdrad": vdrad, "poisson": poisson, "lines": vd_lines}


def make_mask(kind: str, shape: tuple[int, int], accel: float = 5.0, **options) -> SamplingPattern:
    """Build a pattern by generator name (``vdrad``, ``poisson`` or ``lines``)."""
    if kind not in GENERATORS:
        raise ValueError(f"unknown mask kind {kind!r}; choose one of {', '.join(GENERATORS)}")
    return GENERATORS[kind](shape, accel, **options)


__all__ = ["SamplingPattern", "multicoil_calib", "vdrad", "poisson", "vd_lines", "make_mask",
           "GENERATORS"]

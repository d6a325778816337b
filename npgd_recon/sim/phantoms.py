"""Phantoms: the Shepp-Logan head (sigpy's) in 2-D or 3-D."""

from __future__ import annotations

import numpy as np

__all__ = ["shepp_logan"]


def shepp_logan(shape: tuple[int, ...]) -> np.ndarray:
    """Complex64 Shepp-Logan phantom, 2-D ``(ny, nx)`` or 3-D ``(nz, ny, nx)`` (sigpy's)."""
    import sigpy  # slow to import (seconds): only when a phantom is asked for

    return sigpy.shepp_logan(tuple(int(s) for s in shape), dtype=np.complex64)

"""Training images on a coarser matrix: the same field of view in fewer pixels, as a smaller
scan would see it (``max_size`` of the image sources)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from npgd_recon.core.errors import NpgdError

MIN_SIZE = 8  # the smallest max_size a source accepts


def check_max_size(max_size: object, where: str) -> int:
    """``max_size`` as given, or :class:`NpgdError` (``where: max_size must ...``) unless it is
    a whole number of at least :data:`MIN_SIZE`."""
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < MIN_SIZE:
        raise NpgdError(f"{where}: max_size must be a whole number >= {MIN_SIZE}, "
                        f"got {max_size!r}")
    return max_size


def shrink(plane: np.ndarray, max_size: int) -> np.ndarray:
    """``plane`` (real or complex) linearly resampled so that its larger side is at most
    ``max_size`` (unchanged if it already is), then cut to even sides."""
    factor = min(1.0, max_size / max(plane.shape))
    if factor < 1:
        if np.iscomplexobj(plane):
            plane = (ndimage.zoom(plane.real, factor, order=1)
                     + 1j * ndimage.zoom(plane.imag, factor, order=1))
        else:
            plane = ndimage.zoom(plane, factor, order=1)
    return plane[: plane.shape[0] // 2 * 2, : plane.shape[1] // 2 * 2]

"""The one FFT convention: centred (DC in the middle), orthonormal, over the last two axes.

``fft2c(x) = fftshift(fft2(ifftshift(x), norm="ortho"))``. Torch tensors stay on their device
and keep autograd; numpy arrays are converted through torch and come back as numpy, so numpy
and torch callers share the same implementation.
"""

from __future__ import annotations

import numpy as np
import torch

_DIMS = (-2, -1)


def _fft2c_torch(x: torch.Tensor, inverse: bool) -> torch.Tensor:
    transform = torch.fft.ifft2 if inverse else torch.fft.fft2
    shifted = torch.fft.ifftshift(x, dim=_DIMS)
    return torch.fft.fftshift(transform(shifted, dim=_DIMS, norm="ortho"), dim=_DIMS)


def _dispatch(x, inverse: bool):
    if isinstance(x, torch.Tensor):
        return _fft2c_torch(x, inverse)
    array = np.asarray(x)
    dtype = np.complex128 if array.dtype in (np.complex128, np.float64) else np.complex64
    result = _fft2c_torch(torch.from_numpy(np.ascontiguousarray(array.astype(dtype))), inverse)
    return result.numpy()


def fft2c(x):
    """Centred orthonormal 2-D FFT of image(s) ``[..., y, x]`` (torch or numpy)."""
    return _dispatch(x, inverse=False)


def ifft2c(k):
    """Centred orthonormal 2-D inverse FFT of k-space ``[..., ky, kx]`` (torch or numpy)."""
    return _dispatch(k, inverse=True)


def fft1c(x, axis: int = -1):
    """Centred orthonormal 1-D FFT along ``axis`` (the 2-D transform over a singleton axis)."""
    return _along(x, axis, inverse=False)


def ifft1c(x, axis: int = -1):
    """Centred orthonormal 1-D inverse FFT along ``axis``."""
    return _along(x, axis, inverse=True)


def _along(x, axis: int, inverse: bool):
    move = torch.movedim if isinstance(x, torch.Tensor) else np.moveaxis
    lines = move(x, axis, -1)[..., None, :]
    return move(_dispatch(lines, inverse)[..., 0, :], -1, axis)

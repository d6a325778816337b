"""The one FFT convention: centred (DC in the middle), orthonormal, over the last two axes.

``fft2c(x) = fftshift(fft2(ifftshift(x), norm="ortho"))``. Torch tensors stay on their device
and keep autograd; numpy arrays are converted through torch and come back as numpy, so numpy
and torch callers share the same 2-D implementation. The 1-D transforms of numpy arrays
(:func:`fft1c`, :func:`ifft1c`: the raw-data reader's readout transforms) use numpy's own FFT
instead, and torch is imported only when a torch transform is asked for: reading a file does not
import torch, so ``npgd-recon`` imports it in the background while it reads the file and runs
``bart ecalib`` (``npgd_recon.cli.recon``).

For an even length ``N`` the shifts are sign flips: ``fftshift(fft(ifftshift(x)))[k] =
(-1)^(k + N/2) fft((-1)^n x)[k]`` (the same for the inverse), so where both axes are even the
transform multiplies by two cached +-1 checkerboards instead of rolling the data four times
(``torch.roll`` copies; it was a third of the unrolled network's time on the CPU). Odd lengths
take the shifts.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

_DIMS = (-2, -1)


def _is_tensor(x) -> bool:
    """``x`` is a torch tensor (torch is not imported to find out: if it is not imported yet,
    nothing is a tensor)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


@lru_cache(maxsize=32)
def _checkerboards(ny: int, nx: int, device: torch.device,
                   dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``(-1)^(y + x)`` before and ``(-1)^(y + x + ny/2 + nx/2)`` after the transform."""
    import torch

    y = torch.arange(ny, device=device).view(-1, 1)
    x = torch.arange(nx, device=device).view(1, -1)
    before = (1 - 2 * ((y + x) % 2)).to(dtype)
    after = before * (1 - 2 * ((ny // 2 + nx // 2) % 2))
    return before, after


def _fft2c_torch(x: torch.Tensor, inverse: bool) -> torch.Tensor:
    import torch

    transform = torch.fft.ifft2 if inverse else torch.fft.fft2
    ny, nx = x.shape[-2:]
    if ny % 2 or nx % 2:
        shifted = torch.fft.ifftshift(x, dim=_DIMS)
        return torch.fft.fftshift(transform(shifted, dim=_DIMS, norm="ortho"), dim=_DIMS)
    real = x.real.dtype if x.is_complex() else x.dtype
    before, after = _checkerboards(ny, nx, x.device, real)
    return transform(x * before, dim=_DIMS, norm="ortho") * after


def _dispatch(x, inverse: bool):
    if _is_tensor(x):
        return _fft2c_torch(x, inverse)
    import torch

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


def centring(ny: int, nx: int, device: torch.device) -> torch.Tensor | None:
    """The +-1 checkerboard ``b`` (float32) for which ``ifft2c(w * fft2c(x)) =
    b * ifft2(w * fft2(b * x))`` (orthonormal, uncentred) for any k-space weight ``w``, or None
    where a side is odd (no such identity: use :func:`fft2c` and :func:`ifft2c`).

    The sign after the forward transform and the one before the inverse cancel (their product
    is a constant +-1, squared away), so a normal operator ``F^H W F`` needs neither the
    shifts nor the second pair of sign flips; a SENSE operator folds ``b`` into its maps once.
    """
    import torch

    if ny % 2 or nx % 2:
        return None
    return _checkerboards(ny, nx, device, torch.float32)[0]


def fft1c(x, axis: int = -1):
    """Centred orthonormal 1-D FFT along ``axis`` (the 2-D transform over a singleton axis)."""
    return _along(x, axis, inverse=False)


def ifft1c(x, axis: int = -1):
    """Centred orthonormal 1-D inverse FFT along ``axis``."""
    return _along(x, axis, inverse=True)


def _along(x, axis: int, inverse: bool):
    if not _is_tensor(x):  # numpy's FFT, in the precision of x (complex64 stays complex64)
        array = np.asarray(x)
        if array.dtype not in (np.complex64, np.complex128):
            array = array.astype(np.complex128 if array.dtype == np.float64 else np.complex64)
        transform = np.fft.ifft if inverse else np.fft.fft
        shifted = np.fft.ifftshift(array, axes=axis)
        return np.fft.fftshift(transform(shifted, axis=axis, norm="ortho"), axes=axis)
    import torch

    lines = torch.movedim(x, axis, -1)[..., None, :]
    return torch.movedim(_dispatch(lines, inverse)[..., 0, :], -1, axis)

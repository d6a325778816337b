"""The one centred FFT against numpy's shift definition, for even and odd sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from npgd_recon.core.fft import fft1c, fft2c, ifft1c, ifft2c

SHAPES = [(3, 8, 6), (2, 6, 10), (4, 5, 8), (7, 9), (2, 4, 7)]


def _reference(x: np.ndarray, inverse: bool) -> np.ndarray:
    transform = np.fft.ifft2 if inverse else np.fft.fft2
    axes = (-2, -1)
    return np.fft.fftshift(transform(np.fft.ifftshift(x, axes=axes), axes=axes, norm="ortho"),
                           axes=axes)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("inverse", [False, True])
def test_centred_fft_matches_the_shift_definition(shape, inverse):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    got = (ifft2c if inverse else fft2c)(x)
    np.testing.assert_allclose(got, _reference(x, inverse), atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_torch_complex64_round_trip_and_real_input(shape):
    x = torch.randn(shape, dtype=torch.complex64)
    np.testing.assert_allclose(ifft2c(fft2c(x)).numpy(), x.numpy(), atol=1e-5)
    real = torch.randn(shape)
    np.testing.assert_allclose(fft2c(real).numpy(), _reference(real.numpy(), False), atol=1e-5)


def test_centred_fft_keeps_autograd():
    x = torch.randn(2, 8, 6, dtype=torch.complex64, requires_grad=True)
    fft2c(x).abs().sum().backward()
    assert x.grad is not None and torch.isfinite(torch.view_as_real(x.grad)).all()


def test_1d_transforms_along_an_axis():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 5, 4)) + 1j * rng.standard_normal((6, 5, 4))
    expected = np.fft.fftshift(np.fft.fft(np.fft.ifftshift(x, axes=0), axis=0, norm="ortho"),
                               axes=0)
    np.testing.assert_allclose(fft1c(x, axis=0), expected, atol=1e-12)
    np.testing.assert_allclose(ifft1c(fft1c(x, axis=1), axis=1), x, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128, np.float32])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_numpy_1d_transforms_agree_with_the_torch_path(dtype, axis):
    """numpy arrays take numpy's FFT in 1-D (the reader's, torch-free), tensors torch's: one
    convention, the same numbers, and complex64 stays complex64."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 7, 4)).astype(dtype)
    if np.iscomplexobj(x):
        x = x + 1j * rng.standard_normal(x.shape).astype(dtype)
    for transform in (fft1c, ifft1c):
        got = transform(x, axis=axis)
        expected = transform(torch.from_numpy(x), axis=axis).numpy()
        assert got.dtype == expected.dtype
        np.testing.assert_allclose(got, expected, atol=1e-5 if got.dtype == np.complex64
                                   else 1e-12)

"""Forward operators: adjoint identity, normal operator, norm bound, numpy/torch agreement."""

import numpy as np
import pytest
import torch

from npgd_recon.core.fft import fft1c, fft2c, ifft1c, ifft2c
from npgd_recon.core.operators import BlockAverageOp, CartesianOp, SenseOp
from sampling import vdrad
from tests.conftest import randc

torch.manual_seed(0)


def inner(a, b):
    return torch.vdot(a.reshape(-1).to(torch.complex128), b.reshape(-1).to(torch.complex128))


def random_maps(coils, ny, nx):
    maps = randc(coils, ny, nx)
    return maps / maps.abs().pow(2).sum(0, keepdim=True).sqrt()


def operators(batch=3, ny=40, nx=24, coils=4):
    mask = torch.from_numpy(vdrad((ny, nx), 4.0).mask)
    return {
        "cartesian": (CartesianOp(mask), (batch, ny, nx)),
        "cartesian-batched-mask": (
            CartesianOp(torch.stack([torch.from_numpy(vdrad((ny, nx), 4.0, seed=s).mask)
                                     for s in range(batch)])), (batch, ny, nx)),
        "sense": (SenseOp(mask, random_maps(coils, ny, nx)), (batch, ny, nx)),
        "block-average": (BlockAverageOp(), (batch, ny, nx)),
    }


@pytest.mark.parametrize("name", list(operators()))
def test_adjoint_identity(name):
    op, shape = operators()[name]
    x = randc(*shape)
    y = randc(*op.forward(x).shape)
    lhs, rhs = inner(op.forward(x), y), inner(x, op.adjoint(y))
    assert abs(lhs - rhs) / abs(lhs) < 1e-5


@pytest.mark.parametrize("name", list(operators()))
def test_normal_is_adjoint_of_forward(name):
    op, shape = operators()[name]
    x = randc(*shape)
    torch.testing.assert_close(op.normal(x), op.adjoint(op.forward(x)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["cartesian", "sense", "block-average"])
def test_operator_norm_bounded(name):
    """Power iteration on Phi^H Phi: largest eigenvalue <= 1 (1/4 for block averaging)."""
    op, shape = operators()[name]
    x = randc(*shape)
    for _ in range(50):
        x = op.normal(x)
        x = x / x.norm()
    eig = inner(x, op.normal(x)).real.item()
    bound = 0.25 if name == "block-average" else 1.0
    assert eig <= bound * (1 + 1e-5)
    if name != "sense":  # M F is a projection and 2x2 averaging is tight: the bound is reached
        assert eig > 0.99 * bound


def test_fft_is_centred_orthonormal_and_matches_numpy():
    x = np.random.default_rng(0).standard_normal((2, 16, 12)) + 0j
    k = fft2c(x)
    expected = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"),
                               axes=(-2, -1))
    np.testing.assert_allclose(k, expected, atol=1e-10)
    np.testing.assert_allclose(np.linalg.norm(k), np.linalg.norm(x), rtol=1e-12)
    np.testing.assert_allclose(ifft2c(k), x, atol=1e-10)
    # a constant image has all its energy at the centre sample
    ones = np.ones((8, 8), np.complex64)
    assert np.argmax(np.abs(fft2c(ones))) == np.ravel_multi_index((4, 4), (8, 8))


def test_numpy_round_trip_through_torch_operator():
    mask = vdrad((32, 32), 3.0).mask
    image = (np.random.default_rng(1).standard_normal((32, 32)) + 1j).astype(np.complex64)
    op = CartesianOp(mask)
    kspace = op.forward(torch.from_numpy(image)).numpy()
    np.testing.assert_allclose(kspace, fft2c(image) * mask, atol=1e-5)
    full = CartesianOp(np.ones((32, 32), bool))
    np.testing.assert_allclose(full.adjoint(full.forward(torch.from_numpy(image))).numpy(),
                               image, atol=1e-5)


def test_gradients_flow_through_operators():
    op = SenseOp(torch.ones(8, 8), random_maps(2, 8, 8))
    x = randc(1, 8, 8).requires_grad_()
    op.normal(x).abs().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_block_average_values_and_odd_size_error():
    x = torch.arange(16.0).to(torch.complex64).reshape(1, 4, 4)
    y = BlockAverageOp().forward(x)
    assert torch.allclose(y.real, torch.tensor([[[2.5, 4.5], [10.5, 12.5]]]))
    with pytest.raises(ValueError, match="even"):
        BlockAverageOp().forward(torch.zeros(1, 5, 4, dtype=torch.complex64))


def test_fft1c_matches_numpy_along_any_axis():
    x = np.random.default_rng(3).standard_normal((4, 6, 8)) + 0j
    for axis in range(3):
        expected = np.fft.fftshift(np.fft.fft(np.fft.ifftshift(x, axes=axis), axis=axis,
                                              norm="ortho"), axes=axis)
        np.testing.assert_allclose(fft1c(x, axis=axis), expected, atol=1e-10)
        np.testing.assert_allclose(ifft1c(fft1c(x, axis=axis), axis=axis), x, atol=1e-10)
    t = torch.from_numpy(x)
    torch.testing.assert_close(fft1c(t, axis=1), torch.from_numpy(fft1c(x, axis=1)))

"""Forward operators: adjointness, shapes and their errors, normal operator, norm bound,
numpy/torch agreement."""

import numpy as np
import pytest
import torch

from npgd_recon.core.errors import NpgdError
from npgd_recon.core.fft import fft1c, fft2c, ifft1c, ifft2c
from npgd_recon.core.operators import (
    BlockAverageOp,
    CartesianOp,
    SenseOp,
    SoftSenseOp,
    operator_for,
)
from sampling import vdrad
from tests.conftest import randc

torch.manual_seed(0)


def inner(a, b):
    return torch.vdot(a.reshape(-1).to(torch.complex128), b.reshape(-1).to(torch.complex128))


def random_maps(*shape):
    maps = randc(*shape)
    return maps / maps.abs().pow(2).sum(-3, keepdim=True).sqrt()


def operators(batch=3, ny=40, nx=24, coils=4):
    mask = torch.from_numpy(vdrad((ny, nx), 4.0).mask)
    masks = torch.stack([torch.from_numpy(vdrad((ny, nx), 4.0, seed=s).mask)
                         for s in range(batch)])
    return {
        "cartesian": (CartesianOp(mask), (batch, ny, nx)),
        "cartesian-batched-mask": (CartesianOp(masks), (batch, ny, nx)),
        "sense": (SenseOp(mask, random_maps(coils, ny, nx)), (batch, ny, nx)),
        "sense-batched": (SenseOp(masks, random_maps(batch, coils, ny, nx)), (batch, ny, nx)),
        "soft-sense": (SoftSenseOp(masks, random_maps(batch, 2, coils, ny, nx) / 2 ** 0.5),
                       (batch, 2, ny, nx)),
        "block-average": (BlockAverageOp((ny, nx)), (batch, ny, nx)),
    }


@pytest.mark.parametrize("name", list(operators()))
@pytest.mark.parametrize("dtype, tolerance", [(torch.complex128, 1e-12),
                                              (torch.complex64, 1e-6)])
def test_adjoint_identity(name, dtype, tolerance):
    op, shape = operators()[name]
    for seed in range(3):
        error = op.adjointness_error(shape[0], dtype=dtype,
                                     generator=torch.Generator().manual_seed(seed))
        assert error < tolerance, (name, seed, error)


def test_adjointness_error_catches_a_wrong_adjoint():
    class Unconjugated(SenseOp):  # forgets the conjugate of the maps
        def _adjoint(self, y):
            return (self.maps * ifft2c(y * self.mask)).sum(dim=-3)

    class Scaled(CartesianOp):  # one per cent off
        def _adjoint(self, y):
            return 1.01 * super()._adjoint(y)

    mask = torch.from_numpy(vdrad((40, 24), 4.0).mask)
    assert Unconjugated(mask, random_maps(4, 40, 24)).adjointness_error(3) > 1e-4
    assert Scaled(mask).adjointness_error(3) > 1e-6


@pytest.mark.parametrize("name, ishape, oshape", [
    ("cartesian", (None, 40, 24), (None, 40, 24)),
    ("cartesian-batched-mask", (3, 40, 24), (3, 40, 24)),
    ("sense", (None, 40, 24), (None, 4, 40, 24)),
    ("sense-batched", (3, 40, 24), (3, 4, 40, 24)),
    ("soft-sense", (3, 2, 40, 24), (3, 4, 40, 24)),
    ("block-average", (None, 40, 24), (None, 20, 12)),
])
def test_every_operator_knows_its_shapes_and_produces_them(name, ishape, oshape):
    op, shape = operators()[name]
    assert (op.ishape, op.oshape) == (ishape, oshape)
    y = op.forward(randc(*shape))
    assert y.shape == (shape[0], *oshape[1:])
    assert op.adjoint(y).shape == shape


def test_shared_data_leave_the_batch_free_even_absent():
    mask = torch.from_numpy(vdrad((16, 12), 3.0).mask)
    op = SenseOp(mask, random_maps(2, 16, 12))
    assert op.forward(randc(5, 16, 12)).shape == (5, 2, 16, 12)
    assert op.forward(randc(16, 12)).shape == (2, 16, 12)
    assert op.adjoint(randc(2, 16, 12)).shape == (16, 12)
    # a batch of one beside a batch of three is shared by the three
    assert SenseOp(mask[None], random_maps(3, 2, 16, 12)).ishape == (3, 16, 12)
    assert BlockAverageOp().forward(randc(8, 6)).shape == (4, 3)


@pytest.mark.parametrize("name, method, shape", [
    ("cartesian", "forward", (3, 40, 20)),             # wrong image size
    ("cartesian", "adjoint", (3, 1, 40, 24)),          # an extra axis
    ("cartesian-batched-mask", "forward", (2, 40, 24)),  # wrong batch
    ("cartesian-batched-mask", "normal", (40, 24)),      # a fixed batch cannot be left out
    ("sense", "adjoint", (3, 3, 40, 24)),              # wrong coil count
    ("sense", "forward", (3, 4, 40, 24)),              # k-space given where an image goes
    ("sense-batched", "adjoint", (2, 4, 40, 24)),
    ("soft-sense", "forward", (3, 40, 24)),            # one image where each set needs one
    ("soft-sense", "normal", (3, 3, 40, 24)),          # wrong set count
    ("block-average", "forward", (3, 20, 12)),
    ("block-average", "adjoint", (3, 40, 24)),
])
def test_a_tensor_that_does_not_fit_is_refused_naming_the_operator_and_shapes(name, method,
                                                                              shape):
    op, _ = operators()[name]
    with pytest.raises(NpgdError) as error:
        getattr(op, method)(randc(*shape))
    message = str(error.value)
    assert type(op).__name__ in message
    assert "[" + ", ".join(map(str, shape)) + "]" in message
    ishape = "[" + ", ".join("*" if s is None else str(s) for s in op.ishape) + "]"
    oshape = "[" + ", ".join("*" if s is None else str(s) for s in op.oshape) + "]"
    assert f"{ishape} -> {oshape}" in message


def test_operators_refuse_data_that_do_not_fit_together():
    with pytest.raises(NpgdError, match="CartesianOp: the mask"):
        CartesianOp(torch.ones(16))
    with pytest.raises(NpgdError, match="different image sizes"):
        SenseOp(torch.ones(16, 12), random_maps(2, 16, 10))
    with pytest.raises(NpgdError, match="different batch sizes"):
        SenseOp(torch.ones(2, 16, 12), random_maps(3, 2, 16, 12))
    with pytest.raises(NpgdError, match=r"SoftSenseOp: the maps must be \[batch, set, coil"):
        SoftSenseOp(torch.ones(16, 12), random_maps(2, 16, 12))
    with pytest.raises(NpgdError, match="does not fit"):
        SoftSenseOp(torch.ones(3, 16, 12), random_maps(2, 2, 4, 16, 12))
    with pytest.raises(NpgdError, match="even"):
        BlockAverageOp((15, 12))
    with pytest.raises(NpgdError, match="image shape"):
        BlockAverageOp().adjointness_error()


@pytest.mark.parametrize("name", list(operators()))
def test_normal_is_adjoint_of_forward(name):
    op, shape = operators()[name]
    x = randc(*shape)
    torch.testing.assert_close(op.normal(x), op.adjoint(op.forward(x)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ny, nx", [(40, 24), (41, 24), (40, 23), (9, 7)])
def test_fast_normal_is_adjoint_of_forward_on_odd_sizes_and_weighted_masks(ny, nx):
    """The normal operators fold the FFT's centring into the maps (even sides only) and
    square the mask: equal to ``adjoint(forward(x))`` for odd sides (the shifts) and for a
    weighted (not 0/1) mask, twice in a row (the cached centred maps), with gradients."""
    weights = torch.rand(2, ny, nx)
    maps = random_maps(2, 3, ny, nx).requires_grad_()
    for op in (CartesianOp(weights), SenseOp(weights, maps)):
        for _ in range(2):
            x = randc(2, ny, nx)
            torch.testing.assert_close(op.normal(x), op.adjoint(op.forward(x)), rtol=1e-5,
                                       atol=1e-6)
    op = SenseOp(weights, maps)
    for _ in range(2):  # learned maps are not cached: a second backward works
        op.normal(randc(2, ny, nx)).abs().sum().backward()
    assert maps.grad is not None and bool(maps.grad.abs().sum() > 0)


@pytest.mark.parametrize("name", ["cartesian", "sense", "soft-sense", "block-average"])
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
    if "sense" not in name:  # M F is a projection and 2x2 averaging is tight: the bound is reached
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
    with pytest.raises(NpgdError, match="BlockAverageOp.*even"):
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


def test_support_is_where_some_coil_sees_the_image():
    """SENSE with maps that are 0 outside an object (ESPIRiT's) has that object as support,
    and no measurement depends on what lies outside it; full maps and single-coil Cartesian
    operators see every pixel (None)."""
    mask = torch.from_numpy(vdrad((24, 16), 4.0).mask)
    maps = randc(2, 3, 24, 16)
    maps[0, :, :5] = 0  # no coil sees the top 5 rows of the first problem
    maps[1, :, :, -2:] = 0  # nor the last 2 columns of the second
    op = SenseOp(mask, maps)
    expected = torch.ones(2, 24, 16, dtype=torch.bool)
    expected[0, :5], expected[1, :, -2:] = False, False
    assert torch.equal(op.support, expected)
    x = randc(2, 24, 16)
    torch.testing.assert_close(op(x), op(x * expected))
    assert SenseOp(mask, randc(3, 24, 16)).support is None
    assert CartesianOp(mask).support is None and BlockAverageOp().support is None


def test_soft_sense_is_sense_per_set_and_reports_the_first_set():
    """Several sets of maps: the measurement is the sum of each set's SENSE measurement, the
    adjoint each set's SENSE adjoint; with a second set of zeros it is plain SENSE, and the
    reported image (``output_image``) is the first set's; ``operator_for`` picks it for 5-D
    maps, and its support is per set."""
    mask = torch.from_numpy(vdrad((24, 16), 4.0).mask)
    maps = random_maps(2, 2, 3, 24, 16) / 2 ** 0.5
    maps[:, 1, :, 4:-4] = 0  # the second set only near the top and bottom edges
    op = operator_for(mask, maps)
    assert type(op) is SoftSenseOp
    x = randc(2, 2, 24, 16)
    sets = [SenseOp(mask, maps[:, m]) for m in range(2)]
    torch.testing.assert_close(op(x), sets[0](x[:, 0]) + sets[1](x[:, 1]))
    y = op(x)
    torch.testing.assert_close(op.adjoint(y), torch.stack([s.adjoint(y) for s in sets], 1))
    torch.testing.assert_close(op.output_image(x), x[:, 0])
    assert op.support.shape == (2, 2, 24, 16)
    assert bool(op.support[:, 0].all()) and not bool(op.support[:, 1, 4:-4].any())
    one = maps.clone()
    one[:, 1] = 0
    x[:, 1] = 0
    torch.testing.assert_close(operator_for(mask, one)(x), SenseOp(mask, one[:, 0])(x[:, 0]))

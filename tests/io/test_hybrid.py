"""The 3-D hybrid stack kept as acquired lines against the dense array it stands for."""

import numpy as np
import pytest

from npgd_recon.io.hybrid import HybridStack

SHAPE = (7, 3, 9, 8)  # [x, coil, ky, kz]


@pytest.fixture(scope="module")
def stacks():
    """A HybridStack of random profiles at 40 % of (ky, kz) and its dense equivalent."""
    rng = np.random.default_rng(0)
    nx, coils, ny, nz = SHAPE
    mask = rng.random((ny, nz)) < 0.4
    rows, cols = np.nonzero(mask)
    profiles = (rng.standard_normal((len(rows), coils, nx))
                + 1j * rng.standard_normal((len(rows), coils, nx))).astype(np.complex64)
    dense = np.zeros(SHAPE, np.complex64)
    dense[:, :, rows, cols] = profiles.transpose(2, 1, 0)
    return HybridStack(profiles, rows, cols, (ny, nz)), dense, mask


@pytest.mark.parametrize("key", [
    slice(None), 0, -1, slice(2, 5), (slice(1, 6, 2), slice(None), slice(2, 7), slice(1, 5)),
    (Ellipsis, slice(3, 6)), (3, 1), slice(None, None, -1),
    (slice(5, 1, -2), 0, slice(None, None, -1), 4), (slice(2, 2),)])
def test_indexing_gives_the_dense_arrays_planes(stacks, key):
    stack, dense, _ = stacks
    out = stack[key]
    assert out.dtype == np.complex64
    np.testing.assert_array_equal(out, dense[key])


def test_shape_length_iteration_and_conversion_match_the_dense_array(stacks):
    stack, dense, mask = stacks
    assert stack.shape == SHAPE and len(stack) == SHAPE[0] and stack.ndim == 4
    np.testing.assert_array_equal(np.asarray(stack), dense)
    np.testing.assert_array_equal(np.stack(list(stack)), dense)
    assert stack.nbytes < 0.5 * dense.nbytes  # 40 % of the points, plus their positions


def test_masked_keeps_only_the_profiles_inside_the_pattern(stacks):
    stack, dense, mask = stacks
    keep = np.zeros_like(mask)
    keep[::2] = True
    masked = stack.masked(keep)
    np.testing.assert_array_equal(np.abs(masked[:]).sum(axis=(0, 1)) > 0, mask & keep)
    np.testing.assert_array_equal(masked[:], dense * keep)


def test_fancy_and_out_of_range_indices_are_refused(stacks):
    stack = stacks[0]
    with pytest.raises(TypeError, match="integers and slices"):
        stack[[0, 2]]
    with pytest.raises(IndexError):
        stack[SHAPE[0]]
    with pytest.raises(IndexError, match="too many indices"):
        stack[0, 0, 0, 0, 0]

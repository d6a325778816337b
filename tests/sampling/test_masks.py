"""Sampling patterns: exact rate, calibration, density, view order, seeding, bad arguments."""

import numpy as np
import pytest

from sampling import make_mask, poisson, vd_lines, vdrad
from sampling.pattern import calib_box, default_calib, elliptical_radius

SHAPES = [(200, 100), (256, 128), (160, 128), (320, 256), (201, 97), (97, 131)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("accel", [2.0, 5.0, 8.0, 12.5])
def test_vdrad_rate_is_exact(shape, accel):
    pattern = vdrad(shape, accel)
    assert pattern.mask.shape == shape and pattern.mask.dtype == bool
    assert pattern.mask.sum() == round(np.prod(shape) / accel)
    assert abs(pattern.rate - 1 / accel) <= 0.005 / accel


@pytest.mark.parametrize("shape", SHAPES)
def test_vdrad_calibration_box_fully_sampled(shape):
    pattern = vdrad(shape, 5.0)
    assert pattern.mask[calib_box(shape, default_calib(shape))].all()
    custom = vdrad(shape, 5.0, calib=(8, 6))
    assert custom.mask[calib_box(shape, (8, 6))].all()


@pytest.mark.parametrize("shape", SHAPES)
def test_vdrad_corners_empty_and_density_falls_with_radius(shape):
    pattern = vdrad(shape, 5.0)
    radius = elliptical_radius(shape)
    assert not pattern.mask[radius > 1.0].any()
    edges = np.linspace(0, 1, 11)
    density = [pattern.mask[(radius >= lo) & (radius < hi)].mean()
               for lo, hi in zip(edges[:-1], edges[1:])]
    assert np.all(np.diff(density) <= 0.01), density
    assert density[0] > 3 * density[-1]


@pytest.mark.parametrize("shape", SHAPES)
def test_vdrad_order_covers_mask_exactly_once_centre_outward(shape):
    pattern = vdrad(shape, 5.0)
    order = pattern.order
    assert order.shape == (pattern.mask.sum(), 2)
    flat = np.ravel_multi_index(order.T, shape)
    assert np.unique(flat).size == flat.size
    rebuilt = np.zeros(shape, dtype=bool)
    rebuilt[order[:, 0], order[:, 1]] = True
    np.testing.assert_array_equal(rebuilt, pattern.mask)
    # within each spoke the radius never decreases; a new spoke restarts near the centre
    radius = elliptical_radius(shape)[order[:, 0], order[:, 1]]
    restarts = np.flatnonzero(np.diff(radius) < 0)
    assert restarts.size > 10
    assert np.all(radius[restarts + 1] < 0.5)


def test_vdrad_spacing_grows_along_a_spoke():
    """Sample gaps along the first spoke grow with |k| (power law)."""
    pattern = vdrad((256, 256), 5.0, calib=(0, 0), power=2.0)
    radius = elliptical_radius((256, 256))[pattern.order[:, 0], pattern.order[:, 1]]
    end = np.flatnonzero(np.diff(radius) < 0)[0] + 1
    gaps = np.diff(radius[:end])
    outer, inner = gaps[len(gaps) // 2:].mean(), gaps[: len(gaps) // 2].mean()
    assert outer > 2 * inner


@pytest.mark.parametrize("generator", [vdrad, poisson, vd_lines])
def test_seeding(generator):
    a = generator((128, 96), 4.0, seed=1)
    b = generator((128, 96), 4.0, seed=1)
    c = generator((128, 96), 4.0, seed=2)
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_array_equal(a.order, b.order)
    assert not np.array_equal(a.mask, c.mask)


@pytest.mark.parametrize("shape", [(200, 100), (320, 256), (201, 97)])
@pytest.mark.parametrize("accel", [3.0, 5.0, 8.0])
def test_poisson_rate_exact_and_calibrated(shape, accel):
    pattern = poisson(shape, accel)
    assert pattern.mask.sum() == round(np.prod(shape) / accel)
    assert pattern.mask[calib_box(shape, default_calib(shape))].all()
    assert not pattern.mask[elliptical_radius(shape) > 1.0].any()
    flat = np.ravel_multi_index(pattern.order.T, shape)
    assert np.array_equal(np.sort(flat), np.flatnonzero(pattern.mask.ravel()))


@pytest.mark.parametrize("ny", [100, 128, 200, 256, 320])
@pytest.mark.parametrize("accel", [3.0, 4.0, 5.0, 7.0])
def test_lines_whole_readouts_and_rate(ny, accel):
    pattern = vd_lines((ny, 64), accel)
    rows = pattern.mask.any(axis=1)
    assert np.array_equal(pattern.mask, np.repeat(rows[:, None], 64, axis=1))
    assert abs(pattern.rate - 1 / accel) <= 0.005
    assert rows[ny // 2 - 2: ny // 2 + 2].all()
    # centre-out line order, every point once
    assert pattern.order.shape == (pattern.mask.sum(), 2)
    first_lines = pattern.order[::64, 0]
    assert np.all(np.diff(np.abs(first_lines - ny // 2)) >= 0)


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: vdrad((200, 100), 0.5), "accel"),
        (lambda: vdrad((200, 100), float("nan")), "accel"),
        (lambda: vdrad((200, 100), 500.0), "calibration region"),
        (lambda: vdrad((200, 100), 1.1), "raise accel"),
        (lambda: vdrad((200,), 5.0), "dimensions"),
        (lambda: vdrad((), 5.0), "dimensions"),
        (lambda: vdrad((0, 100), 5.0), "at least"),
        (lambda: poisson((200, 100), 400.0), "calibration region"),
        (lambda: vd_lines((100, 64), 50.0), "calibration region"),
        (lambda: make_mask("spiral", (64, 64)), "unknown mask kind"),
    ],
)
def test_bad_arguments_raise_value_error(call, words):
    with pytest.raises(ValueError, match=words):
        call()

"""The natural-image source: photos that installed packages ship, made complex."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from npgd_recon.data import photos as photos_mod
from npgd_recon.data.photos import PACKAGES, PhotoSource
from npgd_recon.data.sources import build_source
from npgd_recon.data.undersampled import UndersampledSet


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_each_installed_package_gives_complex_images_peaking_at_one(package):
    if not _installed(package):
        with pytest.raises(ValueError, match=f"package '{package}' is not installed") as error:
            build_source({"kind": "photos", "package": package})
        assert "\n" not in str(error.value) and PACKAGES[package][1] in str(error.value)
        return
    source = build_source({"kind": "photos", "package": package, "max_size": 128})
    assert isinstance(source, PhotoSource) and len(source) == len(source.names) >= 2
    assert all(name.startswith(f"{package}:") for name in source.names)
    rng = np.random.default_rng(0)
    for i in range(len(source)):
        image = source.image(i, rng)
        assert image.dtype == np.complex64 and image.ndim == 2
        assert max(image.shape) <= 128 and image.shape[0] % 2 == image.shape[1] % 2 == 0
        magnitude = np.abs(image)
        assert magnitude.max() <= 1 + 1e-6 and magnitude.max() > 0.99
        assert np.ptp(np.angle(image[magnitude > 0.1])) > 0.1  # a phase, not a real image
        assert magnitude.std() > 0.02  # an image, not a constant


def test_the_phase_is_drawn_from_the_generator_and_the_magnitude_is_fixed():
    pytest.importorskip("skimage")
    source = PhotoSource("skimage", max_size=64)
    a, b = (source.image(0, np.random.default_rng(s)) for s in (1, 2))
    np.testing.assert_allclose(np.abs(a), np.abs(b), rtol=1e-5, atol=1e-6)
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(source.image(0, np.random.default_rng(1)), a)


def test_colour_photos_are_turned_to_grey_and_shrunk(monkeypatch):
    colour = np.zeros((40, 60, 3), np.uint8)
    colour[..., 1] = 200  # pure green: luminance 0.7152 * 200, the only value
    colour[:10, :, 0] = 255
    monkeypatch.setitem(PACKAGES, "fake", ("fake", "fake-pip", ("a",)))
    monkeypatch.setattr(photos_mod, "_installed", lambda package: package == "fake")
    monkeypatch.setattr(photos_mod, "_load", lambda package: [("a", colour), ("b", colour)])
    source = PhotoSource("fake", max_size=30)
    assert source.names == ["fake:a"]  # the same photo twice is taken once
    magnitude = np.abs(source.image(0, np.random.default_rng(0)))
    assert magnitude.shape == (20, 30)
    red_rows = 0.2126 * 255 + 0.7152 * 200
    np.testing.assert_allclose(magnitude[-5:], 0.7152 * 200 / red_rows, rtol=1e-3)
    np.testing.assert_allclose(magnitude[:3], 1.0, rtol=1e-5)


def test_all_takes_the_installed_packages_and_skips_the_missing(monkeypatch):
    monkeypatch.setattr(photos_mod, "_installed", lambda package: package == "pywt")
    if not _installed("pywt"):
        pytest.skip("needs PyWavelets")
    source = PhotoSource("all", max_size=64)
    assert source.names and all(n.startswith("pywt:") for n in source.names)
    monkeypatch.setattr(photos_mod, "_installed", lambda package: False)
    with pytest.raises(ValueError, match="none of skimage, pywt, sklearn is installed"):
        PhotoSource("all")


@pytest.mark.parametrize("spec, message", [
    ({"package": "pydicom"}, "unknown package 'pydicom'; use skimage, pywt, sklearn or all"),
    ({"package": "skimage", "max_size": 2}, "max_size must be a whole number >= 8"),
])
def test_a_bad_photos_table_is_a_one_line_error(spec, message):
    with pytest.raises(ValueError, match=message) as error:
        build_source({"kind": "photos", **spec})
    assert "\n" not in str(error.value)


def test_photos_feed_the_training_set_as_a_minority():
    pytest.importorskip("pywt")
    photos = build_source({"kind": "photos", "package": "pywt"})
    phantoms = build_source({"kind": "phantom", "count": 20, "size": 64})
    data = UndersampledSet([phantoms, photos], 23, seed=0)  # no augmentation: every image once
    shapes = [tuple(data[i].target.shape) for i in range(len(data))]
    assert shapes.count((256, 256)) == len(photos) and shapes.count((64, 64)) == 20

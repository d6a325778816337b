"""Training data: every source kind, fresh masks per sample, deterministic validation items."""

import h5py
import numpy as np
import pytest

from npgd_recon.data import Augment, FastMRISource, PhantomSource, UndersampledSet, build_source
from npgd_recon.fft import fft2c


@pytest.fixture
def sources(tmp_path):
    volume = np.zeros((20, 24, 16), np.float32)
    volume[4:16, 6:18, 3:13] = 1.0
    np.save(tmp_path / "vol.npy", volume)
    image = np.zeros((2, 32, 28), np.complex64)
    image[:, 8:24, 6:20] = 1 + 1j
    with h5py.File(tmp_path / "fastmri.h5", "w") as f:
        f["kspace"] = fft2c(image[:, None].repeat(3, axis=1))  # [slice, coil, ky, kx]
    return tmp_path


def test_every_source_kind(sources):
    npy = build_source({"kind": "npy", "path": str(sources / "vol.npy")})
    assert len(npy) > 0 and np.iscomplexobj(npy.image(0, np.random.default_rng(0)))
    fastmri = build_source({"kind": "fastmri", "paths": [str(sources / "fastmri.h5")]})
    assert isinstance(fastmri, FastMRISource) and len(fastmri) == 2
    image = fastmri.image(1, np.random.default_rng(0))
    assert image.shape == (32, 28)
    np.testing.assert_allclose(np.abs(image)[8:24, 6:20], np.sqrt(3 * 2), rtol=1e-4)
    assert len(PhantomSource(5, size=32)) == 5
    with pytest.raises(ValueError, match="unknown data source"):
        build_source({"kind": "dicom-folder"})


def test_training_items_get_fresh_exact_rate_masks(sources):
    dataset = UndersampledSet([PhantomSource(10, size=48)], 6, augment=Augment((32, 32)))
    items = [dataset[i] for i in range(3)]
    for item in items:
        assert item["target"].shape == item["kspace"].shape == item["mask"].shape == (32, 32)
        assert item["mask"].sum() == round(32 * 32 / 5)
        assert np.all(item["kspace"].numpy()[item["mask"].numpy() == 0] == 0)
    assert not np.array_equal(items[0]["mask"], items[1]["mask"])
    np.testing.assert_array_equal(dataset[1]["kspace"], items[1]["kspace"])  # deterministic


def test_validation_items_are_fixed_images(sources):
    source = build_source({"kind": "npy", "path": str(sources / "vol.npy")})
    dataset = UndersampledSet([source], 4, noise=(0.0, 0.0))
    item = dataset[0]
    assert item["target"].shape[0] % 2 == 0 and item["target"].shape[1] % 2 == 0
    full = fft2c(item["target"].numpy()) * item["mask"].numpy()
    np.testing.assert_allclose(item["kspace"].numpy(), full, atol=1e-5)
    with pytest.raises(ValueError, match="empty"):
        UndersampledSet([PhantomSource(0)], 1)

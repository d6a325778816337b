"""Source volumes: NIfTI orientation and voxel, .npy stacks, slice choice, resampling that keeps
the field of view, peak normalisation, and errors that say what was wrong."""

import nibabel
import numpy as np
import pytest

from npgd_recon.core.errors import NpgdError
from npgd_recon.sim.volumes import load_nifti, load_npy, peak_normalised, resample, slice_range

ZOOMS = (1.0, 1.5, 2.0)  # NIfTI i, j, k in mm


@pytest.fixture(scope="module")
def nifti(tmp_path_factory):
    """A 4 x 6 x 5 volume whose voxel (i, j, k) holds 100 i + 10 j + k."""
    i, j, k = np.meshgrid(np.arange(4), np.arange(6), np.arange(5), indexing="ij")
    image = nibabel.Nifti1Image((100 * i + 10 * j + k).astype(np.float32), np.diag([*ZOOMS, 1]))
    image.header.set_zooms(ZOOMS)
    path = tmp_path_factory.mktemp("nifti") / "v.nii.gz"
    nibabel.save(image, path)
    return path


def test_nifti_stacks_along_k_with_the_plane_turned_and_its_voxel(nifti):
    stack, voxel = load_nifti(nifti, seed=3)
    assert stack.shape == (5, 6, 4) and np.iscomplexobj(stack)
    assert voxel == (ZOOMS[2], ZOOMS[1], ZOOMS[0])  # rows run along j, columns along i
    magnitude = np.abs(stack)
    np.testing.assert_allclose(magnitude[2], np.rot90(100 * np.arange(4)[:, None]
                                                      + 10 * np.arange(6)[None] + 2), atol=1e-3)
    assert np.ptp(np.angle(stack[:, 1:, 1:])) > 0.1  # a smooth random phase, seeded
    np.testing.assert_array_equal(load_nifti(nifti, seed=3)[0], stack)


def test_slices_are_all_the_central_n_or_a_range():
    assert slice_range(None, 10) == slice(0, 10)
    assert slice_range("4", 10) == slice(3, 7)
    assert slice_range("2:5", 10) == slice(2, 5)
    for bad in ("2:11", "x", "0"):
        with pytest.raises(NpgdError, match="slices"):
            slice_range(bad, 10)


def test_npy_image_or_stack(tmp_path):
    np.save(tmp_path / "one.npy", np.ones((6, 4)))
    np.save(tmp_path / "many.npy", np.arange(5 * 6 * 4).reshape(5, 6, 4))
    np.save(tmp_path / "bad.npy", np.ones(4))
    assert load_npy(tmp_path / "one.npy").shape == (1, 6, 4)
    assert load_npy(tmp_path / "many.npy", slices="1:3")[0, 0, 0] == 24
    with pytest.raises(NpgdError, match=r"\[y, x\] or \[n, y, x\]"):
        load_npy(tmp_path / "bad.npy")


def test_resampling_keeps_the_field_of_view_and_the_complex_values():
    stack = np.full((4, 6, 8), 2 - 1j)
    resampled, voxel = resample(stack, (2, 12, 4), (3.0, 1.0, 1.0))
    assert resampled.shape == (2, 12, 4)
    np.testing.assert_allclose(resampled, 2 - 1j)
    assert voxel == (6.0, 0.5, 2.0)
    assert resample(stack, (4, 3, 4))[1] is None


def test_peak_normalised_and_empty_sources_refused():
    out = peak_normalised(np.array([[[3.0, -4.0j]]]))
    assert out.dtype == np.complex64 and np.abs(out).max() == 1
    for bad in (np.zeros((1, 2, 2)), np.array([[[1.0, np.nan]]])):
        with pytest.raises(NpgdError, match="empty or holds NaN"):
            peak_normalised(bad)


def test_a_file_that_is_not_nifti_is_named(tmp_path):
    path = tmp_path / "not.nii"
    path.write_bytes(b"nonsense" * 100)
    with pytest.raises(NpgdError, match="not.nii"):
        load_nifti(path)

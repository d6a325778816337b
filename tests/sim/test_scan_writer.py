"""Simulated scanner files: coil maps, header and acquisition headers (read back with the
ismrmrd package and the C++ library), acquisition order, noise, and the npgd-simulate CLI."""

import subprocess

import h5py
import ismrmrd
import nibabel
import numpy as np
import pytest

from npgd_recon.cli.simulate import main
from npgd_recon.core.fft import ifft2c
from npgd_recon.io.ismrmrd_file import read_raw
from npgd_recon.sim.coils import synthetic_coil_maps
from npgd_recon.sim.phantoms import shepp_logan
from npgd_recon.sim.phase import smooth_phase
from npgd_recon.sim.scan_writer import ScanSettings, write_scan
from sampling import multicoil_calib, vd_lines, vdrad
from tests.conftest import needs_ismrmrd_tools


def test_coil_maps_are_normalised_and_smooth():
    maps = synthetic_coil_maps(8, (32, 24))
    assert maps.shape == (8, 32, 24) and maps.dtype == np.complex64
    np.testing.assert_allclose((np.abs(maps) ** 2).sum(0), 1.0, rtol=1e-5)
    assert np.abs(np.diff(maps, axis=-1)).max() < 0.2
    assert np.abs(maps[:, 4, 4]).std() > 0.05  # coils differ away from the centre
    volume = synthetic_coil_maps(4, (8, 16, 12), oversampling=2)
    assert volume.shape == (4, 8, 16, 24)
    np.testing.assert_allclose((np.abs(volume) ** 2).sum(0), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(synthetic_coil_maps(1, (4, 6)), np.ones((1, 4, 6)))


def test_coil_maps_of_a_few_coils_are_those_of_the_whole_set():
    whole = synthetic_coil_maps(6, (6, 10, 8), oversampling=2)
    np.testing.assert_array_equal(synthetic_coil_maps(6, (6, 10, 8), 2, range(2, 5)), whole[2:5])


@pytest.mark.parametrize("coils", [2, 8, 32])
def test_loop_array_maps_are_normalised_localised_and_selectable(coils):
    maps = synthetic_coil_maps(coils, (48, 40), geometry="loops")
    assert maps.shape == (coils, 48, 40) and maps.dtype == np.complex64
    np.testing.assert_allclose((np.abs(maps) ** 2).sum(0), 1.0, rtol=1e-5)
    y, x = np.meshgrid(np.arange(48) - 24, np.arange(40) - 20, indexing="ij")
    for c in range(coils):  # each loop sees most on its own side of the ring
        peak = np.unravel_index(np.abs(maps[c]).argmax(), maps[c].shape)
        angle = np.arctan2(y[peak], x[peak] * 48 / 40)
        assert abs(np.angle(np.exp(1j * (angle - 2 * np.pi * c / coils)))) < np.pi / 3
    birdcage = synthetic_coil_maps(coils, (48, 40))
    # another array, not a relabelling: the coils' joint sensitivity S_0 conj(S_1) differs
    assert np.abs(maps[0] * np.conj(maps[1]) - birdcage[0] * np.conj(birdcage[1])).max() > 0.1
    np.testing.assert_array_equal(
        synthetic_coil_maps(coils, (48, 40), 1, range(1, 2), "loops"), maps[1:2])
    volume = synthetic_coil_maps(coils, (6, 10, 8), 2, geometry="loops")
    np.testing.assert_allclose((np.abs(volume) ** 2).sum(0), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(synthetic_coil_maps(coils, (6, 10, 8), 2, range(1, 2), "loops"),
                                  volume[1:2])


def test_loop_field_on_its_axis_is_biot_savarts():
    """On a loop's axis the field is along the axis, ``2 pi a^2 / (a^2 + d^2)^1.5`` for a unit
    current (the sum leaves out mu_0 / 4 pi; the distance is softened by a / 20)."""
    from npgd_recon.sim.coils import LOOP_RING, _loop

    coils = 8
    radius = min(1.0, 1.1 * np.pi * LOOP_RING / coils)
    x = np.linspace(-1.0, 1.2, 12)[None, :]  # coil 0 sits at x = LOOP_RING, facing -x
    field = _loop(0, coils, [np.zeros((1, 1)), x], 2)
    d = LOOP_RING - x
    expected = 2 * np.pi * radius**2 / (radius**2 + d**2 + (radius / 20) ** 2) ** 1.5
    np.testing.assert_allclose(np.abs(field), expected, rtol=1e-6)
    np.testing.assert_allclose(field.imag, 0.0, atol=1e-9)  # along x: no B_y on the axis


def test_an_unknown_coil_geometry_is_refused(tmp_path):
    with pytest.raises(ValueError, match="coil geometry"):
        synthetic_coil_maps(4, (8, 8), geometry="helmet")
    with pytest.raises(ValueError, match="coil geometry"):
        write_scan(tmp_path / "x.h5", np.ones((1, 8, 8)),
                   settings=ScanSettings(coils=4, coil_geometry="helmet"))
    assert not list(tmp_path.iterdir())


def test_cli_writes_a_loop_array_scan_whose_coil_images_are_its_maps(tmp_path):
    out = tmp_path / "loops.h5"
    assert main(["--phantom", "shepp-logan", "--matrix", "32x24", "--coils", "4",
                 "--coil-geometry", "loops", "--noise-readouts", "0", "--out", str(out)]) == 0
    volume = read_raw(out).volumes[0]
    coil_images = ifft2c(np.asarray(volume.kspace))[0]  # [coil, y, x]
    maps = synthetic_coil_maps(4, (32, 24), geometry="loops")
    combined = (np.conj(maps) * coil_images).sum(0)  # the image, through its own maps
    np.testing.assert_allclose(coil_images, maps * combined[None], atol=1e-5)
    birdcage = synthetic_coil_maps(4, (32, 24))
    assert np.abs(coil_images - birdcage * (np.conj(birdcage) * coil_images).sum(0)).max() > 1e-2


@pytest.mark.parametrize("volumetric", [False, True])
def test_coils_encoded_in_groups_read_back_as_the_whole_set(tmp_path, volumetric):
    """More coils than COIL_GROUP: every group's readouts land at their coils and lines."""
    from npgd_recon.sim.scan_writer import COIL_GROUP

    coils = 2 * COIL_GROUP + 1
    shape = (8, 16, 12)
    image = shepp_logan(shape)
    truth = write_scan(tmp_path / "g.h5", image, volumetric=volumetric,
                       settings=ScanSettings(coils=coils, noise_readouts=0))
    lean = write_scan(tmp_path / "lean.h5", image, volumetric=volumetric,
                      settings=ScanSettings(coils=coils, noise_readouts=0), keep_maps=False)
    assert lean.maps is None and truth.maps.shape == (coils, *shape)
    volume = read_raw(tmp_path / "g.h5").volumes[0]
    coil_images = ifft2c(np.asarray(volume.kspace))  # [problem, coil, plane]
    expected = truth.maps * image[None]  # [coil, slice|z, y, x]
    expected = expected.transpose(3, 0, 2, 1) if volumetric else expected.transpose(1, 0, 2, 3)
    np.testing.assert_allclose(coil_images, expected, atol=1e-5)


def test_smooth_phase_is_smooth_and_seeded():
    phase = smooth_phase((2, 32, 32), seed=1)
    assert phase.shape == (2, 32, 32) and np.abs(phase).max() <= np.pi + 1e-6
    assert np.abs(np.diff(phase, axis=-1)).max() < 0.5
    assert not np.allclose(phase, smooth_phase((2, 32, 32), seed=2))


def test_header_and_acquisitions_read_by_ismrmrd_package(tmp_path):
    pattern = vd_lines((32, 24), 2.0, seed=0)
    settings = ScanSettings(coils=2, oversampling=2, noise_readouts=8, voxel_mm=(1.5, 1.0))
    write_scan(tmp_path / "h.h5", shepp_logan((2, 32, 24)), pattern=pattern, settings=settings)
    with ismrmrd.Dataset(str(tmp_path / "h.h5"), "dataset", mode="r") as dataset:
        header = ismrmrd.xsd.CreateFromDocument(dataset.read_xml_header())
        acquisitions = [dataset.read_acquisition(i)
                        for i in range(dataset.number_of_acquisitions())]
    encoding = header.encoding[0]
    assert encoding.trajectory.value == "cartesian"
    assert (encoding.encodedSpace.matrixSize.x, encoding.reconSpace.matrixSize.x) == (48, 24)
    assert encoding.encodedSpace.fieldOfView_mm.x == 48.0
    assert encoding.reconSpace.fieldOfView_mm.y == 48.0
    assert encoding.encodingLimits.kspace_encoding_step_1.center == 16
    assert header.acquisitionSystemInformation.receiverChannels == 2
    assert len(acquisitions) == 8 + 2 * pattern.mask[:, 0].sum()
    noise = [a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT) for a in acquisitions]
    assert all(noise[:8]) and not any(noise[8:])
    image = acquisitions[8:]
    assert image[0].is_flag_set(ismrmrd.ACQ_FIRST_IN_SLICE)
    assert image[-1].is_flag_set(ismrmrd.ACQ_LAST_IN_MEASUREMENT)
    assert {a.idx.slice for a in image} == {0, 1}
    assert sorted({a.idx.kspace_encode_step_1 for a in image}) == list(
        np.flatnonzero(pattern.mask[:, 0]))
    first = image[0]
    assert (first.number_of_samples, first.center_sample, first.active_channels) == (48, 24, 2)
    assert first.data.shape == (2, 48) and first.sample_time_us == 5.0
    assert list(first.read_dir) == [1, 0, 0] and list(first.slice_dir) == [0, 0, 1]
    assert list(image[-1].position) == [0, 0, 1.5]


def test_3d_readouts_follow_the_vdrad_order(tmp_path):
    pattern = vdrad((24, 16), 4.0, seed=3)
    truth = write_scan(tmp_path / "v.h5", shepp_logan((16, 24, 20)), volumetric=True,
                       pattern=pattern, settings=ScanSettings(noise_readouts=0))
    with h5py.File(tmp_path / "v.h5", "r") as file:
        idx = file["dataset/data"].fields("head")[:]["idx"]
    np.testing.assert_array_equal(idx["kspace_encode_step_1"], pattern.order[:, 0])
    np.testing.assert_array_equal(idx["kspace_encode_step_2"], pattern.order[:, 1])
    np.testing.assert_array_equal(truth.mask, pattern.mask)


def test_noise_level_matches_the_returned_covariance(tmp_path):
    truth = write_scan(tmp_path / "n.h5", np.zeros((1, 64, 64)),
                       settings=ScanSettings(coils=2, noise=0.1, noise_readouts=0, seed=5))
    kspace = read_raw(tmp_path / "n.h5").volumes[0].kspace[0].reshape(2, -1)
    measured = kspace @ kspace.conj().T / kspace.shape[1]
    np.testing.assert_allclose(measured, truth.noise_covariance, atol=0.1 * 0.1 ** 2 * 2)


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="echo_fraction"):
        write_scan(tmp_path / "x.h5", np.ones((1, 8, 8)), settings=ScanSettings(echo_fraction=0.3))
    with pytest.raises(ValueError, match="does not match"):
        write_scan(tmp_path / "x.h5", np.ones((1, 8, 8)), pattern=np.ones(6, dtype=bool))
    with pytest.raises(ValueError, match="finite"):
        write_scan(tmp_path / "x.h5", np.full((1, 8, 8), np.nan))
    assert not list(tmp_path.iterdir())


@needs_ismrmrd_tools
def test_ismrmrd_cpp_library_reconstructs_the_simulated_file(tmp_path):
    path = tmp_path / "cpp.h5"
    truth = write_scan(path, shepp_logan((1, 64, 48)),
                       settings=ScanSettings(coils=3, oversampling=2))
    subprocess.run(["ismrmrd_recon_cartesian_2d", str(path)], check=True, capture_output=True)
    with h5py.File(path, "r") as file:
        image = np.squeeze(file["dataset/cpp/data"][:])
    assert image.shape == (64, 48)
    assert np.corrcoef(image.ravel(), np.abs(truth.image[0]).ravel())[0, 1] > 0.999


# ------------------------------------------------------------------------------------ CLI


def test_cli_phantom_2d(tmp_path, capsys):
    out = tmp_path / "p.h5"
    assert main(["--phantom", "shepp-logan", "--matrix", "64x48", "--slices", "3", "--coils",
                 "4", "--noise", "0.01", "--out", str(out)]) == 0
    assert "3-slice 2-D" in capsys.readouterr().out
    study = read_raw(out)
    assert study.volumes[0].kspace.shape == (3, 4, 64, 48) and study.volumes[0].fully_sampled
    assert study.whitener is not None


def test_cli_phantom_3d_undersampled(tmp_path):
    out = tmp_path / "p3.h5"
    assert main(["--phantom", "shepp-logan", "--3d", "--matrix", "32x20x24", "--coils", "2",
                 "--undersample", "4", "--seed", "7", "--out", str(out)]) == 0
    volume = read_raw(out).volumes[0]
    assert volume.kspace.shape == (24, 2, 32, 20)
    expected = vdrad((32, 20), 4.0, seed=7, calib=multicoil_calib((32, 20))).mask
    np.testing.assert_array_equal(volume.mask[0], expected)


def test_cli_nifti_slices_and_matrix(tmp_path):
    data = np.random.default_rng(0).uniform(0, 100, (20, 24, 6)).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(data, np.eye(4)), tmp_path / "vol.nii.gz")
    out = tmp_path / "n.h5"
    assert main(["--nifti", str(tmp_path / "vol.nii.gz"), "--slices", "1:4", "--matrix",
                 "16x12", "--oversampling", "1", "--out", str(out)]) == 0
    kspace = read_raw(out).volumes[0].kspace
    assert kspace.shape == (3, 1, 16, 12)
    assert np.abs(np.angle(kspace.sum())) > 0  # complex object: smooth phase was added


def test_cli_npy_round_trip(tmp_path):
    image = (np.arange(2 * 16 * 12).reshape(2, 16, 12) + 1j).astype(np.complex64)
    np.save(tmp_path / "x.npy", image)
    out = tmp_path / "x.h5"
    assert main(["--npy", str(tmp_path / "x.npy"), "--noise-readouts", "0", "--out",
                 str(out)]) == 0
    recon = ifft2c(read_raw(out).volumes[0].kspace[:, 0])
    np.testing.assert_allclose(recon, image / np.abs(image).max(), atol=1e-5)


@pytest.mark.parametrize("args, message", [
    (["--phantom", "shepp-logan", "--undersample", "3", "--mask", "vdrad"], "use --mask lines"),
    (["--phantom", "shepp-logan", "--3d", "--matrix", "32x20"], "NYxNZxNX"),
    (["--phantom", "shepp-logan", "--slices", "2:5"], "slice count"),
    (["--phantom", "shepp-logan", "--echo-fraction", "0.2"], "echo_fraction"),
    (["--npy", "missing.npy"], "missing.npy"),
])
def test_cli_errors_are_one_line_exit_2(tmp_path, capsys, args, message):
    assert main([*args, "--out", str(tmp_path / "bad.h5")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_cli_refuses_to_overwrite_without_force(tmp_path, capsys):
    out = tmp_path / "o.h5"
    out.write_bytes(b"keep")
    assert main(["--phantom", "shepp-logan", "--matrix", "16x16", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and out.read_bytes() == b"keep"
    assert main(["--phantom", "shepp-logan", "--matrix", "16x16", "--out", str(out),
                 "--force"]) == 0
    assert read_raw(out).volumes[0].kspace.shape == (1, 1, 16, 16)

"""read_raw: round trips through simulated scans, masks, prewhitening, oversampling, echo
placement, skipped/calibration readouts, files from the ISMRMRD tools, and corrupt files."""

import logging
import shutil
import subprocess

import h5py
import ismrmrd
import numpy as np
import pytest
from ismrmrd import xsd

from npgd_recon.core.fft import fft2c, ifft2c
from npgd_recon.core.metrics import snr_db_complex, snr_db_magnitude
from npgd_recon.io.assembly import InMemoryAcquisitions, RawDataError, assemble_study
from npgd_recon.io.geometry import Encoding, VolumeIndex
from npgd_recon.io.ismrmrd_file import read_raw
from npgd_recon.sim.phantoms import shepp_logan
from npgd_recon.sim.scan_writer import ScanSettings, write_scan
from sampling import vd_lines, vdrad
from tests.conftest import needs_ismrmrd_tools

FLAG_NAVIGATION, FLAG_PARALLEL_CALIBRATION = 23, 20


def volume_snr(reference, estimate, magnitude=False):
    """SNR in dB over a whole stack (empty edge images would be -inf on their own)."""
    metric = snr_db_magnitude if magnitude else snr_db_complex
    reference, estimate = np.asarray(reference), np.asarray(estimate)
    return metric(reference.reshape(-1, reference.shape[-1]),
                  estimate.reshape(-1, estimate.shape[-1]))


def combine(study, volume, maps):
    """Coil-combine the zero-filled images with the (whitened) true maps ``[coil, n, y, x]``."""
    coils = ifft2c(np.asarray(volume.kspace))
    whitener = study.whitener if study.whitener is not None else np.eye(study.n_coils)
    maps = np.einsum("dc,cn...->nd...", whitener, maps)
    return (maps.conj() * coils).sum(1) / (np.abs(maps) ** 2).sum(1)


@pytest.fixture(scope="module")
def scan2d(tmp_path_factory):
    """3 slices of 64x48, 4 coils, readout oversampling 2, noisy calibration, clean data."""
    path = tmp_path_factory.mktemp("raw") / "scan2d.h5"
    truth = write_scan(path, shepp_logan((3, 64, 48)),
                       settings=ScanSettings(coils=4, oversampling=2, calibration_noise=0.5))
    return path, truth


@pytest.fixture(scope="module")
def scan3d(tmp_path_factory):
    """3-D 32(y) x 20(z) x 24(x), 3 coils, oversampling 2, VDRad R=3 over ky-kz."""
    path = tmp_path_factory.mktemp("raw") / "scan3d.h5"
    pattern = vdrad((32, 20), 3.0, seed=4)
    truth = write_scan(path, shepp_logan((20, 32, 24)), volumetric=True, pattern=pattern,
                       settings=ScanSettings(coils=3, oversampling=2))
    return path, truth, pattern


def test_2d_round_trip_layout_and_snr(scan2d):
    path, truth = scan2d
    study = read_raw(path)
    assert not study.is_3d and len(study.volumes) == 1 and study.n_coils == 4
    volume = study.volumes[0]
    assert volume.kspace.shape == (3, 4, 64, 48) and volume.kspace.dtype == np.complex64
    assert volume.mask.shape == (3, 64, 48) and volume.mask.all() and volume.fully_sampled
    image = combine(study, volume, truth.maps)
    assert snr_db_complex(truth.image, image).min() > 40
    rss = np.sqrt((np.abs(ifft2c(volume.kspace)) ** 2).sum(1))
    assert np.corrcoef(rss.ravel(), np.abs(truth.image).ravel())[0, 1] > 0.95


def test_2d_geometry_from_acquisition_headers(scan2d):
    geometry = read_raw(scan2d[0]).volumes[0].geometry
    assert [g.centre[2] for g in geometry] == [-3.0, 0.0, 3.0]
    for plane in geometry:
        assert plane.shape == (64, 48) and plane.spacing == (1.0, 1.0)
        assert plane.thickness == 3.0
        np.testing.assert_allclose(plane.orientation(), [1, 0, 0, 0, 1, 0])
        np.testing.assert_allclose(plane.normal, [0, 0, 1])


def test_single_coil_without_noise_readouts_is_exact(tmp_path):
    image = shepp_logan((3, 40, 32)) * np.exp(0.3j)
    truth = write_scan(tmp_path / "s.h5", image, settings=ScanSettings(noise_readouts=0))
    study = read_raw(tmp_path / "s.h5")
    assert study.whitener is None and study.noise_covariance is None
    image = ifft2c(study.volumes[0].kspace[:, 0])
    assert snr_db_complex(truth.image, image).min() > 100


def test_prewhitening_estimates_covariance_and_whitens(tmp_path):
    settings = ScanSettings(coils=4, noise=0.05, noise_readouts=64, seed=3)
    truth = write_scan(tmp_path / "n.h5", np.zeros((1, 64, 64)), settings=settings)
    study = read_raw(tmp_path / "n.h5")
    error = np.linalg.norm(study.noise_covariance - truth.noise_covariance)
    assert error / np.linalg.norm(truth.noise_covariance) < 0.1
    assert np.abs(truth.noise_covariance - np.diag(np.diag(truth.noise_covariance))).max() > 0
    whitened = study.volumes[0].kspace[0].reshape(4, -1)
    np.testing.assert_allclose(whitened @ whitened.conj().T / whitened.shape[1], np.eye(4),
                               atol=0.1)


def test_2d_line_mask_matches_pattern(tmp_path):
    pattern = vd_lines((64, 48), 3.0, seed=2)
    write_scan(tmp_path / "u.h5", shepp_logan((2, 64, 48)), pattern=pattern,
               settings=ScanSettings(coils=2, oversampling=2))
    volume = read_raw(tmp_path / "u.h5").volumes[0]
    assert not volume.fully_sampled
    for mask in volume.mask:
        np.testing.assert_array_equal(mask, pattern.mask)
    assert not np.abs(volume.kspace[:, :, ~pattern.mask[:, 0]]).any()


def test_3d_round_trip_and_vdrad_mask(scan3d):
    path, truth, pattern = scan3d
    study = read_raw(path)
    volume = study.volumes[0]
    assert study.is_3d and volume.kspace.shape == (24, 3, 32, 20)
    assert volume.mask.shape == (24, 32, 20) and not volume.fully_sampled
    np.testing.assert_array_equal(volume.mask[0], pattern.mask)
    assert (volume.mask == volume.mask[0]).all()
    # the stored k-space is the whitened coil k-space of the truth, masked
    maps = np.einsum("dc,cxyz->xdyz", study.whitener, truth.maps.transpose(0, 3, 2, 1))
    expected = fft2c(maps * truth.image.transpose(2, 1, 0)[:, None]) * pattern.mask
    assert volume_snr(expected, volume.kspace) > 40


def test_3d_fully_sampled_round_trip(tmp_path):
    image = shepp_logan((12, 24, 16))
    truth = write_scan(tmp_path / "f.h5", image, volumetric=True,
                       settings=ScanSettings(coils=2, oversampling=2, slice_mm=2.0))
    study = read_raw(tmp_path / "f.h5")
    volume = study.volumes[0]
    assert volume.fully_sampled and volume.mask.all()
    combined = combine(study, volume, truth.maps.transpose(0, 3, 2, 1))
    assert volume_snr(truth.image.transpose(2, 1, 0), combined, magnitude=True) > 40
    centres = np.array([g.centre for g in volume.geometry])
    np.testing.assert_allclose(np.diff(centres[:, 0]), 1.0)  # readout voxel, along read_dir
    assert volume.geometry[0].shape == (24, 12) and volume.geometry[0].spacing == (1.0, 2.0)


def test_asymmetric_echo_is_centred_and_masked(tmp_path):
    truth = write_scan(tmp_path / "e.h5", shepp_logan((1, 48, 64)),
                       settings=ScanSettings(coils=2, echo_fraction=0.75, noise_readouts=0))
    volume = read_raw(tmp_path / "e.h5").volumes[0]
    assert volume.kspace.shape == (1, 2, 48, 64)
    columns = volume.mask[0].any(axis=0)
    assert not columns[:16].any() and columns[16:].all()
    energy = (np.abs(volume.kspace[0]) ** 2).sum(axis=(0, 1))
    assert np.argmax(energy) == 32
    image = combine(read_raw(tmp_path / "e.h5"), volume, truth.maps)
    assert snr_db_magnitude(truth.image, image).min() > 10  # partial Fourier, zero-filled


def test_navigators_skipped_calibration_lines_kept(scan2d, tmp_path):
    path = tmp_path / "flags.h5"
    shutil.copy(scan2d[0], path)
    with h5py.File(path, "r+") as file:
        table = file["dataset/data"]
        row = table[40]
        row["head"]["flags"] |= np.uint64(1 << (FLAG_PARALLEL_CALIBRATION - 1))
        table[40] = row
        row["head"]["flags"] = np.uint64(1 << (FLAG_NAVIGATION - 1))
        row["data"] = np.full_like(row["data"], 1e6)
        table.resize((table.shape[0] + 1,))
        table[-1] = row
    reference, edited = read_raw(scan2d[0]).volumes[0], read_raw(path).volumes[0]
    np.testing.assert_array_equal(edited.mask, reference.mask)
    np.testing.assert_allclose(edited.kspace, reference.kspace)


def test_repeated_lines_are_averaged(scan2d, tmp_path):
    path = tmp_path / "avg.h5"
    shutil.copy(scan2d[0], path)
    with h5py.File(path, "r+") as file:
        table = file["dataset/data"]
        row = table[50]
        row["data"] = row["data"] * 3
        table.resize((table.shape[0] + 1,))
        table[-1] = row
        head = row["head"]
    reference, edited = read_raw(scan2d[0]).volumes[0], read_raw(path).volumes[0]
    s, ky = int(head["idx"]["slice"]), int(head["idx"]["kspace_encode_step_1"])
    np.testing.assert_allclose(edited.kspace[s, :, ky], 2 * reference.kspace[s, :, ky],
                               rtol=1e-4, atol=1e-6)


def test_3d_holds_the_acquired_profiles_only_and_averages_repeated_points(scan3d, tmp_path):
    path = tmp_path / "avg3d.h5"
    shutil.copy(scan3d[0], path)
    with h5py.File(path, "r+") as file:
        table = file["dataset/data"]
        row = table[-1]  # an imaging readout (the noise readouts come first)
        row["data"] = row["data"] * 3
        table.resize((table.shape[0] + 1,))
        table[-1] = row
        head = row["head"]
    reference, edited = read_raw(scan3d[0]).volumes[0], read_raw(path).volumes[0]
    rate = float(reference.mask[0].mean())
    dense = np.prod(reference.kspace.shape) * 8
    assert reference.kspace.nbytes < (rate + 0.05) * dense  # not the fully sampled stack
    ky, kz = (int(head["idx"][f"kspace_encode_step_{i}"]) for i in (1, 2))
    np.testing.assert_allclose(edited.kspace[:, :, ky, kz], 2 * reference.kspace[:, :, ky, kz],
                               rtol=1e-4, atol=1e-6)
    others = np.ones(reference.mask.shape[1:], dtype=bool)
    others[ky, kz] = False
    np.testing.assert_array_equal(edited.kspace[:] * others, reference.kspace[:] * others)


def test_repetitions_become_separate_volumes(scan2d, tmp_path):
    path = tmp_path / "reps.h5"
    shutil.copy(scan2d[0], path)
    with h5py.File(path, "r+") as file:
        rewrite_xml(file, lambda h: setattr(h.encoding[0].encodingLimits.repetition,
                                            "maximum", 1))
        table = file["dataset/data"]
        rows = table[32:]  # the image readouts (32 noise readouts come first)
        rows["head"]["idx"]["repetition"] = 1
        for row in rows:
            row["data"] = row["data"] * 2
        table.resize((table.shape[0] + len(rows),))
        table[-len(rows):] = rows
    volumes = read_raw(path).volumes
    assert [v.index for v in volumes] == [VolumeIndex(repetition=0), VolumeIndex(repetition=1)]
    np.testing.assert_allclose(volumes[1].kspace, 2 * volumes[0].kspace, rtol=1e-5, atol=1e-6)


@needs_ismrmrd_tools
def test_reads_ismrmrd_generated_phantom(tmp_path):
    path = tmp_path / "sl.h5"
    subprocess.run(["ismrmrd_generate_cartesian_shepp_logan", "-m", "64", "-c", "8", "-O", "2",
                    "-C", "-o", str(path)], check=True, capture_output=True)
    study = read_raw(path)
    volume = study.volumes[0]
    assert volume.kspace.shape == (1, 8, 64, 64) and volume.fully_sampled
    assert study.noise_covariance.shape == (8, 8)
    rss = np.sqrt((np.abs(ifft2c(volume.kspace[0])) ** 2).sum(0))
    with h5py.File(path, "r") as file:
        phantom = np.abs(file["dataset/phantom"][0].view(np.complex64))
    assert np.corrcoef(rss.ravel(), phantom.ravel())[0, 1] > 0.9
    assert np.corrcoef(rss.ravel(), phantom.T.ravel())[0, 1] < 0.9


# ---------------------------------------------------------------- corrupt and unusable files


def rewrite_xml(file, edit):
    header = xsd.CreateFromDocument(file["dataset/xml"][0])
    edit(header)
    del file["dataset/xml"]
    xml = file["dataset"].create_dataset("xml", (1,), dtype=h5py.special_dtype(vlen=bytes))
    xml[0] = xsd.ToXML(header).encode()


def edit_head(index, **changes):
    def edit(file):
        table = file["dataset/data"]
        row = table[index]
        for name, value in changes.items():
            target = row["head"]["idx"] if name in row["head"]["idx"].dtype.names else row["head"]
            target[name] = value
        table[index] = row
    return edit


def write_nan(file):
    table = file["dataset/data"]
    row = table[40]
    row["data"][7] = np.nan
    table[40] = row


def radial(header):
    header.encoding[0].trajectory = xsd.trajectoryType.RADIAL


def empty_field_of_view(header):
    header.encoding[0].encodedSpace.fieldOfView_mm.x = ""


def flip_middle_of_readout(path):
    with h5py.File(path, "r") as file:
        table = file["dataset/data"]
        samples = table[table.shape[0] // 2]["data"].tobytes()
    blob = bytearray(path.read_bytes())
    start = blob.find(samples) + len(samples) // 2
    blob[start:start + 64] = b"\xff" * 64
    path.write_bytes(bytes(blob))


def flip_middle_of_file(path):
    blob = bytearray(path.read_bytes())
    middle = len(blob) // 2
    blob[middle:middle + 256] = b"\xff" * 256
    path.write_bytes(bytes(blob))


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


H5_EDITS = {
    "xml deleted": (lambda f: f["dataset"].__delitem__("xml"), "no XML header"),
    "xml garbage": (lambda f: f["dataset/xml"].__setitem__(0, b"<not-ismrmrd/>"),
                    "not a valid ISMRMRD header"),
    "non-cartesian": (lambda f: rewrite_xml(f, radial), "only Cartesian"),
    "empty field of view": (lambda f: rewrite_xml(f, empty_field_of_view),
                            r"encodedSpace fieldOfView_mm is \(empty, 64.0, 3.0\)"),
    "no acquisitions": (lambda f: f["dataset"].__delitem__("data"), "no acquisitions"),
    "NaN in data": (write_nan, "NaN or Inf"),
    "ky out of range": (edit_head(40, kspace_encode_step_1=64), "kspace_encode_step_1 = 64"),
    "slice out of range": (edit_head(40, slice=3), "slice = 3"),
    "repetition out of range": (edit_head(40, repetition=1), "repetition = 1"),
    "contrast out of range": (edit_head(40, contrast=2), "contrast = 2"),
    "kz in a 2-D scan": (edit_head(40, kspace_encode_step_2=1), "kspace_encode_step_2 = 1"),
    "channel count": (edit_head(40, active_channels=3), "channel"),
    "sample count": (edit_head(40, number_of_samples=90), "samples"),
    "readout longer than matrix": (edit_head(40, center_sample=10), "samples"),
    "only noise readouts": (lambda f: [edit_head(i, flags=np.uint64(1 << 18))(f)
                                       for i in range(f["dataset/data"].shape[0])],
                            "no imaging acquisitions"),
}
BYTE_EDITS = {
    "truncated": (truncate, "truncated or corrupt"),
    "0xFF in a readout": (flip_middle_of_readout, "NaN or Inf"),
    "0xFF in the middle": (flip_middle_of_file, "corrupt|NaN|outside|mismatched"),
    "not HDF5": (lambda p: p.write_text("ISMRMRD? no, plain text\n"), "not an HDF5 file"),
    "missing": (lambda p: p.unlink(), "no such file"),
}


@pytest.mark.parametrize("name", list(H5_EDITS))
def test_corrupt_contents_raise_raw_data_error(scan2d, tmp_path, name):
    edit, expected = H5_EDITS[name]
    path = tmp_path / "bad.h5"
    shutil.copy(scan2d[0], path)
    with h5py.File(path, "r+") as file:
        edit(file)
    with pytest.raises(RawDataError, match=expected) as error:
        read_raw(path)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name", list(BYTE_EDITS))
def test_damaged_files_raise_raw_data_error(scan2d, tmp_path, name):
    edit, expected = BYTE_EDITS[name]
    path = tmp_path / "bad.h5"
    shutil.copy(scan2d[0], path)
    edit(path)
    with pytest.raises(RawDataError, match=expected) as error:
        read_raw(path)
    assert "\n" not in str(error.value)


@needs_ismrmrd_tools
@pytest.mark.parametrize("edit", [truncate, flip_middle_of_readout])
def test_damaged_tool_file_raises_raw_data_error(tmp_path, edit):
    path = tmp_path / "sl.h5"
    subprocess.run(["ismrmrd_generate_cartesian_shepp_logan", "-m", "32", "-c", "2", "-C",
                    "-o", str(path)], check=True, capture_output=True)
    edit(path)
    with pytest.raises(RawDataError):
        read_raw(path)


def test_missing_group(scan2d):
    with pytest.raises(RawDataError, match="no ISMRMRD group 'other'"):
        read_raw(scan2d[0], group="other")


def test_empty_receiver_channels_is_ignored_with_a_warning(scan2d, tmp_path, caplog):
    path = tmp_path / "blank.h5"
    shutil.copy(scan2d[0], path)
    with h5py.File(path, "r+") as file:
        rewrite_xml(file, lambda h: setattr(h.acquisitionSystemInformation,
                                            "receiverChannels", ""))
    with caplog.at_level(logging.WARNING):
        study = read_raw(path)
    assert study.n_coils == 4
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: header field acquisitionSystemInformation.receiverChannels is empty; ignored"]


def test_fingerprint_is_the_raw_data_identity(scan2d, tmp_path):
    """The same data, from a file, a copy or a stream, has one fingerprint; other data not."""
    study = read_raw(scan2d[0])
    copy = tmp_path / "copy.h5"
    shutil.copy(scan2d[0], copy)
    assert read_raw(copy).fingerprint == study.fingerprint
    dataset = ismrmrd.Dataset(copy, "dataset", create_if_needed=False)
    received = [dataset.read_acquisition(i) for i in range(dataset.number_of_acquisitions())]
    dataset.close()
    streamed = assemble_study(study.header, InMemoryAcquisitions.from_acquisitions(received),
                              "stream")
    assert streamed.fingerprint == study.fingerprint
    with h5py.File(copy, "r+") as file:
        edit_head(40, acquisition_time_stamp=12345)(file)
    assert read_raw(copy).fingerprint != study.fingerprint


@pytest.mark.parametrize("volumetric, shape, plane", [(False, (2, 48, 40), (48, 40)),
                                                      (True, (12, 32, 24), (32, 12))])
def test_the_header_s_plane_is_the_matrix_of_the_read_problems(tmp_path, volumetric, shape,
                                                               plane):
    """``Encoding.plane`` (what a stream's header says before its data) matches the problems
    the reader makes: a 2-D slice with the readout oversampling removed, a 3-D ``ky x kz``."""
    write_scan(tmp_path / "scan.h5", shepp_logan(shape), volumetric=volumetric,
               settings=ScanSettings(coils=2, oversampling=2))
    study = read_raw(tmp_path / "scan.h5")
    assert Encoding.from_header(study.header).plane == plane
    assert study.volumes[0].kspace.shape[-2:] == plane

"""DICOM series: dciodvfy-clean MR Image Storage, geometry, pixel values, atomic output."""

import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from npgd_recon.core.fft import ifft2c
from npgd_recon.io import dicom_writer
from npgd_recon.io.atomic import OutputError
from npgd_recon.io.dicom_writer import StudyInfo, study_info_from_header, write_series
from npgd_recon.io.geometry import PlaneGeometry, VolumeIndex
from npgd_recon.io.ismrmrd_file import read_raw
from npgd_recon.sim.phantoms import shepp_logan
from npgd_recon.sim.scan_writer import ScanSettings, write_scan
from tests.conftest import dciodvfy_findings, needs_dciodvfy


def rss(volume):
    return np.sqrt((np.abs(ifft2c(volume.kspace)) ** 2).sum(1))


@pytest.fixture(scope="module")
def study2d(tmp_path_factory):
    path = tmp_path_factory.mktemp("raw") / "s2.h5"
    write_scan(path, shepp_logan((3, 32, 24)), settings=ScanSettings(coils=2, oversampling=2))
    return read_raw(path)


@pytest.fixture(scope="module")
def study3d(tmp_path_factory):
    path = tmp_path_factory.mktemp("raw") / "s3.h5"
    write_scan(path, shepp_logan((8, 16, 12)), volumetric=True,
               settings=ScanSettings(coils=2, oversampling=2, slice_mm=2.0))
    return read_raw(path)


@pytest.fixture(scope="module")
def study_tool(tmp_path_factory):
    """A file from the ISMRMRD tools: oversampled, noise readouts, zero direction vectors."""
    if shutil.which("ismrmrd_generate_cartesian_shepp_logan") is None:
        pytest.skip("ismrmrd-tools not installed")
    path = tmp_path_factory.mktemp("raw") / "tool.h5"
    subprocess.run(["ismrmrd_generate_cartesian_shepp_logan", "-m", "32", "-c", "2", "-C",
                    "-o", str(path)], check=True, capture_output=True)
    return read_raw(path)


def axial(z, shape=(4, 6)):
    return PlaneGeometry(centre=np.array([10.0, -20.0, z]), x_dir=np.array([1.0, 0, 0]),
                         y_dir=np.array([0, 1.0, 0]), spacing=(2.0, 1.0), shape=shape,
                         thickness=3.0, table_position=np.array([0, 0, -100.0]))


@needs_dciodvfy
@pytest.mark.parametrize("name", ["study2d", "study3d", "study_tool"])
def test_series_passes_dciodvfy(request, tmp_path, name):
    study = request.getfixturevalue(name)
    volume = study.volumes[0]
    files = write_series(rss(volume), volume.geometry, tmp_path / "series",
                         series_description="zerofill (test)",
                         info=study_info_from_header(study.header, study.is_3d))
    assert [f.name for f in files] == [f"IM{i:05d}.dcm" for i in range(1, len(files) + 1)]
    for path in files:
        assert dciodvfy_findings(path) == [], path
    datasets = [pydicom.dcmread(f) for f in files]
    assert {d.SOPClassUID for d in datasets} == {"1.2.840.10008.5.1.4.1.1.4"}
    assert len({d.SeriesInstanceUID for d in datasets}) == 1
    assert len({d.SOPInstanceUID for d in datasets}) == len(files)
    assert [d.InstanceNumber for d in datasets] == list(range(1, len(files) + 1))
    first = datasets[0]
    assert first.SeriesDescription.startswith("zero")
    assert list(first.ImageType)[:2] == ["DERIVED", "PRIMARY"]
    assert first.MRAcquisitionType == ("3D" if study.is_3d else "2D")
    normal = np.cross(*np.reshape(np.array(first.ImageOrientationPatient, float), (2, 3)))
    along = [float(np.array(d.ImagePositionPatient, float) @ normal) for d in datasets]
    assert np.all(np.abs(np.diff(along)) > 0)


def test_axial_geometry(tmp_path):
    planes = [axial(z) for z in (-3.0, 0.0, 3.0)]
    files = write_series(np.ones((3, 4, 6)), planes, tmp_path / "g", series_description="g")
    datasets = [pydicom.dcmread(f) for f in files]
    for d, z in zip(datasets, (-3.0, 0.0, 3.0)):
        # pixel (n//2) sits at the centre: x 10 - (6 // 2) * 1, y -20 - (4 // 2) * 2
        np.testing.assert_allclose(np.array(d.ImagePositionPatient, float), [7.0, -24.0, z])
        np.testing.assert_allclose(np.array(d.ImageOrientationPatient, float), [1, 0, 0, 0, 1, 0])
        assert [float(v) for v in d.PixelSpacing] == [2.0, 1.0]
        assert (d.Rows, d.Columns) == (4, 6)
        assert float(d.SliceThickness) == 3.0 and float(d.SpacingBetweenSlices) == 3.0
        assert float(d.SliceLocation) == z
    with_table = write_series(np.ones((1, 4, 6)), planes[:1], tmp_path / "t",
                              series_description="t", include_table_position=True)
    position = pydicom.dcmread(with_table[0]).ImagePositionPatient
    np.testing.assert_allclose(np.array(position, float), [7.0, -24.0, -103.0])


def test_pixel_values_round_trip(tmp_path):
    images = np.random.default_rng(0).uniform(0, 5, (2, 4, 6))
    images[1] *= 0.5
    files = write_series(images * np.exp(1j), [axial(0.0), axial(3.0)], tmp_path / "p",
                         series_description="p")
    stored = np.stack([pydicom.dcmread(f).pixel_array for f in files]).astype(float)
    assert stored.max() == 65535 and pydicom.dcmread(files[0]).BitsStored == 16
    np.testing.assert_allclose(stored / stored.max(), images / images.max(), atol=1e-4)
    window = pydicom.dcmread(files[0])
    assert 0 < float(window.WindowWidth) <= 65535 and float(window.WindowCenter) > 0


def test_existing_series_needs_force(tmp_path):
    out = tmp_path / "series"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(OutputError, match="not empty") as error:
        write_series(np.ones((1, 4, 6)), [axial(0.0)], out, series_description="x")
    assert error.value.needs_force
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    write_series(np.ones((1, 4, 6)), [axial(0.0)], out, series_description="x", force=True)
    assert [p.name for p in out.iterdir()] == ["IM00001.dcm"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]


def test_empty_existing_folder_is_used(tmp_path):
    (tmp_path / "empty").mkdir()
    write_series(np.ones((1, 4, 6)), [axial(0.0)], tmp_path / "empty", series_description="x")
    assert [p.name for p in (tmp_path / "empty").iterdir()] == ["IM00001.dcm"]


def test_invalid_images_write_nothing(tmp_path):
    images = np.ones((2, 4, 6))
    images[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        write_series(images, [axial(0.0), axial(3.0)], tmp_path / "n", series_description="x")
    with pytest.raises(ValueError, match="geometry"):
        write_series(np.ones((1, 5, 6)), [axial(0.0)], tmp_path / "n", series_description="x")
    assert not list(tmp_path.iterdir())


def test_failure_midway_leaves_no_partial_output(tmp_path, monkeypatch):
    out = tmp_path / "series"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    real_write, calls = pydicom.dcmwrite, []

    def failing_write(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(dicom_writer.pydicom, "dcmwrite", failing_write)
    with pytest.raises(OSError, match="disk full"):
        write_series(np.ones((3, 4, 6)), [axial(z) for z in (0, 3, 6)], out,
                     series_description="x", force=True)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]


def test_study_info_defaults_and_header_fields(study2d):
    anonymous = StudyInfo()
    assert anonymous.patient_id == "ANONYMOUS" and anonymous.study_uid
    info = study_info_from_header(study2d.header)
    assert info.patient_id == "NPGD-SIM" and info.manufacturer == "npgd-recon"
    assert info.field_strength_t == 3.0 and info.imaging_frequency_mhz == pytest.approx(127.74)
    assert info.repetition_time_ms == 10.0 and info.patient_position == "HFS"


def test_volumes_are_told_apart_by_the_tags_viewers_sort_on(tmp_path):
    planes = [axial(0.0), axial(3.0)] * 2 + [axial(0.0), axial(3.0)]
    volumes = [VolumeIndex(repetition=0)] * 2 + [VolumeIndex(repetition=1)] * 2 \
        + [VolumeIndex(contrast=1, repetition=1)] * 2
    info = StudyInfo(echo_times_ms=[4.0, 9.5])
    files = write_series(np.ones((6, 4, 6)), planes, tmp_path / "s", series_description="x",
                         info=info, volumes=volumes)
    datasets = [pydicom.dcmread(f) for f in files]
    assert [d.AcquisitionNumber for d in datasets] == [1, 1, 2, 2, 3, 3]
    assert [d.TemporalPositionIdentifier for d in datasets] == [1, 1, 2, 2, 2, 2]
    assert {d.NumberOfTemporalPositions for d in datasets} == {2}
    assert [d.EchoNumbers for d in datasets] == [1, 1, 1, 1, 2, 2]
    assert [float(d.EchoTime) for d in datasets] == [4.0] * 4 + [9.5] * 2
    assert {float(d.SpacingBetweenSlices) for d in datasets} == {3.0}  # within each volume
    assert datasets[4].ImageComments == "contrast 1, phase 0, repetition 1, set 0"


@needs_dciodvfy
def test_repetitions_series_is_clean(tmp_path):
    volumes = [VolumeIndex(repetition=r) for r in range(3)]
    files = write_series(np.ones((3, 4, 6)), [axial(0.0)] * 3, tmp_path / "s",
                         series_description="x", volumes=volumes)
    assert all(dciodvfy_findings(f) == [] for f in files)

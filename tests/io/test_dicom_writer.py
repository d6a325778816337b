"""DICOM series: dciodvfy-clean MR Image Storage, geometry, pixel values, atomic output."""

import importlib.metadata
import logging
import re
import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from ismrmrd import xsd

from npgd_recon.core.fft import ifft2c
from npgd_recon.io import dicom_writer
from npgd_recon.io.atomic import OutputError
from npgd_recon.io.dicom_writer import (
    StudyInfo,
    derived_uid,
    field_strength_from_frequency,
    study_info_from_header,
    write_series,
)
from npgd_recon.io.geometry import PlaneGeometry, VolumeIndex
from npgd_recon.io.ismrmrd_file import read_raw
from npgd_recon.sim.phantoms import shepp_logan
from npgd_recon.sim.scan_writer import ScanSettings, write_scan
from tests.conftest import dciodvfy_findings, needs_dciodvfy, needs_ismrmrd_tools


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


def blank(header, *fields):
    """A copy of ``header`` (via its XML) with the named elements left empty."""
    xml = xsd.ToXML(header)
    for name in fields:
        xml = re.sub(rf"<{name}>[^<]*</{name}>", f"<{name}></{name}>", xml)
    return xsd.CreateFromDocument(xml)


def test_empty_header_numbers_are_ignored_with_a_warning(study2d, tmp_path, caplog):
    header = blank(study2d.header, "H1resonanceFrequency_Hz", "systemFieldStrength_T", "TE",
                   "flipAngle_deg")
    with caplog.at_level(logging.WARNING):
        info = study_info_from_header(header, source="scan.h5")
    assert info.imaging_frequency_mhz is None and info.field_strength_t is None
    assert info.echo_time_ms is None and info.echo_times_ms == [None]
    assert info.flip_angle_deg is None and info.repetition_time_ms == 10.0
    assert sorted(r.getMessage() for r in caplog.records) == [
        f"scan.h5: header field {name} is empty; ignored" for name in (
            "acquisitionSystemInformation.systemFieldStrength_T",
            "experimentalConditions.H1resonanceFrequency_Hz",
            "sequenceParameters.TE[0]", "sequenceParameters.flipAngle_deg")]
    volume = study2d.volumes[0]
    files = write_series(rss(volume), volume.geometry, tmp_path / "s", series_description="x",
                         info=info)
    first = pydicom.dcmread(files[0])
    assert first.ImagingFrequency is None and first.MagneticFieldStrength is None
    assert "EchoTime" not in first or first.EchoTime is None
    if shutil.which("dciodvfy"):
        assert all(dciodvfy_findings(f) == [] for f in files)


def test_non_finite_header_numbers_are_ignored(study2d, caplog):
    header = blank(study2d.header)
    header.acquisitionSystemInformation.systemFieldStrength_T = float("nan")
    header.sequenceParameters.TR = [float("inf")]
    with caplog.at_level(logging.WARNING):
        info = study_info_from_header(header, source="scan.h5")
    assert info.field_strength_t == 3.0  # from the resonance frequency instead
    assert info.repetition_time_ms is None
    assert [r.getMessage().split(" is ")[1] for r in caplog.records] == [
        "nan, not a number; ignored", "inf, not a number; ignored"]


@pytest.mark.parametrize("frequency_hz, tesla", [(63.5e6, 1.5), (63.87e6, 1.5), (127.74e6, 3.0),
                                                (123.2e6, 2.9), (297.2e6, 7.0), (23.66e6, 0.56),
                                                (500e6, 11.7), (2.75e6, 0.065)])
def test_field_strength_from_resonance_frequency(frequency_hz, tesla):
    assert field_strength_from_frequency(frequency_hz) == tesla


@needs_ismrmrd_tools
def test_tool_file_gets_field_strength_from_its_frequency(study_tool, tmp_path):
    """ismrmrd_generate_cartesian_shepp_logan writes 63.5 MHz and no field strength."""
    assert study_tool.header.acquisitionSystemInformation.systemFieldStrength_T is None
    info = study_info_from_header(study_tool.header, source="sl.h5")
    assert info.field_strength_t == 1.5 and info.imaging_frequency_mhz == 63.5
    volume = study_tool.volumes[0]
    first = pydicom.dcmread(write_series(rss(volume), volume.geometry, tmp_path / "s",
                                         series_description="x", info=info)[0])
    assert float(first.MagneticFieldStrength) == 1.5


def test_scanner_and_software_fields(study2d, tmp_path):
    volume = study2d.volumes[0]
    info = study_info_from_header(study2d.header)
    first = pydicom.dcmread(write_series(rss(volume), volume.geometry, tmp_path / "s",
                                         series_description="x", info=info)[0])
    assert (first.Manufacturer, first.ManufacturerModelName) == ("npgd-recon", "npgd-simulate")
    assert float(first.MagneticFieldStrength) == 3.0
    assert first.SoftwareVersions == f"npgd-recon {importlib.metadata.version('npgd-recon')}"


def test_one_raw_file_is_one_study_and_each_series_its_own(study2d, tmp_path):
    volume = study2d.volumes[0]
    uids = []
    for number in (1, 2):
        info = study_info_from_header(study2d.header, fingerprint=study2d.fingerprint)
        files = write_series(rss(volume), volume.geometry, tmp_path / f"s{number}",
                             series_description="x", info=info, series_number=number)
        first = pydicom.dcmread(files[0])
        uids.append((first.StudyInstanceUID, first.FrameOfReferenceUID,
                     first.SeriesInstanceUID, first.SeriesNumber))
    (study, frame, series, number), (study_b, frame_b, series_b, number_b) = uids
    assert (study, frame) == (study_b, frame_b) and study != frame
    assert series != series_b and (number, number_b) == (1, 2)
    assert study.startswith("2.25.") and len(study) <= 64
    other = study_info_from_header(study2d.header, fingerprint="another file")
    assert other.study_uid != study and other.frame_of_reference_uid != frame


def test_header_uids_are_kept_and_invalid_ones_ignored(study2d, caplog):
    header = blank(study2d.header)
    header.studyInformation.studyInstanceUID = "1.2.840.99999.1"
    header.measurementInformation.frameOfReferenceUID = "1.2.840.099.not-a-uid"
    with caplog.at_level(logging.WARNING):
        info = study_info_from_header(header, source="scan.h5", fingerprint="f")
    assert info.study_uid == "1.2.840.99999.1"
    assert info.frame_of_reference_uid == derived_uid("f", "frame of reference")
    assert [r.getMessage() for r in caplog.records] == [
        "scan.h5: header field measurementInformation.frameOfReferenceUID is "
        "'1.2.840.099.not-a-uid', not a valid UID; ignored"]

"""Write magnitude images as a DICOM MR Image Storage series, one file per image, atomically.

Pixels are 16-bit unsigned, scaled by one factor for the whole series so that its maximum is
65535 (relative intensities between images are kept). Geometry comes from
:class:`~npgd_recon.io.geometry.PlaneGeometry`: ImagePositionPatient is the centre of the first
voxel, ImageOrientationPatient the row then column direction cosines, PixelSpacing
``(dy, dx)``. The series is written into a temporary folder beside ``out_dir`` and renamed into
place at the end (:mod:`npgd_recon.io.atomic`); an existing non-empty ``out_dir`` is refused
unless ``force=True``.

One raw file, one study: :func:`study_info_from_header` takes the StudyInstanceUID and
FrameOfReferenceUID from the header when it has valid ones and otherwise derives them from the
raw data's fingerprint (:attr:`~npgd_recon.io.assembly.RawStudy.fingerprint`) as UUID-derived
UIDs ``2.25.<uuid5>``, so every reconstruction of one file lands in one study and frame of
reference. The study date and time are the header's (its measurement's when it has no study
date); only raw data without any date get the time of writing, which then differs between the
series of the study. Each series gets a fresh SeriesInstanceUID. Scanner fields come from the
header; a MagneticFieldStrength it lacks is derived from the proton resonance frequency
(:func:`field_strength_from_frequency`). SoftwareVersions names this package's version.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import logging
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)
from pydicom.valuerep import DSfloat

from npgd_recon.core.errors import NpgdError
from npgd_recon.io.atomic import atomic_output_dir
from npgd_recon.io.geometry import PlaneGeometry, VolumeIndex, header_number

LONG_STRING = 64  # characters of a DICOM LO value (SeriesDescription, Manufacturer, ...)
PROTON_HZ_PER_TESLA = 42.577478e6  # gamma / 2 pi of 1H (CODATA 2018)
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://pypi.org/project/npgd-recon/")
_MAX_PIXEL = 65535
log = logging.getLogger(__name__)


@dataclass
class StudyInfo:
    """Patient, study and scanner fields (anonymous defaults; see :func:`study_info_from_header`).

    Dates are ``YYYYMMDD``, times ``HHMMSS``; empty strings are written as empty type-2 fields.
    ``echo_times_ms`` holds the TE of each contrast (None where the header's is unusable);
    ``initial_series_number`` is the raw measurement's series number, when the header has one.
    """

    patient_name: str = "Anonymous^"
    patient_id: str = "ANONYMOUS"
    patient_birth_date: str = ""
    patient_sex: str = ""
    patient_position: str = "HFS"
    study_uid: str = field(default_factory=generate_uid)
    frame_of_reference_uid: str = field(default_factory=generate_uid)
    study_date: str = ""
    study_time: str = ""
    study_id: str = ""
    study_description: str = ""
    accession_number: str = ""
    referring_physician: str = ""
    protocol_name: str = ""
    manufacturer: str = ""
    model: str = ""
    institution: str = ""
    field_strength_t: float | None = None
    imaging_frequency_mhz: float | None = None
    repetition_time_ms: float | None = None
    echo_time_ms: float | None = None
    echo_times_ms: list[float | None] = field(default_factory=list)
    flip_angle_deg: float | None = None
    acquisition_type: str = "2D"
    initial_series_number: int | None = None


def study_info_from_header(header, is_3d: bool = False, *, source: str = "the XML header",
                           fingerprint: str | None = None) -> StudyInfo:
    """Patient/study/scanner fields of a parsed ISMRMRD header; anonymous defaults elsewhere.

    Args:
        header: the parsed XML header (``ismrmrd.xsd.ismrmrdHeader``).
        is_3d: a 3-D scan (MRAcquisitionType).
        source: the raw data's name for warnings about header fields that are ignored (an
            empty or non-numeric optional number, an invalid UID).
        fingerprint: the raw data's identity (``RawStudy.fingerprint``): study and frame of
            reference UIDs the header lacks are derived from it (random when None).
    """
    info = StudyInfo(acquisition_type="3D" if is_3d else "2D")
    if fingerprint is not None:
        info.study_uid = derived_uid(fingerprint, "study")
        info.frame_of_reference_uid = derived_uid(fingerprint, "frame of reference")
    subject, study = header.subjectInformation, header.studyInformation
    measurement, system = header.measurementInformation, header.acquisitionSystemInformation
    if subject is not None:
        info.patient_name = subject.patientName or info.patient_name
        info.patient_id = subject.patientID or info.patient_id
        info.patient_birth_date = _date(subject.patientBirthdate)
        info.patient_sex = subject.patientGender if subject.patientGender in ("M", "F", "O") else ""
    if study is not None:
        info.study_date, info.study_time = _date(study.studyDate), _time(study.studyTime)
        info.study_id = study.studyID or ""
        info.study_description = study.studyDescription or ""
        info.accession_number = str(study.accessionNumber or "")
        info.referring_physician = study.referringPhysicianName or ""
        info.study_uid = _uid_or(study.studyInstanceUID, info.study_uid,
                                 "studyInformation.studyInstanceUID", source)
    if measurement is not None:
        info.patient_position = getattr(measurement.patientPosition, "value", "HFS")
        info.protocol_name = measurement.protocolName or ""
        info.frame_of_reference_uid = _uid_or(measurement.frameOfReferenceUID,
                                              info.frame_of_reference_uid,
                                              "measurementInformation.frameOfReferenceUID", source)
        if not info.study_date:  # the measurement's date stands in for the study's
            info.study_date = _date(measurement.seriesDate)
            info.study_time = _time(measurement.seriesTime)
        series = header_number(measurement.initialSeriesNumber,
                               "measurementInformation.initialSeriesNumber", source)
        info.initial_series_number = int(series) if series is not None else None
    if system is not None:
        info.manufacturer = system.systemVendor or ""
        info.model = system.systemModel or ""
        info.institution = system.institutionName or ""
        info.field_strength_t = header_number(
            system.systemFieldStrength_T, "acquisitionSystemInformation.systemFieldStrength_T",
            source)
    if header.experimentalConditions is not None:
        frequency = header_number(header.experimentalConditions.H1resonanceFrequency_Hz,
                                  "experimentalConditions.H1resonanceFrequency_Hz", source)
        if frequency is not None:
            info.imaging_frequency_mhz = frequency / 1e6
            if info.field_strength_t is None and frequency > 0:
                info.field_strength_t = field_strength_from_frequency(frequency)
    sequence = header.sequenceParameters
    if sequence is not None:
        info.repetition_time_ms = _first(sequence.TR, "sequenceParameters.TR", source)
        info.echo_times_ms = [header_number(te, f"sequenceParameters.TE[{i}]", source)
                              for i, te in enumerate(sequence.TE or [])]
        info.echo_time_ms = info.echo_times_ms[0] if info.echo_times_ms else None
        info.flip_angle_deg = _first(sequence.flipAngle_deg, "sequenceParameters.flipAngle_deg",
                                     source)
    return info


def field_strength_from_frequency(frequency_hz: float) -> float:
    """MagneticFieldStrength (T) from a positive 1H resonance frequency (Hz): two significant
    figures and at least one decimal (63.5 MHz: 1.5 T; 127.7 MHz: 3.0 T; 23.7 MHz: 0.56 T)."""
    tesla = frequency_hz / PROTON_HZ_PER_TESLA
    return round(tesla, max(1, 1 - math.floor(math.log10(tesla))))


def derived_uid(fingerprint: str, what: str) -> str:
    """A UUID-derived UID (``2.25.<uuid5>``, PS3.5 B.2) that is the same for the same raw data
    (``fingerprint``) and purpose (``what``, e.g. ``"study"``)."""
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, f'{fingerprint}/{what}').int}"


def write_series(
    images: np.ndarray | Sequence[np.ndarray],
    geometry: Sequence[PlaneGeometry],
    out_dir: str | Path,
    *,
    series_description: str,
    info: StudyInfo | None = None,
    series_number: int = 1,
    force: bool = False,
    include_table_position: bool = False,
    volumes: Sequence[VolumeIndex] | None = None,
) -> list[Path]:
    """Write one DICOM MR image per 2-D image; return the file paths in instance order.

    Args:
        images: ``[n, ny, nx]`` magnitude images (complex input: its magnitude is written).
        geometry: one :class:`PlaneGeometry` per image, shapes matching.
        out_dir: the series folder; created (with parents) by renaming a finished temp folder.
        series_description: e.g. the reconstruction method and model.
        info: patient/study fields; anonymous defaults when None.
        series_number: DICOM SeriesNumber.
        force: replace an existing non-empty ``out_dir``.
        include_table_position: add each plane's ``table_position`` to ImagePositionPatient
            (off by default: ISMRMRD positions are already patient coordinates).
        volumes: each image's (contrast, phase, repetition, set) (default: all one volume).
            Every volume gets its own AcquisitionNumber (1, 2, ... in counter order),
            EchoNumbers is the contrast + 1 (EchoTime the header's TE of that contrast),
            repetitions set TemporalPositionIdentifier / NumberOfTemporalPositions, and
            ImageComments spells out the four counters when there is more than one volume.

    Raises:
        ValueError: images not finite, or images and geometry disagree.
        FileExistsError: ``out_dir`` exists, is not empty and ``force`` is False.
    """
    with atomic_output_dir(out_dir, force) as staging:  # a bad image leaves nothing behind
        names = write_series_files(images, geometry, staging,
                                   series_description=series_description, info=info,
                                   series_number=series_number,
                                   include_table_position=include_table_position,
                                   volumes=volumes)
    return [Path(out_dir) / name for name in names]


def write_series_files(images: np.ndarray | Sequence[np.ndarray],
                       geometry: Sequence[PlaneGeometry], folder: Path, *,
                       series_description: str, info: StudyInfo | None = None,
                       series_number: int = 1, include_table_position: bool = False,
                       volumes: Sequence[VolumeIndex] | None = None) -> list[str]:
    """Write the series' files into an existing folder (the caller makes it atomic); returns
    the file names in instance order. Arguments as for :func:`write_series`; ``volumes`` gives
    each image's (contrast, phase, repetition, set), which :func:`write_series` documents."""
    magnitude = _check_images(images, geometry)
    volumes = list(volumes) if volumes is not None else [VolumeIndex()] * len(geometry)
    if len(volumes) != len(geometry):
        raise ValueError(f"{len(geometry)} images but {len(volumes)} volume indices")
    info = info or StudyInfo()
    peak = float(magnitude.max())
    pixels = np.rint(magnitude * (_MAX_PIXEL / peak if peak > 0 else 1.0)).astype(np.uint16)
    series = _series_dataset(info, series_description, series_number, pixels)
    order = sorted(set(volumes))
    repetitions = len({v.repetition for v in volumes})
    neighbours = _neighbours(geometry, volumes)
    names = []
    for index, (image, plane) in enumerate(zip(pixels, geometry)):
        dataset = _image_dataset(series, image, plane, index, neighbours[index],
                                 include_table_position)
        _label_volume(dataset, volumes[index], order, repetitions, info)
        name = f"IM{index + 1:05d}.dcm"
        pydicom.dcmwrite(folder / name, dataset, enforce_file_format=True)
        names.append(name)
    return names


def _label_volume(ds: Dataset, volume: VolumeIndex, order: list[VolumeIndex],
                  repetitions: int, info: StudyInfo) -> None:
    """The tags viewers sort and tell images apart by (``docs/io.md``)."""
    ds.AcquisitionNumber = order.index(volume) + 1
    ds.EchoNumbers = volume.contrast + 1
    echo_times = dict(enumerate(info.echo_times_ms))
    if echo_times.get(volume.contrast) is not None:
        ds.EchoTime = _ds(echo_times[volume.contrast])[0]
    if repetitions > 1:
        ds.TemporalPositionIdentifier = volume.repetition + 1
        ds.NumberOfTemporalPositions = repetitions
    if len(order) > 1:
        ds.ImageComments = (f"contrast {volume.contrast}, phase {volume.phase}, "
                            f"repetition {volume.repetition}, set {volume.set}")


def _check_images(images, geometry) -> np.ndarray:
    magnitude = np.abs(np.asarray(images)).astype(np.float64)
    if magnitude.ndim != 3 or magnitude.shape[0] == 0:
        raise ValueError(f"images must be a [n, ny, nx] stack, got shape {magnitude.shape}")
    if len(geometry) != magnitude.shape[0]:
        raise ValueError(f"{magnitude.shape[0]} images but {len(geometry)} geometries")
    for index, plane in enumerate(geometry):
        if tuple(plane.shape) != magnitude.shape[1:]:
            raise ValueError(f"image {index} is {magnitude.shape[1:]} but its geometry says "
                             f"{tuple(plane.shape)}")
    if not np.isfinite(magnitude).all():
        raise NpgdError("images contain NaN or Inf; nothing was written")
    return magnitude


def _ds(*values: float) -> list[DSfloat]:
    return [DSfloat(float(v), auto_format=True) for v in values]


def _date(value) -> str:
    return str(value).replace("-", "")[:8] if value is not None else ""


def _time(value) -> str:
    return str(value).replace(":", "").split(".")[0][:6] if value is not None else ""


def _first(values: list | None, name: str, source: str) -> float | None:
    """The first of a header's list of numbers (TR, flip angle), None when absent or unusable."""
    return header_number(values[0], name, source) if values else None


def _uid_or(value: str | None, default: str, name: str, source: str) -> str:
    """The header's UID when it is valid, else ``default`` (with a warning when one was given)."""
    if not value:
        return default
    if len(value) <= 64 and _UID.match(value):
        return value
    log.warning("%s: header field %s is %r, not a valid UID; ignored", source, name, value[:80])
    return default


@functools.cache
def _software_version() -> str:
    try:
        return f"npgd-recon {importlib.metadata.version('npgd-recon')}"
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "npgd-recon"


def _series_dataset(info: StudyInfo, description: str, number: int, pixels) -> Dataset:
    """Attributes shared by every image of the series (patient, study, series, equipment, MR)."""
    now = dt.datetime.now()
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["DERIVED", "PRIMARY", "OTHER"]
    ds.SOPClassUID = MRImageStorage
    ds.StudyDate = info.study_date or now.strftime("%Y%m%d")  # a DICOMDIR needs them
    ds.StudyTime = info.study_time or now.strftime("%H%M%S")
    ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.AccessionNumber = info.accession_number[:16]
    ds.Modality = "MR"
    ds.ImageLaterality = "U"  # unpaired body part: Laterality (0020,0060) is then left out
    ds.Manufacturer = info.manufacturer[:LONG_STRING]
    ds.InstitutionName = info.institution[:LONG_STRING]
    ds.ReferringPhysicianName = info.referring_physician[:LONG_STRING]
    ds.StudyDescription = info.study_description[:LONG_STRING]
    ds.SeriesDescription = description[:LONG_STRING]
    ds.ManufacturerModelName = info.model[:LONG_STRING]
    ds.SoftwareVersions = _software_version()
    ds.PatientName = info.patient_name[:LONG_STRING]
    ds.PatientID = info.patient_id[:LONG_STRING]
    ds.PatientBirthDate = info.patient_birth_date
    ds.PatientSex = info.patient_sex
    ds.ScanningSequence = "RM"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = info.acquisition_type
    ds.ProtocolName = info.protocol_name[:LONG_STRING]
    for keyword, value in (("RepetitionTime", info.repetition_time_ms),
                           ("EchoTime", info.echo_time_ms),
                           ("ImagingFrequency", info.imaging_frequency_mhz),
                           ("MagneticFieldStrength", info.field_strength_t),
                           ("FlipAngle", info.flip_angle_deg)):
        setattr(ds, keyword, _ds(value)[0] if value is not None else "")
    ds.EchoTrainLength = ""
    ds.PatientPosition = info.patient_position
    ds.StudyInstanceUID = info.study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyID = (info.study_id or "1")[:16]  # a DICOMDIR needs one; "1" when unknown
    ds.SeriesNumber = number
    ds.FrameOfReferenceUID = info.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    top = max(float(np.percentile(pixels, 99.5)), 1.0)
    ds.WindowCenter, ds.WindowWidth = round(top / 2), round(top)
    ds.LossyImageCompression = "00"
    return ds


def _neighbours(geometry: Sequence[PlaneGeometry],
                volumes: Sequence[VolumeIndex]) -> list[PlaneGeometry | None]:
    """For each image, the previous plane of its own volume (the next one for a volume's first
    image; None for a volume of one image): what SpacingBetweenSlices is measured to."""
    members: dict[VolumeIndex, list[int]] = {}
    for index, volume in enumerate(volumes):
        members.setdefault(volume, []).append(index)
    neighbours: list[PlaneGeometry | None] = [None] * len(geometry)
    for indices in (m for m in members.values() if len(m) > 1):
        for k, index in enumerate(indices):
            neighbours[index] = geometry[indices[k - 1] if k else indices[1]]
    return neighbours


def _image_dataset(series: Dataset, pixels: np.ndarray, plane: PlaneGeometry, index: int,
                   neighbour: PlaneGeometry | None, add_table: bool) -> Dataset:
    """One image: the series attributes plus its UID, number, geometry and pixels;
    ``neighbour`` is a plane of its own volume next to it (for the slice spacing)."""
    ds = Dataset()
    ds.update(series)
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = index + 1
    corner = plane.first_voxel() + (plane.table_position if add_table else 0.0)
    ds.ImagePositionPatient = _ds(*corner)
    ds.ImageOrientationPatient = _ds(*plane.orientation())
    ds.SliceThickness = _ds(plane.thickness)[0]
    ds.SliceLocation = _ds(float(corner @ plane.normal))[0]
    if neighbour is not None:
        gap = abs(float((neighbour.centre - plane.centre) @ plane.normal))
        ds.SpacingBetweenSlices = _ds(gap)[0]
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelSpacing = _ds(*plane.spacing)
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    return ds

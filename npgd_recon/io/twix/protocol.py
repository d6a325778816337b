"""The ISMRMRD XML header of a twix measurement, from its protocol and its readouts.

The protocol (twixtools' parsed ``hdr``: ``MeasYaps`` is the ASCCONV tree, ``Meas``, ``Dicom``
and ``Config`` the flat XProtocol maps) gives the scan: matrices, fields of view, TR/TE/TI, flip
angle, field strength, scanner and patient. The readouts give what the protocol cannot say
reliably: the coil count and the counter ranges actually acquired, and the k-space centre line
and partition (``CenterLin``/``CenterPar``), which place partial-Fourier data.

Encoded space: ``iRoFTLength x iPEFTLength x i3DFTLength`` (2-D: z = 1), field of view
``readout FOV x readout oversampling`` by ``phase FOV x (1 + phase oversampling)`` by the slice
(2-D) or slab (3-D, ``x (1 + slice oversampling)``) thickness. Recon space: the base resolution
over the protocol's readout and phase FOV, so the reader's image-domain crop removes the readout
oversampling. Times are ms (the protocol's are us), TE one per contrast.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from ismrmrd import xsd
from xsdata.models.datatype import XmlDate

__all__ = ["ReadoutSummary", "dwell_us", "header_from_protocol"]

_TRAJECTORIES = {1: "cartesian", 2: "radial", 4: "spiral", 8: "other"}
_POSITIONS = {p.value for p in xsd.patientPositionType}
_SEXES = {1: "F", 2: "M", 3: "O"}
GAMMA_HZ_PER_T = 42.577478e6


@dataclass(frozen=True)
class ReadoutSummary:
    """What the imaging readouts of a measurement say about its encoding.

    Attributes:
        channels: receive channels per readout.
        maxima: highest value of each ISMRMRD counter (``idx`` field name) over the readouts.
        minima: lowest ``kspace_encode_step_1`` / ``_2`` over the readouts.
        centre_line, centre_partition, centre_column: the k-space centre (``CenterLin``,
            ``CenterPar``, ``CenterCol`` of the first imaging readout).
        measurement_uid: the scanner's ``MeasUID``.
    """

    channels: int
    maxima: dict[str, int]
    minima: dict[str, int]
    centre_line: int
    centre_partition: int
    centre_column: int
    measurement_uid: int


def _value(tree, *keys, default=None):
    """``tree[k0][k1]...``, or ``default`` where a key is missing or the value is empty."""
    for key in keys:
        try:
            tree = tree[key]
        except (KeyError, IndexError, TypeError):
            return default
    return default if tree in ("", None) else tree


def _number(tree, *keys, default: float = 0.0) -> float:
    value = _value(tree, *keys, default=default)
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _text(protocol: dict, key: str) -> str | None:
    """The first non-empty string ``key`` of the Dicom, Meas and Config maps."""
    for section in ("Dicom", "Meas", "Config"):
        value = _value(protocol, section, key)
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # serial numbers and the like are parsed as floats
        if value is not None:
            return str(value).strip() or None
    return None


def dwell_us(protocol: dict) -> float:
    """The imaging readouts' dwell time per (oversampled) sample in us, 0 when unknown."""
    return _number(protocol, "MeasYaps", "sRXSPEC", "alDwellTime", 0) / 1000.0


def header_from_protocol(protocol: dict, readouts: ReadoutSummary) -> xsd.ismrmrdHeader:
    """The ISMRMRD header of one measurement.

    Args:
        protocol: twixtools' parsed protocol of the measurement (``twix[-1]["hdr"]``).
        readouts: what its imaging readouts say (:class:`ReadoutSummary`).
    """
    yaps = protocol.get("MeasYaps", {})
    field = (_number(protocol, "Meas", "flMagneticFieldStrength")
             or _number(yaps, "sProtConsistencyInfo", "flNominalB0"))
    frequency = int(_number(yaps, "sTXSPEC", "asNucleusInfo", 0, "lFrequency")
                    or _number(protocol, "Meas", "lFrequency")
                    or round(field * GAMMA_HZ_PER_T))
    return xsd.ismrmrdHeader(
        version=1,
        subjectInformation=_subject(protocol),
        measurementInformation=_measurement(protocol, yaps, readouts),
        acquisitionSystemInformation=xsd.acquisitionSystemInformationType(
            systemVendor=_text(protocol, "Manufacturer"),
            systemModel=_text(protocol, "ManufacturersModelName"),
            systemFieldStrength_T=field or None,
            receiverChannels=readouts.channels,
            institutionName=_text(protocol, "InstitutionName"),
            deviceSerialNumber=_text(protocol, "DeviceSerialNumber")),
        experimentalConditions=xsd.experimentalConditionsType(H1resonanceFrequency_Hz=frequency),
        encoding=[_encoding(protocol, yaps, readouts)],
        sequenceParameters=_sequence(yaps))


def _identity(value: str | None) -> str | None:
    """A patient identifier, or None for an anonymised placeholder (only ``x``)."""
    return None if value is None or not value.strip("x") else value


def _subject(protocol: dict) -> xsd.subjectInformationType:
    birth = _text(protocol, "PatientBirthDay")
    try:
        birthdate = XmlDate.from_date(datetime.datetime.strptime(birth or "", "%Y%m%d"))
    except ValueError:
        birthdate = None
    weight = _number(protocol, "Meas", "flUsedPatientWeight")
    height = _number(protocol, "Meas", "flPatientHeight")  # mm
    return xsd.subjectInformationType(
        patientName=_identity(_text(protocol, "tPatientName")),
        patientID=_identity(_text(protocol, "PatientID")),
        patientBirthdate=birthdate,
        patientGender=_SEXES.get(int(_number(protocol, "Meas", "PatientSex"))),
        patientWeight_kg=weight or None, patientHeight_m=height / 1000 or None)


def _measurement(protocol: dict, yaps: dict, readouts: ReadoutSummary):
    position = _text(protocol, "tPatientPosition") or "HFS"
    sequence = str(_value(yaps, "tSequenceFileName", default="")).rsplit("\\", 1)[-1]
    serial = _text(protocol, "DeviceSerialNumber")
    uid = readouts.measurement_uid
    return xsd.measurementInformationType(
        measurementID=f"{serial}_{uid}" if serial else str(uid),
        patientPosition=xsd.patientPositionType(position if position in _POSITIONS else "HFS"),
        protocolName=_value(yaps, "tProtocolName") or _text(protocol, "tProtocolName"),
        sequenceName=sequence or None,
        frameOfReferenceUID=_text(protocol, "tFrameOfReference"))


def _encoding(protocol: dict, yaps: dict, readouts: ReadoutSummary) -> xsd.encodingType:
    """Encoded and recon spaces, limits from the readouts, trajectory, acceleration."""
    meas, kspace = protocol.get("Meas", {}), yaps.get("sKSpace", {})
    volumetric = int(_number(kspace, "ucDimension", default=2)) == 4
    oversampling = _number(meas, "flReadoutOSFactor", default=2.0) or 2.0
    base = int(_number(kspace, "lBaseResolution"))
    lines = int(_number(kspace, "lPhaseEncodingLines"))
    plane = _value(yaps, "sSliceArray", "asSlice", 0, default={})
    fov_read, fov_phase = _number(plane, "dReadoutFOV"), _number(plane, "dPhaseFOV")
    thickness = _number(plane, "dThickness")
    nx = int(_number(meas, "iRoFTLength") or round(base * oversampling))
    ny = int(_number(meas, "iPEFTLength") or lines)
    nz = int(_number(meas, "i3DFTLength") or _number(kspace, "lPartitions", default=1)) \
        if volumetric else 1
    phase_os = 1.0 + _number(kspace, "dPhaseOversamplingForDialog")
    slab = thickness * (1.0 + _number(kspace, "dSliceOversamplingForDialog")) if volumetric \
        else thickness
    encoded = xsd.encodingSpaceType(
        matrixSize=xsd.matrixSizeType(x=nx, y=ny, z=nz),
        fieldOfView_mm=xsd.fieldOfViewMm(x=fov_read * oversampling, y=fov_phase * phase_os,
                                         z=slab))
    recon = xsd.encodingSpaceType(
        matrixSize=xsd.matrixSizeType(
            x=base or nx, y=lines or ny,
            z=int(_number(kspace, "lImagesPerSlab", default=nz)) if volumetric else 1),
        fieldOfView_mm=xsd.fieldOfViewMm(x=fov_read, y=fov_phase, z=thickness))
    trajectory, description = _trajectory(protocol, kspace)
    pat = yaps.get("sPat", {})
    return xsd.encodingType(
        encodedSpace=encoded, reconSpace=recon, encodingLimits=_limits(nx, readouts),
        trajectory=xsd.trajectoryType(trajectory), trajectoryDescription=description,
        parallelImaging=xsd.parallelImagingType(accelerationFactor=xsd.accelerationFactorType(
            kspace_encoding_step_1=int(_number(pat, "lAccelFactPE", default=1)) or 1,
            kspace_encoding_step_2=int(_number(pat, "lAccelFact3D", default=1)) or 1)))


def _limits(nx: int, readouts: ReadoutSummary) -> xsd.encodingLimitsType:
    top, low = readouts.maxima, readouts.minima

    def limit(name: str, centre: int = 0, minimum: int = 0) -> xsd.limitType:
        return xsd.limitType(minimum=minimum, maximum=top[name], center=centre)

    return xsd.encodingLimitsType(
        kspace_encoding_step_0=xsd.limitType(minimum=0, maximum=nx - 1,
                                             center=readouts.centre_column),
        kspace_encoding_step_1=limit("kspace_encode_step_1", readouts.centre_line,
                                     low["kspace_encode_step_1"]),
        kspace_encoding_step_2=limit("kspace_encode_step_2", readouts.centre_partition,
                                     low["kspace_encode_step_2"]),
        slice=limit("slice"), contrast=limit("contrast"), phase=limit("phase"),
        repetition=limit("repetition"), set=limit("set"), average=limit("average"),
        segment=limit("segment"))


def _trajectory(protocol: dict, kspace: dict):
    """ISMRMRD trajectory name and description: ramp-sampled (regridded) EPI is ``epi``."""
    name = _TRAJECTORIES.get(int(_number(kspace, "ucTrajectory", default=1)), "other")
    meas = protocol.get("Meas", {})
    if name != "cartesian" or _number(meas, "alRegridMode", 0, default=1) <= 1:
        return name, None
    longs = {"etl": _number(protocol, "MeasYaps", "sFastImaging", "lEPIFactor"),
             "numberOfNavigators": _number(meas, "lNoOfPhaseCorrScans"),
             "rampUpTime": _number(meas, "alRegridRampupTime", 0),
             "rampDownTime": _number(meas, "alRegridRampdownTime", 0),
             "flatTopTime": _number(meas, "alRegridFlattopTime", 0),
             "acqDelayTime": _number(meas, "alRegridDelaySamplesTime", 0),
             "numSamples": _number(meas, "alRegridDestSamples", 0)}
    return "epi", xsd.trajectoryDescriptionType(
        identifier="ConventionalEPI",
        userParameterLong=[xsd.userParameterLongType(name=k, value=int(v))
                           for k, v in longs.items()],
        userParameterDouble=[xsd.userParameterDoubleType(name="dwellTime",
                                                          value=dwell_us(protocol))])


def _sequence(yaps: dict) -> xsd.sequenceParametersType:
    contrasts = max(1, int(_number(yaps, "lContrasts", default=1)))

    def ms(key: str, count: int = 1) -> list[float]:
        values = _value(yaps, key, default=[]) or []
        return [float(v) / 1000.0 for v in values[:count] if v]

    flip = [float(a) for a in (_value(yaps, "adFlipAngleDegree", default=[]) or [])[:1]]
    return xsd.sequenceParametersType(TR=ms("alTR"), TE=ms("alTE", contrasts), TI=ms("alTI"),
                                      flipAngle_deg=flip)

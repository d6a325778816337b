"""Siemens twix files read as ISMRMRD: header from the protocol, readouts with their flags,
noise from the adjustment measurement, oversampling removed, geometry from the readouts.

Synthetic twix files (written with twixtools' own writer from a known image) test the mapping
without a network; twixtools' example scans (``gre.dat``, ``epi.dat``: the ``RAW_DATA`` entries
of the data catalogue, fetched once into the data cache) test it on real scanner files and are
skipped when they cannot be fetched.
"""

from __future__ import annotations

import contextlib
import io
import struct
from pathlib import Path

import numpy as np
import pytest

from npgd_recon.core.fft import fft2c, ifft2c
from npgd_recon.data.catalogue import RAW_DATA
from npgd_recon.data.fetch import FetchError, fetch, find_entry
from npgd_recon.io.assembly import RawDataError
from npgd_recon.io.ismrmrd_file import raw_format, read_raw
from npgd_recon.io.twix import is_twix, read_twix_scan
from npgd_recon.sim.scan_writer import ScanSettings, write_scan

NOISE_BIT = np.uint64(1 << 18)  # ACQ_IS_NOISE_MEASUREMENT
PHASECORR_BIT = np.uint64(1 << 23)
REVERSE_BIT = np.uint64(1 << 21)
# a Siemens quaternion (w, x, y, z): 90 degrees about z, so read = -x, phase = +y, slice = +z
QUATERNION = (0.5 ** 0.5, 0.0, 0.0, 0.5 ** 0.5)
MIX = np.array([[1.0, 0.0], [0.4, 0.8]])  # noise of the two channels: Psi = 2 MIX MIX^T
YAPS = """### ASCCONV BEGIN ###
tProtocolName = "synthetic"
sKSpace.lBaseResolution = {nx}
sKSpace.lPhaseEncodingLines = {ny}
sKSpace.ucDimension = 0x2
sSliceArray.lSize = {slices}
sSliceArray.asSlice[0].dThickness = 5
sSliceArray.asSlice[0].dPhaseFOV = 240
sSliceArray.asSlice[0].dReadoutFOV = 320
sRXSPEC.alDwellTime[0] = 10000
sTXSPEC.asNucleusInfo[0].lFrequency = 123200000
alTR[0] = 500000
alTE[0] = 5000
alTE[1] = 9000
adFlipAngleDegree[0] = 30
lContrasts = 1
### ASCCONV END ###
"""
MEAS = """<XProtocol> {{
<ParamDouble."flReadoutOSFactor"> {{ <Precision> 6 2.0 }}
<ParamDouble."flMagneticFieldStrength"> {{ <Precision> 6 2.89 }}
<ParamLong."iRoFTLength"> {{ {wide} }}
<ParamLong."iPEFTLength"> {{ {ny} }}
<ParamLong."i3DFTLength"> {{ 1 }}
<ParamString."Manufacturer"> {{ "SIEMENS" }}
<ParamString."ManufacturersModelName"> {{ "Synthetic" }}
<ParamString."tPatientPosition"> {{ "HFS" }}
<ParamString."tPatientName"> {{ "xxxxxxx" }}
}}
"""


def _protocol(buffers: list[tuple[str, str]]) -> np.ndarray:
    """A twix protocol header: length, buffer count, then name, length and text per buffer."""
    body = b"".join(name.encode() + b"\0" + struct.pack("<I", len(text)) + text.encode()
                    for name, text in buffers)
    return np.frombuffer(struct.pack("<II", 8 + len(body), len(buffers)) + body, dtype="S1")


def _readout(data: np.ndarray, flags=(), line: int = 0, slice_: int = 0, centre: int = 0,
             position=(0.0, 0.0, 0.0)):
    from twixtools.mdb import Mdb_local

    mdb = Mdb_local(np.asarray(data, dtype=np.complex64))
    for flag in flags:
        mdb.add_flag(flag)
    mdb.mdh.Counter.Lin, mdb.mdh.Counter.Sli = line, slice_
    mdb.mdh.CenterCol, mdb.mdh.CenterLin = data.shape[-1] // 2, centre
    slice_position = mdb.mdh.SliceData.SlicePos
    slice_position.Sag, slice_position.Cor, slice_position.Tra = position
    mdb.mdh.SliceData.Quaternion[:] = QUATERNION
    return mdb


def write_synthetic_twix(path: Path, images: np.ndarray, *, noise_readouts: int = 16,
                         phase_correction: bool = False, seed: int = 0) -> None:
    """A VE twix file of ``images`` ``[slice, y, x]`` seen by two coils (gains 1 and 0.5j),
    readout oversampling 2 (the object in the middle of a field of view twice as wide), FOV
    320 x 240 mm, 5 mm slices 5 mm apart; a first measurement of ``noise_readouts`` noise
    adjustment readouts (covariance ``2 MIX MIX^T``); optionally two reflected
    phase-correction readouts of garbage before each slice."""
    import twixtools

    rng = np.random.default_rng(seed)
    slices, ny, nx = images.shape
    protocol = _protocol([("Config", "<XProtocol> { }\n"),
                          ("Meas", MEAS.format(wide=2 * nx, ny=ny)),
                          ("MeasYaps", YAPS.format(nx=nx, ny=ny, slices=slices))])
    noise = [_readout(MIX @ (rng.standard_normal((2, 128)) + 1j * rng.standard_normal((2, 128))),
                      flags=("NOISEADJSCAN",)) for _ in range(noise_readouts)]
    scan = []
    for s in range(slices):
        canvas = np.zeros((ny, 2 * nx), dtype=complex)
        canvas[:, nx // 2:nx // 2 + nx] = images[s]
        kspace = fft2c(np.array([1.0, 0.5j])[:, None, None] * canvas[None])
        position = (0.0, 0.0, 5.0 * s)
        if phase_correction:
            scan += [_readout(rng.standard_normal((2, 2 * nx)) * 1e3, ("PHASCOR", "REFLECT"),
                              ny // 2, s, ny // 2, position) for _ in range(2)]
        scan += [_readout(kspace[:, line], ("FIRSTSCANINSLICE",) if line == 0 else (), line, s,
                          ny // 2, position) for line in range(ny)]
    raids = ([{"hdr_str": protocol, "mdb": noise}] if noise else []) + \
        [{"hdr_str": protocol, "mdb": scan}]
    with contextlib.redirect_stdout(io.StringIO()):  # twixtools reports what it adds
        twixtools.write_twix(raids, str(path))


def boxes() -> np.ndarray:
    """Two 24 x 32 slices with a box each (odd widths: a box of 12 of 24 rows would leave every
    other k-space line empty, a calibration region ESPIRiT cannot use)."""
    images = np.zeros((2, 24, 32), dtype=complex)
    images[0, 6:19, 8:21] = 1
    images[1, 4:11, 4:29] = 1j
    return images


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("twix") / "meas.dat"
    write_synthetic_twix(path, boxes())
    return path


@pytest.fixture(scope="session")
def twix_examples() -> dict[str, Path]:
    """twixtools' example scans from the data cache, fetched there once (sha256-checked)."""
    try:
        fetch(catalogue=RAW_DATA)
        return {name: find_entry(f"twixtools-{name}")[1][0] for name in ("gre", "epi")}
    except (FetchError, OSError) as error:
        pytest.skip(f"twixtools example scans not available (needs pip and PyPI): {error}")


def test_twix_is_told_from_ismrmrd_by_content_whatever_the_name(synthetic, tmp_path):
    for name in ("scan.h5", "noextension"):
        copy = tmp_path / name
        copy.write_bytes(synthetic.read_bytes())
        assert is_twix(copy) and raw_format(copy) == "twix"
        assert read_raw(copy).volumes[0].kspace.shape == (2, 2, 24, 32)
    hdf5 = tmp_path / "scan.dat"
    write_scan(hdf5, boxes()[:1], settings=ScanSettings(coils=2))
    assert not is_twix(hdf5) and raw_format(hdf5) == "hdf5"
    assert read_raw(hdf5).n_coils == 2


def test_header_carries_matrix_fov_timing_system_and_limits(synthetic):
    header = read_twix_scan(synthetic).header
    encoding = header.encoding[0]
    encoded, recon = encoding.encodedSpace, encoding.reconSpace
    assert (encoded.matrixSize.x, encoded.matrixSize.y, encoded.matrixSize.z) == (64, 24, 1)
    assert (encoded.fieldOfView_mm.x, encoded.fieldOfView_mm.y,
            encoded.fieldOfView_mm.z) == (640, 240, 5)
    assert (recon.matrixSize.x, recon.matrixSize.y) == (32, 24)
    assert (recon.fieldOfView_mm.x, recon.fieldOfView_mm.y) == (320, 240)
    assert encoding.trajectory.value == "cartesian"
    step1 = encoding.encodingLimits.kspace_encoding_step_1
    assert (step1.minimum, step1.maximum, step1.center) == (0, 23, 12)
    assert encoding.encodingLimits.slice.maximum == 1
    sequence = header.sequenceParameters
    assert (sequence.TR, sequence.TE, sequence.flipAngle_deg) == ([500.0], [5.0], [30.0])
    system = header.acquisitionSystemInformation
    assert (system.systemVendor, system.systemModel, system.receiverChannels,
            system.systemFieldStrength_T) == ("SIEMENS", "Synthetic", 2, 2.89)
    assert header.experimentalConditions.H1resonanceFrequency_Hz == 123200000
    assert header.measurementInformation.patientPosition.value == "HFS"
    assert header.measurementInformation.protocolName == "synthetic"
    assert header.subjectInformation.patientName is None  # the anonymised placeholder


def test_noise_adjustment_readouts_come_first_flagged_and_whiten(synthetic):
    scan = read_twix_scan(synthetic)
    flags = scan.acquisitions.heads["flags"]
    assert (scan.measurements, scan.noise) == (2, 16)
    assert np.all(flags[:16] & NOISE_BIT) and not np.any(flags[16:] & NOISE_BIT)
    study = read_raw(synthetic)
    # noise dwell floor(76800 / 128) / 10 = 60 us against 10 us for the image readouts
    expected = 2 * MIX @ MIX.T * 60 / 10
    np.testing.assert_allclose(study.noise_covariance, expected, rtol=0.1, atol=0.6)
    assert study.whitener is not None


def test_oversampling_is_removed_and_the_image_comes_back(synthetic):
    volume = read_raw(synthetic).volumes[0]
    assert volume.kspace.shape == (2, 2, 24, 32) and volume.fully_sampled
    images = np.abs(ifft2c(volume.kspace))  # every whitened coil sees the object
    truth = np.abs(boxes())
    for s in range(2):
        for coil in images[s]:
            np.testing.assert_allclose(coil / coil.max(), truth[s], atol=1e-5)


def test_slices_are_placed_by_the_readouts_position_and_quaternion(synthetic):
    geometry = read_raw(synthetic).volumes[0].geometry
    np.testing.assert_allclose([g.centre for g in geometry], [[0, 0, 0], [0, 0, 5]])
    np.testing.assert_allclose(geometry[0].x_dir, [-1, 0, 0], atol=1e-6)  # read
    np.testing.assert_allclose(geometry[0].y_dir, [0, 1, 0], atol=1e-6)  # phase
    assert geometry[0].spacing == (10.0, 10.0) and geometry[0].thickness == 5.0


def test_phase_correction_readouts_are_flagged_and_skipped(tmp_path):
    path = tmp_path / "pc.dat"
    write_synthetic_twix(path, boxes(), noise_readouts=0, phase_correction=True)
    scan = read_twix_scan(path)
    flags = scan.acquisitions.heads["flags"]
    corrections = (flags & PHASECORR_BIT) != 0
    assert corrections.sum() == 4 and np.all(flags[corrections] & REVERSE_BIT)
    study = read_raw(path)
    assert study.noise_covariance is None  # no noise measurement: no whitening
    images = np.abs(ifft2c(study.volumes[0].kspace[0, 0]))
    np.testing.assert_allclose(images / images.max(), np.abs(boxes()[0]), atol=1e-5)


def _truncate(fraction: float):
    def cut(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[:int(len(data) * fraction)])
    return cut


def _fake_raid_header(path: Path) -> None:
    """A plausible multi-raid header and protocol start, then random bytes."""
    head = bytearray(struct.pack("<II", 0, 1) + struct.pack("<IIQQ", 1, 1, 10240, 40000))
    head += bytes(10240 - len(head))
    head += struct.pack("<II", 4000, 4) + b"Config\0" + bytes(np.random.default_rng(1).integers(
        0, 256, 40000, dtype=np.uint8))
    path.write_bytes(bytes(head))


DAMAGE = {
    "cut in the readouts": (_truncate(0.6), "truncated twix file"),
    "cut after the protocol": (_truncate(0.35), "truncated twix file"),
    "cut in the raid header": (_truncate(0.001), "not an HDF5 file"),
    "garbage after a raid header": (_fake_raid_header, "twix"),
    "random bytes": (lambda p: p.write_bytes(np.random.default_rng(2).bytes(5000)),
                     "not an HDF5 file"),
}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_damaged_twix_files_are_one_line_raw_data_errors(synthetic, tmp_path, name):
    damage, expected = DAMAGE[name]
    path = tmp_path / "meas.dat"
    path.write_bytes(synthetic.read_bytes())
    damage(path)
    with pytest.raises(RawDataError, match=expected) as error:
        read_raw(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_gre_example_reads_as_the_phantom_with_its_protocol(twix_examples):
    scan = read_twix_scan(twix_examples["gre"])
    header = scan.header
    encoded = header.encoding[0].encodedSpace
    assert (encoded.matrixSize.x, encoded.matrixSize.y, encoded.fieldOfView_mm.x) == (320, 160,
                                                                                      400)
    assert header.encoding[0].reconSpace.matrixSize.x == 160
    assert header.acquisitionSystemInformation.receiverChannels == 2
    assert header.sequenceParameters.TE == [3.0] and header.sequenceParameters.TR == [10.0]
    assert header.acquisitionSystemInformation.systemModel == "Skyra"
    study = read_raw(twix_examples["gre"])
    volume = study.volumes[0]
    assert volume.kspace.shape == (1, 2, 160, 160) and volume.fully_sampled
    image = np.sqrt((np.abs(ifft2c(volume.kspace[0])) ** 2).sum(axis=0))
    inside, corner = image[60:100, 60:100].mean(), image[:12, :12].mean()
    assert inside > 5 * corner  # the round phantom fills the middle; the corners are air
    np.testing.assert_allclose(volume.geometry[0].centre, [-2.59, 53.92, -54.0], atol=0.01)
    np.testing.assert_allclose(volume.geometry[0].normal @ [0, 0.0384, 0.9993], -1, atol=1e-3)


def test_epi_example_is_refused_in_one_line(twix_examples):
    header = read_twix_scan(twix_examples["epi"]).header
    description = header.encoding[0].trajectoryDescription
    assert description.identifier == "ConventionalEPI"
    with pytest.raises(RawDataError, match="trajectory is 'epi'"):
        read_raw(twix_examples["epi"])

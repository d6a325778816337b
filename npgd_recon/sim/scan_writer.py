"""Write ISMRMRD raw data as a Cartesian scanner would, from a complex image stack or volume.

:func:`write_scan` turns an object (2-D multi-slice ``[slice, y, x]`` or 3-D ``[z, y, x]``)
into multi-coil k-space (smooth synthetic coil maps of :mod:`npgd_recon.sim.coils`,
``sum_c |S_c|^2 = 1``), optionally oversampled along the readout, undersampled (only acquired
readouts are written), with an asymmetric echo, correlated complex Gaussian coil noise and
noise-calibration readouts (``ACQ_IS_NOISE_MEASUREMENT``, written first). The file is pure
ISMRMRD: the ground truth is returned to the caller (:class:`ScanTruth`), never stored.

Noise level: ``noise`` is the standard deviation of the complex noise per k-space sample before
coil correlation, which is also the image-domain noise per coil (the FFT is orthonormal).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from ismrmrd import xsd
from ismrmrd.hdf5 import acquisition_dtype

from npgd_recon.core.errors import NpgdError
from npgd_recon.core.fft import fft1c, fft2c
from npgd_recon.io.atomic import Outputs
from npgd_recon.sim.coils import COIL_GEOMETRIES, coil_noise_covariance, synthetic_coil_maps
from npgd_recon.sim.noise import complex_noise
from sampling import SamplingPattern

COIL_GROUP = 4  # coils encoded together: bounds the k-space held while simulating

FLAGS = {"first_step1": 1, "last_step1": 2, "first_step2": 3, "last_step2": 4,
         "first_slice": 7, "last_slice": 8, "first_repetition": 13, "last_repetition": 14,
         "noise": 19, "last_measurement": 25}
H1_HZ_3T = 127_740_000


@dataclass(frozen=True)
class ScanSettings:
    """How the simulated scanner acquires.

    Attributes:
        coils: receive channels.
        coil_geometry: the simulated array (:data:`~npgd_recon.sim.coils.COIL_GEOMETRIES`).
        noise: std of the complex k-space noise per sample (0: noiseless imaging data).
        noise_readouts: number of noise-calibration readouts written first (0: none).
        calibration_noise: std in the noise readouts; default ``noise``, or 1 when that is 0.
        oversampling: readout oversampling factor (the encoded FOV along x is this much larger).
        echo_fraction: fraction of each readout acquired (asymmetric echo when < 1; >= 0.5).
        voxel_mm: in-plane voxel size ``(dy, dx)`` in mm.
        slice_mm: slice thickness and spacing (2-D) or partition thickness (3-D) in mm.
        sample_time_us: readout dwell time.
        seed: seed of the noise and of the coil-noise correlation.
    """

    coils: int = 1
    coil_geometry: str = "birdcage"
    noise: float = 0.0
    noise_readouts: int = 32
    calibration_noise: float | None = None
    oversampling: int = 1
    echo_fraction: float = 1.0
    voxel_mm: tuple[float, float] = (1.0, 1.0)
    slice_mm: float = 3.0
    sample_time_us: float = 5.0
    seed: int = 0

    def check(self) -> None:
        """Raise ValueError on settings a scanner could not use."""
        if self.coils < 1 or self.coils > 1024:
            raise NpgdError(f"coils must be between 1 and 1024, got {self.coils}")
        if self.coil_geometry not in COIL_GEOMETRIES:
            raise NpgdError(f"coil geometry must be one of {', '.join(COIL_GEOMETRIES)}, "
                            f"got {self.coil_geometry!r}")
        if not (np.isfinite(self.noise) and self.noise >= 0):
            raise NpgdError(f"noise must be a finite number >= 0, got {self.noise}")
        if self.oversampling < 1 or self.noise_readouts < 0:
            raise NpgdError("oversampling must be >= 1 and noise_readouts >= 0")
        if not 0.5 <= self.echo_fraction <= 1.0:
            raise NpgdError(f"echo_fraction must be in [0.5, 1], got {self.echo_fraction}")
        if min(self.voxel_mm) <= 0 or self.slice_mm <= 0:
            raise NpgdError("voxel and slice sizes must be positive (mm)")


@dataclass
class ScanTruth:
    """What :func:`write_scan` encoded, for evaluation (never stored in the file).

    Attributes:
        image: complex64 ``[slice|z, y, x]``, the object as written.
        maps: complex64 ``[coil, slice|z, y, x]`` coil sensitivities on the recon FOV (None
            when not kept).
        noise_covariance: complex ``[coil, coil]`` coil-noise covariance of the imaging data
            (``noise**2 * Psi``; ``Psi`` has a unit-ish diagonal).
        mask: bool ``[y]`` acquired lines (2-D) or ``[y, z]`` acquired ``(ky, kz)`` (3-D).
    """

    image: np.ndarray
    maps: np.ndarray | None
    noise_covariance: np.ndarray
    mask: np.ndarray


def write_scan(
    path: str | Path,
    image: np.ndarray,
    *,
    volumetric: bool = False,
    pattern: SamplingPattern | np.ndarray | None = None,
    settings: ScanSettings = ScanSettings(),
    group: str = "dataset",
    keep_maps: bool = True,
) -> ScanTruth:
    """Simulate a Cartesian acquisition of ``image`` and write it as an ISMRMRD file.

    Args:
        path: output ``.h5``; replaced atomically (written beside it, then renamed).
        image: complex ``[slice, y, x]`` (2-D multi-slice) or ``[z, y, x]`` (``volumetric``).
        volumetric: 3-D scan: phase encodes along y and z, readout along x.
        pattern: acquired phase encodes: 2-D: bool ``[y]`` or a line pattern/mask ``[y, x]``
            (rows with any sample); 3-D: bool ``[y, z]`` or a pattern over ``(y, z)`` whose
            ``.order`` sets the acquisition order. None: fully sampled.
        settings: the scanner (coils, noise, oversampling, echo, voxel size).
        group: the ISMRMRD dataset group.
        keep_maps: return the coil maps in the truth; False leaves ``maps`` None (a 32-coil
            320x256x256 volume's maps are 5.4 GB; the k-space is encoded a few coils at a
            time, so only the acquired readouts are held).
    """
    settings.check()
    image = np.asarray(image)
    if image.ndim != 3 or min(image.shape[1:]) < 2 or not np.isfinite(image).all():
        raise NpgdError(f"image must be a finite [slice|z, y, x] array, got {image.shape}")
    image = image.astype(np.complex64)
    order = _acquisition_order(pattern, image.shape, volumetric)
    acquired, maps = _encode(image, settings, volumetric, order, keep_maps)
    psi = coil_noise_covariance(settings.coils, settings.seed)
    rng = np.random.default_rng(settings.seed + 1)
    header = _header(image.shape, settings, volumetric)
    heads, data = _image_readouts(acquired, order, settings, volumetric, psi, rng)
    del acquired
    noise_heads, noise_data = _noise_readouts(image.shape[-1] * settings.oversampling,
                                              settings, psi, rng)
    _write_file(Path(path), group, header, np.concatenate([noise_heads, heads]),
                noise_data + data)
    mask = np.zeros(image.shape[1] if not volumetric else image.shape[1::-1], dtype=bool)
    mask[tuple(order.T)] = True
    return ScanTruth(image=image, maps=maps, noise_covariance=settings.noise ** 2 * psi,
                     mask=mask)


def _acquisition_order(pattern, shape, volumetric: bool) -> np.ndarray:
    """``(n, 1)`` rows (2-D) or ``(n, 2)`` ``(row, col)`` (3-D) in acquisition order."""
    plane = (shape[1], shape[0]) if volumetric else (shape[1],)
    if pattern is None:
        return np.argwhere(np.ones(plane, dtype=bool))
    mask = np.asarray(getattr(pattern, "mask", pattern), dtype=bool)
    if not volumetric and mask.ndim == 2 and mask.shape[0] == plane[0]:
        mask = mask.any(axis=1)
    if mask.shape != plane:
        raise NpgdError(f"sampling mask shape {mask.shape} does not match the phase-encode "
                         f"plane {plane} ({'ky x kz' if volumetric else 'ky'})")
    if not mask.any():
        raise NpgdError("the sampling mask selects no phase encodes")
    order = getattr(pattern, "order", None)
    if volumetric and order is not None:
        return np.asarray(order, dtype=np.int64)
    return np.argwhere(mask)


def _encode(image, settings: ScanSettings, volumetric: bool, order: np.ndarray,
            keep_maps: bool):
    """Noiseless acquired readouts ``[coil, slice, line, nx * oversampling]`` (3-D: one
    "slice"), encoded :data:`COIL_GROUP` coils at a time so that a large coil array never
    holds its whole k-space, and the recon-FOV maps ``[coil, slice|z, y, x]`` (None unless
    ``keep_maps``)."""
    nx = image.shape[-1]
    wide = nx * settings.oversampling
    start = wide // 2 - nx // 2
    padded = np.zeros(image.shape[:-1] + (wide,), dtype=np.complex64)
    padded[..., start:start + nx] = image
    plane = image.shape if volumetric else image.shape[1:]  # 2-D slices share one map set
    n_slices = 1 if volumetric else image.shape[0]
    lines = np.empty((settings.coils, n_slices, len(order), wide), dtype=np.complex64)
    maps = np.empty((settings.coils,) + image.shape, dtype=np.complex64) if keep_maps else None
    for first in range(0, settings.coils, COIL_GROUP):
        group = range(first, min(first + COIL_GROUP, settings.coils))
        sensitivities = synthetic_coil_maps(settings.coils, plane, settings.oversampling, group,
                                            settings.coil_geometry)
        if not volumetric:
            sensitivities = sensitivities[:, None]
        kspace = fft2c(sensitivities * padded[None])
        if volumetric:
            kspace = fft1c(kspace, axis=1)
            lines[group.start:group.stop, 0] = kspace[:, order[:, 1], order[:, 0]]
        else:
            lines[group.start:group.stop] = kspace[:, :, order[:, 0]]
        if keep_maps:
            maps[group.start:group.stop] = sensitivities[..., start:start + nx]
    return lines, maps


def _empty_heads(count: int, settings: ScanSettings, samples: int) -> np.ndarray:
    heads = np.zeros(count, dtype=acquisition_dtype["head"])
    heads["version"] = 1
    heads["number_of_samples"] = samples
    heads["available_channels"] = settings.coils
    heads["active_channels"] = settings.coils
    for c in range(settings.coils):
        heads["channel_mask"][:, c // 64] |= np.uint64(1 << (c % 64))
    heads["sample_time_us"] = settings.sample_time_us
    heads["read_dir"] = (1, 0, 0)
    heads["phase_dir"] = (0, 1, 0)
    heads["slice_dir"] = (0, 0, 1)
    return heads


def _set(heads: np.ndarray, index, *names: str) -> None:
    for name in names:
        heads["flags"][index] |= np.uint64(1 << (FLAGS[name] - 1))


def _noise_readouts(samples: int, settings: ScanSettings, psi, rng):
    count = settings.noise_readouts
    sigma = settings.calibration_noise
    sigma = (settings.noise or 1.0) if sigma is None else sigma
    heads = _empty_heads(count, settings, samples)
    _set(heads, slice(None), "noise")
    heads["scan_counter"] = 1 + np.arange(count)
    noise = complex_noise(rng, (settings.coils, count, samples), sigma, psi)
    return heads, [noise[:, i].astype(np.complex64) for i in range(count)]


def _image_readouts(acquired, order, settings: ScanSettings, volumetric: bool, psi, rng):
    """Headers and ``[coil, samples]`` data of every acquired readout, in scanner order, from
    the noiseless readouts ``[coil, slice, line, samples]`` of :func:`_encode`."""
    wide = acquired.shape[-1]
    first = wide - int(round(settings.echo_fraction * wide))
    n_slices = acquired.shape[1]
    count = len(order) * n_slices
    heads = _empty_heads(count, settings, wide - first)
    heads["center_sample"] = wide // 2 - first
    heads["scan_counter"] = settings.noise_readouts + 1 + np.arange(count)
    heads["acquisition_time_stamp"] = np.arange(count)
    data = []
    for s in range(n_slices):
        block = slice(s * len(order), (s + 1) * len(order))
        heads["idx"]["kspace_encode_step_1"][block] = order[:, 0]
        if volumetric:
            heads["idx"]["kspace_encode_step_2"][block] = order[:, 1]
        else:
            heads["idx"]["slice"][block] = s
            heads["position"][block] = (0, 0, (s - (n_slices - 1) / 2) * settings.slice_mm)
        lines = acquired[:, s, :, first:]
        if settings.noise > 0:
            lines = lines + complex_noise(rng, lines.shape, settings.noise, psi)
        data.extend(lines[:, i].astype(np.complex64) for i in range(len(order)))
        steps = ("step1", "step2") if volumetric else ("step1",)
        _set(heads, block.start, "first_slice", *(f"first_{step}" for step in steps))
        _set(heads, block.stop - 1, "last_slice", *(f"last_{step}" for step in steps))
    _set(heads, 0, "first_repetition")
    _set(heads, count - 1, "last_repetition", "last_measurement")
    return heads, data


def _header(shape, settings: ScanSettings, volumetric: bool):
    """The XML header: encoded/recon spaces, limits, Cartesian trajectory, system, subject."""
    n, ny, nx = shape
    dy, dx = settings.voxel_mm
    nz = n if volumetric else 1
    fov_z = settings.slice_mm * nz
    wide = nx * settings.oversampling

    def space(mx):
        return xsd.encodingSpaceType(
            matrixSize=xsd.matrixSizeType(x=mx, y=ny, z=nz),
            fieldOfView_mm=xsd.fieldOfViewMm(x=dx * mx, y=dy * ny, z=fov_z))

    def limit(size, centre=None):
        return xsd.limitType(minimum=0, maximum=size - 1, center=size // 2 if centre is None
                             else centre)

    limits = xsd.encodingLimitsType(
        kspace_encoding_step_0=limit(wide), kspace_encoding_step_1=limit(ny),
        kspace_encoding_step_2=limit(nz), slice=limit(1 if volumetric else n, 0),
        contrast=limit(1, 0), phase=limit(1, 0), repetition=limit(1, 0), set=limit(1, 0),
        average=limit(1, 0), segment=limit(1, 0))
    encoding = xsd.encodingType(encodedSpace=space(wide), reconSpace=space(nx),
                                encodingLimits=limits, trajectory=xsd.trajectoryType.CARTESIAN)
    return xsd.ismrmrdHeader(
        version=1,
        subjectInformation=xsd.subjectInformationType(patientName="Simulated^Phantom",
                                                      patientID="NPGD-SIM"),
        studyInformation=xsd.studyInformationType(studyDescription="npgd-simulate"),
        measurementInformation=xsd.measurementInformationType(
            patientPosition=xsd.patientPositionType.HFS, protocolName="npgd-simulate",
            seriesDescription="simulated Cartesian raw data"),
        acquisitionSystemInformation=xsd.acquisitionSystemInformationType(
            systemVendor="npgd-recon", systemModel="npgd-simulate", systemFieldStrength_T=3.0,
            receiverChannels=settings.coils),
        experimentalConditions=xsd.experimentalConditionsType(H1resonanceFrequency_Hz=H1_HZ_3T),
        encoding=[encoding],
        sequenceParameters=xsd.sequenceParametersType(TR=[10.0], TE=[4.0], flipAngle_deg=[15.0]))


def _write_file(path: Path, group: str, header, heads: np.ndarray, data: list) -> None:
    """Write header and acquisitions to ``path`` all or nothing (:mod:`npgd_recon.io.atomic`)."""
    table = np.zeros(len(heads), dtype=acquisition_dtype)
    table["head"] = heads
    empty = np.zeros(0, dtype=np.float32)
    for i, readout in enumerate(data):
        table["data"][i] = np.ascontiguousarray(readout).view(np.float32).ravel()
        table["traj"][i] = empty
    with Outputs(force=True) as outputs, h5py.File(outputs.file(path), "w") as file:
        dataset = file.create_group(group)
        xml = dataset.create_dataset("xml", (1,), dtype=h5py.special_dtype(vlen=bytes))
        xml[0] = xsd.ToXML(header).encode()
        dataset.create_dataset("data", data=table, maxshape=(None,), chunks=True,
                               fletcher32=True)

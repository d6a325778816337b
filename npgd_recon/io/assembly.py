"""Assemble Cartesian ISMRMRD acquisitions (header + readouts) into independent 2-D problems.

This is the in-memory half of the reader: :func:`assemble_study` takes a parsed XML header and an
:class:`AcquisitionTable` (acquisition headers as ISMRMRD's numpy record array plus each
readout's samples) and returns a :class:`RawStudy`. The file front end
(:mod:`npgd_recon.io.ismrmrd_file`) feeds it from HDF5 in chunks; the streaming server feeds it the
acquisitions it received (:meth:`InMemoryAcquisitions.from_acquisitions`), with no file round trip.

A :class:`RawStudy` holds one :class:`RawVolume` per (contrast, phase, repetition, set), each a
stack of 2-D problems with centred k-space ``[problem, coil, y, x]``:

- 2-D multi-slice scans: a problem is one slice, plane ``ky x kx`` (rows = phase encode,
  columns = readout); the mask marks acquired ky lines over the acquired kx range.
- 3-D scans: a problem is one readout position after an inverse FFT along the readout, plane
  ``ky x kz`` (rows = phase encode, columns = partition encode); the mask marks acquired
  ``(ky, kz)`` pairs and is the same for every problem.

On the way in: noise prewhitening from ``ACQ_IS_NOISE_MEASUREMENT`` readouts, asymmetric echoes
placed by ``center_sample`` (zero-padded), readout oversampling removed (image-domain crop to the
recon field of view), repeated lines averaged. See ``docs/io.md`` for the decisions.

:attr:`RawStudy.fingerprint` identifies the raw data (a SHA-256 of the XML header as parsed, every
acquisition header and the first imaging readout): the same file, or the same stream, gives the
same fingerprint, from which the DICOM writer derives the study's UIDs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import ismrmrd.xsd
import numpy as np
from ismrmrd.hdf5 import acquisition_header_dtype

from npgd_recon.core.errors import NpgdError
from npgd_recon.core.fft import fft1c, ifft1c
from npgd_recon.io.geometry import Encoding, PlaneGeometry, VolumeIndex, header_number
from npgd_recon.io.hybrid import HybridStack
from sampling.pattern import elliptical_radius

__all__ = ["assemble_study", "AcquisitionTable", "InMemoryAcquisitions", "RawDataError",
           "RawStudy", "RawVolume"]

FLAG_NOISE = 19
FLAG_REVERSE = 22
# navigation, phase correction, HP/RT feedback, dummy scans, surface-coil correction,
# phase stabilisation (reference and data): never image data.
SKIPPED_FLAGS = (23, 24, 26, 27, 28, 29, 30, 31)
COUNTERS = ("kspace_encode_step_1", "kspace_encode_step_2", "slice", "contrast", "phase",
            "repetition", "set")
_CHUNK = 1024


class RawDataError(NpgdError):
    """The raw data cannot be read; the message says which file (or stream) and why, in one line."""


class AcquisitionTable(Protocol):
    """Acquisitions as the assembly reads them.

    Attributes:
        heads: ``ismrmrd.hdf5.acquisition_header_dtype`` records, one per acquisition.
    """

    heads: np.ndarray

    def rows(self, start: int, stop: int) -> Sequence[np.ndarray]:
        """The samples of acquisitions ``start .. stop - 1``, each a flat float32 array of
        interleaved real/imaginary values ``[channel, sample]`` (ISMRMRD's on-disk layout)."""


@dataclass
class InMemoryAcquisitions:
    """An :class:`AcquisitionTable` over acquisitions already in memory."""

    heads: np.ndarray
    data: list[np.ndarray]

    def rows(self, start: int, stop: int) -> Sequence[np.ndarray]:
        """The flat samples of acquisitions ``start .. stop - 1``."""
        return self.data[start:stop]

    @classmethod
    def from_acquisitions(cls, acquisitions: Sequence) -> InMemoryAcquisitions:
        """From ``ismrmrd.Acquisition`` objects (e.g. received over the MRD protocol)."""
        heads = np.empty(len(acquisitions), dtype=acquisition_header_dtype)
        for row, acquisition in enumerate(acquisitions):
            heads[row] = np.frombuffer(bytes(acquisition.getHead()),
                                       dtype=acquisition_header_dtype)[0]
        data = [np.ascontiguousarray(a.data, dtype=np.complex64).view(np.float32).ravel()
                for a in acquisitions]
        return cls(heads, data)


@dataclass
class RawVolume:
    """One image volume (a contrast, phase, repetition and set) as independent 2-D problems.

    Attributes:
        kspace: complex64 ``[problem, coil, py, px]``, centred, prewhitened, oversampling
            removed, zeros where not acquired. 2-D: an array ``[slice, coil, ky, kx]``;
            3-D: ``[x, coil, ky, kz]`` (readout positions after an inverse FFT along x) as a
            :class:`~npgd_recon.io.hybrid.HybridStack`, which holds only the acquired profiles
            and builds dense planes when indexed.
        mask: bool ``[problem, py, px]``, True where acquired (3-D: a read-only broadcast of one
            ``[ky, kz]`` mask).
        geometry: one :class:`~npgd_recon.io.geometry.PlaneGeometry` per problem (image
            ``[py, px]``).
        fully_sampled: every line (2-D) or ``(ky, kz)`` point (3-D) inside the encoding limits,
            or inside their inscribed ellipse (3-D), was acquired.
        index: the ISMRMRD counters shared by the volume
            (:class:`~npgd_recon.io.geometry.VolumeIndex`).
    """

    kspace: np.ndarray
    mask: np.ndarray
    geometry: list[PlaneGeometry]
    fully_sampled: bool
    index: VolumeIndex = VolumeIndex()


@dataclass
class RawStudy:
    """Everything :func:`assemble_study` found in one ISMRMRD dataset.

    Attributes:
        volumes: one :class:`RawVolume` per (contrast, phase, repetition, set), sorted.
        header: the parsed XML header (``ismrmrd.xsd.ismrmrdHeader``).
        is_3d: True for 3-D scans (problems are readout positions, planes ``ky x kz``).
        noise_covariance: complex64 ``[coil, coil]`` measured from the noise readouts and scaled
            to the imaging dwell time, or None when the file has no noise readouts.
        whitener: complex64 ``[coil, coil]`` ``W = L^-1`` (``L L^H = noise_covariance``) that was
            applied to the k-space, or None.
        source: where the data came from (a file path or a stream), for messages.
        fingerprint: hex SHA-256 of the XML header, every acquisition header and the first
            imaging readout: the raw data's identity (the DICOM study UIDs derive from it).
    """

    volumes: list[RawVolume]
    header: object
    is_3d: bool
    noise_covariance: np.ndarray | None
    whitener: np.ndarray | None
    source: str
    fingerprint: str

    @property
    def n_coils(self) -> int:
        """Number of (virtual, whitened) coils."""
        return self.volumes[0].kspace.shape[1]


def assemble_study(header, table: AcquisitionTable, source: str) -> RawStudy:
    """Assemble acquisitions into a :class:`RawStudy`.

    Args:
        header: the parsed XML header (``ismrmrd.xsd.ismrmrdHeader``).
        table: the acquisitions (:class:`AcquisitionTable`).
        source: a name for messages (the file path, or the stream's peer).

    Raises:
        RawDataError: no imaging acquisitions, non-Cartesian (reversed) readouts, counters
            outside the header's limits, inconsistent channel or sample counts, non-finite
            samples, or an unusable noise calibration.
    """
    try:
        encoding = Encoding.from_header(header)
    except (ValueError, TypeError, AttributeError) as error:
        raise RawDataError(f"{source}: {error}") from error
    heads = table.heads
    if len(heads) == 0:
        raise RawDataError(f"{source}: no acquisitions")
    noise, image = _classify(heads, source)
    channels = _check_channels(heads, noise, image, header, source)
    _check_counters(heads[image], image, encoding, source)
    covariance, whitener = _noise_whitener(table, heads, noise, image, channels, source)
    volumes = _assemble(table, heads, image, encoding, channels, whitener, source)
    return RawStudy(volumes=volumes, header=header, is_3d=encoding.is_3d,
                    noise_covariance=covariance, whitener=whitener, source=source,
                    fingerprint=_fingerprint(header, table, image[0]))


def _fingerprint(header, table: AcquisitionTable, first: int) -> str:
    """Hex SHA-256 of the XML header, every acquisition header and readout ``first``."""
    digest = hashlib.sha256(ismrmrd.xsd.ToXML(header).encode())
    digest.update(np.ascontiguousarray(table.heads).tobytes())
    digest.update(np.asarray(table.rows(first, first + 1)[0], dtype=np.float32).tobytes())
    return digest.hexdigest()


def _flag(heads: np.ndarray, bit: int) -> np.ndarray:
    return (heads["flags"] & np.uint64(1 << (bit - 1))) != 0


def _classify(heads: np.ndarray, path: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices of noise readouts and of image readouts (encoding space 0, not skipped)."""
    noise = _flag(heads, FLAG_NOISE)
    skipped = np.zeros(len(heads), dtype=bool)
    for bit in SKIPPED_FLAGS:
        skipped |= _flag(heads, bit)
    image = ~noise & ~skipped & (heads["encoding_space_ref"] == 0)
    if not image.any():
        raise RawDataError(f"{path}: no imaging acquisitions (only noise/navigator/other scans)")
    reverse = np.flatnonzero(image & _flag(heads, FLAG_REVERSE))
    if reverse.size:
        raise RawDataError(f"{path}: acquisition {reverse[0]} is a reversed (EPI) readout; "
                           "only standard Cartesian readouts are supported")
    return np.flatnonzero(noise), np.flatnonzero(image)


def _check_channels(heads, noise, image, header, path: str) -> int:
    system = header.acquisitionSystemInformation
    count = header_number(system.receiverChannels, "acquisitionSystemInformation."
                          "receiverChannels", path) if system is not None else None
    expected = int(count) if count else None
    counts = heads["active_channels"].astype(np.int64)
    reference = expected or int(counts[image[0]])
    used = np.concatenate([noise, image])
    wrong = used[counts[used] != reference]
    if wrong.size:
        source = "the header's receiverChannels" if expected else "the first acquisition"
        raise RawDataError(f"{path}: acquisition {wrong[0]} has {counts[wrong[0]]} channels but "
                           f"{source} says {reference}; mismatched channel count")
    if reference < 1:
        raise RawDataError(f"{path}: acquisitions have no active channels")
    return reference


def _check_counters(heads: np.ndarray, index: np.ndarray, encoding: Encoding, path: str) -> None:
    """Every counter inside the header's encoding limits, every line inside the matrix."""
    for name in COUNTERS:
        values = heads["idx"][name].astype(np.int64)
        low, high = encoding.counter_range(name)
        bad = np.flatnonzero((values < low) | (values > high))
        if bad.size:
            raise RawDataError(f"{path}: acquisition {index[bad[0]]} has {name} = "
                               f"{values[bad[0]]}, outside the encoding limits {low}..{high}")
    if encoding.is_3d and heads["idx"]["slice"].any():
        raise RawDataError(f"{path}: multi-slab 3-D data (slice counter > 0) is not supported")
    samples = (heads["number_of_samples"].astype(np.int64) - heads["discard_pre"]
               - heads["discard_post"])
    offset = encoding.nx // 2 - (heads["center_sample"].astype(np.int64) - heads["discard_pre"])
    bad = np.flatnonzero((samples < 1) | (offset < 0) | (offset + samples > encoding.nx))
    if bad.size:
        i = bad[0]
        raise RawDataError(
            f"{path}: acquisition {index[i]} has {heads['number_of_samples'][i]} samples with "
            f"echo at {heads['center_sample'][i]}, which does not fit the encoded readout of "
            f"{encoding.nx} samples; mismatched number of samples")


def _readouts(table: AcquisitionTable, heads: np.ndarray, index: np.ndarray, channels: int,
              path: str):
    """Yield ``(acquisition indices, list of [channel, sample] complex64 arrays)`` in chunks."""
    for start in range(0, len(index), _CHUNK):
        chunk = index[start:start + _CHUNK]
        values = table.rows(int(chunk[0]), int(chunk[-1]) + 1)
        arrays = []
        for i in chunk:
            flat = np.asarray(values[i - chunk[0]])
            samples = int(heads["number_of_samples"][i])
            if flat.size != 2 * channels * samples:
                raise RawDataError(
                    f"{path}: acquisition {i} holds {flat.size} values, expected 2 x {channels} "
                    f"channels x {samples} samples; mismatched number of samples/channels")
            data = np.asarray(flat, dtype=np.float32).view(np.complex64).reshape(channels, samples)
            if not np.isfinite(data).all():
                raise RawDataError(f"{path}: acquisition {i} contains NaN or Inf samples")
            arrays.append(data)
        yield chunk, arrays


def _noise_whitener(table, heads, noise, image, channels, path):
    """Noise covariance (scaled to the imaging dwell time) and whitening matrix, or ``None``s."""
    if noise.size == 0:
        return None, None
    samples = np.concatenate([d for _, chunk in _readouts(table, heads, noise, channels, path)
                              for d in chunk], axis=1).astype(np.complex128)
    if samples.shape[1] < 2 * channels:
        raise RawDataError(f"{path}: {samples.shape[1]} noise samples cannot calibrate "
                           f"{channels} channels; need at least {2 * channels}")
    covariance = samples @ samples.conj().T / samples.shape[1]
    noise_dwell = float(heads["sample_time_us"][noise[0]])
    image_dwell = float(heads["sample_time_us"][image[0]])
    if noise_dwell > 0 and image_dwell > 0:
        covariance *= noise_dwell / image_dwell
    try:
        lower = np.linalg.cholesky(covariance)
    except np.linalg.LinAlgError:
        raise RawDataError(f"{path}: the noise covariance is not positive definite "
                           "(a dead or duplicated channel?); cannot prewhiten") from None
    whitener = np.linalg.solve(lower, np.eye(channels))
    return covariance.astype(np.complex64), whitener.astype(np.complex64)


def _assemble(table, heads, image, encoding: Encoding, channels, whitener, path):
    """Place every image readout into its volume; average repeats; build masks and geometry."""
    image_heads = heads[image]
    keys = np.stack([image_heads["idx"][n].astype(np.int64)
                     for n in ("contrast", "phase", "repetition", "set")], axis=1)
    unique, volume_of = np.unique(keys, axis=0, return_inverse=True)
    n_slices = int(image_heads["idx"]["slice"].max()) + 1
    lines = np.bincount(volume_of.ravel(), minlength=len(unique))
    builders = [_VolumeBuilder(encoding, channels, n_slices, int(n)) for n in lines]
    builder_of = np.zeros(len(heads), dtype=np.int64)
    builder_of[image] = volume_of.ravel()
    for chunk, arrays in _readouts(table, heads, image, channels, path):
        lines = np.zeros((len(chunk), channels, encoding.nx), dtype=np.complex64)
        extents = []
        for row, (i, data) in enumerate(zip(chunk, arrays)):
            head = heads[i]
            first = int(head["discard_pre"])
            data = data[:, first:data.shape[1] - int(head["discard_post"])]
            offset = encoding.nx // 2 - (int(head["center_sample"]) - first)
            lines[row, :, offset:offset + data.shape[1]] = data
            extents.append((offset, offset + data.shape[1]))
        if whitener is not None:
            lines = whitener @ lines
        hybrid = _readout_transform(lines, encoding)
        for row, i in enumerate(chunk):
            builders[builder_of[i]].add(hybrid[row], heads[i], extents[row])
    return [builder.finish(VolumeIndex(*(int(k) for k in key)), path=path)
            for builder, key in zip(builders, unique)]


def _readout_transform(lines: np.ndarray, encoding: Encoding) -> np.ndarray:
    """``[n, coil, nx]`` readouts -> 2-D: k-space cropped to ``nx_keep``; 3-D: x profiles."""
    if not encoding.is_3d and encoding.nx_keep == encoding.nx:
        return lines
    start = encoding.nx // 2 - encoding.nx_keep // 2
    profiles = ifft1c(lines)[..., start:start + encoding.nx_keep]
    return profiles if encoding.is_3d else fft1c(profiles)


class _VolumeBuilder:
    """Accumulates the readouts of one volume; repeated lines are averaged at the end."""

    def __init__(self, encoding: Encoding, channels: int, n_slices: int, lines: int) -> None:
        self.encoding = encoding
        ny, nz, keep = encoding.ny, encoding.nz, encoding.nx_keep
        if encoding.is_3d:  # the acquired profiles, as they come (:mod:`npgd_recon.io.hybrid`)
            self.profiles = np.zeros((lines, channels, keep), dtype=np.complex64)
            self.positions = np.zeros((lines, 2), dtype=np.intp)
            self.added = 0
            self.counts = np.zeros((1, ny, nz), dtype=np.int32)
        else:
            self.kspace = np.zeros((n_slices, channels, ny, keep), dtype=np.complex64)
            self.counts = np.zeros((n_slices, ny, 1), dtype=np.int32)
            self.kx = np.zeros((n_slices, ny, keep), dtype=bool)
            # readout index (encoded grid) of every kept kx column
            self.kx_source = (encoding.nx // 2
                              + (np.arange(keep) - keep // 2) * encoding.nx / keep)
        self.heads: dict[int, np.void] = {}

    def add(self, line: np.ndarray, head: np.void, extent: tuple[int, int]) -> None:
        """Add one readout ``[coil, nx_keep]`` (3-D: x profile) acquired over ``extent``."""
        row = self.encoding.row(int(head["idx"]["kspace_encode_step_1"]))
        if self.encoding.is_3d:
            col = self.encoding.col(int(head["idx"]["kspace_encode_step_2"]))
            self.profiles[self.added] = line
            self.positions[self.added] = row, col
            self.added += 1
            self.counts[0, row, col] += 1
            self.heads.setdefault(0, head)
            return
        slice_ = int(head["idx"]["slice"])
        self.kspace[slice_, :, row] += line
        self.counts[slice_, row] += 1
        self.kx[slice_, row] |= (self.kx_source >= extent[0]) & (self.kx_source <= extent[1] - 1)
        self.heads.setdefault(slice_, head)

    def finish(self, index: VolumeIndex, path: str) -> RawVolume:
        """The averaged k-space with its mask, geometry and fully-sampled flag."""
        label = (f"contrast {index.contrast}, phase {index.phase}, "
                 f"repetition {index.repetition}, set {index.set}")
        missing = [s for s in range(self.counts.shape[0]) if s not in self.heads]
        if missing:
            raise RawDataError(f"{path}: slice {missing[0]} has no acquisitions for {label}")
        acquired = self.counts > 0
        if self.encoding.is_3d:
            kspace = self._hybrid_stack()
            mask = np.broadcast_to(acquired, (len(kspace),) + acquired.shape[1:])
            geometry = [self.encoding.partition_plane(self.heads[0], i)
                        for i in range(len(kspace))]
        else:
            kspace = self.kspace
            if (self.counts > 1).any():
                kspace *= 1.0 / np.maximum(self.counts, 1)[:, None, :, :]
            mask = acquired & self.kx
            geometry = [self.encoding.slice_plane(self.heads[s]) for s in sorted(self.heads)]
        return RawVolume(kspace=kspace, mask=mask, geometry=geometry,
                         fully_sampled=self._fully_sampled(acquired), index=index)

    def _hybrid_stack(self) -> HybridStack:
        """The 3-D profiles with repeated ``(ky, kz)`` points averaged (in place when none)."""
        profiles, positions = self.profiles[:self.added], self.positions[:self.added]
        if (self.counts > 1).any():
            keys = positions[:, 0] * self.counts.shape[2] + positions[:, 1]
            order = np.argsort(keys, kind="stable")
            _, starts, repeats = np.unique(keys[order], return_index=True, return_counts=True)
            profiles = np.add.reduceat(profiles[order], starts, axis=0)
            profiles /= repeats[:, None, None].astype(np.float32)
            positions = positions[order[starts]]
        return HybridStack(profiles, positions[:, 0], positions[:, 1], self.counts.shape[1:])

    def _fully_sampled(self, acquired: np.ndarray) -> bool:
        encoding = self.encoding
        rows = slice(*_span(encoding, "kspace_encode_step_1", encoding.row))
        if not encoding.is_3d:
            return bool(acquired[:, rows].all())
        cols = slice(*_span(encoding, "kspace_encode_step_2", encoding.col))
        box = np.zeros(acquired.shape[1:], dtype=bool)
        box[rows, cols] = True
        ellipse = box & (elliptical_radius(box.shape) <= 1.0)
        return bool(acquired[0][box].all() or acquired[0][ellipse].all())


def _span(encoding: Encoding, counter: str, to_index) -> tuple[int, int]:
    low, high = encoding.counter_range(counter)
    return to_index(low), to_index(high) + 1

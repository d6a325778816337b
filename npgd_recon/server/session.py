"""One ``npgd-serve`` client's stream, from received MRD messages to the images sent back.

A stream is config (optional), XML header, then acquisitions;
noise readouts are kept for prewhitening, image readouts are buffered per slice until
``ACQ_LAST_IN_SLICE`` (a 3-D volume is one slice) or the client's CLOSE. A finished slice is
assembled in memory with the noise readouts by the very code ``npgd-recon`` runs on a file
(:func:`~npgd_recon.io.assembly.assemble_study`,
:func:`~npgd_recon.recon.pipeline.reconstruct_study`); its magnitude images go back as
``ismrmrd.Image`` messages, then CLOSE answers CLOSE (the transport, :mod:`npgd_recon.server.
transport`, does the sending). Reconstructors are built once and shared; a lock serialises their
use.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import ismrmrd
import numpy as np
from ismrmrd.serialization import ConfigFile, ConfigText
from ismrmrd.xsd import ismrmrdHeader

from npgd_recon.io.assembly import InMemoryAcquisitions, RawStudy, assemble_study
from npgd_recon.io.geometry import Encoding
from npgd_recon.io.ismrmrd_images import to_ismrmrd_image
from npgd_recon.models.registry import shipped_models
from npgd_recon.recon.base import Reconstructor
from npgd_recon.recon.methods import make_reconstructor, reconstructor_class
from npgd_recon.recon.pipeline import Reconstruction, reconstruct_study
from npgd_recon.server.config import (
    ConfigError,
    SessionConfig,
    parse_config_file,
    parse_config_text,
)

log = logging.getLogger(__name__)

MIB = 1 << 20
_ACQ_HEADER_BYTES = 340
_UINT16_PEAK = 32767  # the first slice's maximum; later, brighter slices have 2x headroom
_dump_numbers = itertools.count(1)


class StreamError(ValueError):
    """The stream broke the protocol or a server limit; the message says how, in one line."""


@dataclass(frozen=True)
class Limits:
    """Per-connection bounds: one message field, all buffered readouts, seconds of silence."""

    max_message_bytes: int = 64 * MIB
    max_buffer_bytes: int = 2048 * MIB
    idle_timeout_s: float = 600.0


class ReconstructorPool:
    """Reconstructors built once (the server's own at start, others on first use) and shared
    by every connection; ``compute_lock`` serialises their use."""

    def __init__(self, method: str = "npgd", weights: str | None = None, device: str = "auto",
                 batch: int = 8, precision: str = "auto", compile: bool = False) -> None:
        self.default = SessionConfig(method=method, weights=weights)
        self.compute_lock = threading.Lock()
        self._device, self._batch, self._precision = device, batch, precision
        self._compile = compile
        self._cache: dict[tuple[str, str | None], Reconstructor] = {}
        self._cache_lock = threading.Lock()
        self.get(self.default)

    def get(self, config: SessionConfig) -> Reconstructor:
        """The reconstructor for a config; a client may name only the server's ``--weights``
        or a shipped model (never an arbitrary file on the server)."""
        weights = None
        if reconstructor_class(config.method).uses_weights:
            allowed = (self.default.weights, *shipped_models())
            if config.weights is not None and config.weights not in allowed:
                names = ", ".join(n for n in allowed if n) or "none"
                raise ConfigError(f"weights {config.weights!r} are not offered by this server "
                                  f"({names})")
            weights = config.weights or self.default.weights
        key = (config.method, weights)
        with self._cache_lock:
            if key not in self._cache:
                self._cache[key] = make_reconstructor(config.method, weights, self._device,
                                                      self._batch, precision=self._precision,
                                                      compile=self._compile)
            return self._cache[key]


class StreamDump:
    """``--dump``: one stream as received (header, acquisitions, waveforms), an ISMRMRD file."""

    def __init__(self, folder: Path, header_xml: str) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.path = folder / f"stream-{stamp}-{next(_dump_numbers):04d}.h5"
        self._dataset = ismrmrd.Dataset(str(self.path), "dataset", create_if_needed=True)
        self._dataset.write_xml_header(header_xml)

    def add(self, item: ismrmrd.Acquisition | ismrmrd.Waveform) -> None:
        """Append one acquisition or waveform."""
        if isinstance(item, ismrmrd.Waveform):
            self._dataset.append_waveform(item)
        else:
            self._dataset.append_acquisition(item)

    def close(self) -> None:
        """Close the file (it stays, complete or not)."""
        self._dataset.close()


def _nbytes(acquisition: ismrmrd.Acquisition) -> int:
    return acquisition.data.nbytes + acquisition.traj.nbytes + _ACQ_HEADER_BYTES


class Session:
    """One client's stream: turns received messages into the images to send back."""

    def __init__(self, pool: ReconstructorPool, limits: Limits, peer: str,
                 dump_dir: Path | None = None) -> None:
        self.pool, self.limits, self.peer = pool, limits, peer
        self.config = pool.default
        self.recon = pool.get(self.config)
        self.header: ismrmrdHeader | None = None
        self.images_sent = 0
        self._dump_dir = dump_dir
        self._dump: StreamDump | None = None
        self._noise: list[ismrmrd.Acquisition] = []
        self._slices: dict[int, list[ismrmrd.Acquisition]] = {}
        self._buffered = 0
        self._acquisitions = 0
        self._scale: float | None = None
        self._slice_range = (0, 0)

    def receive(self, message) -> list[ismrmrd.Image]:
        """Handle one message; returns the images of any slice it completed."""
        if isinstance(message, ConfigFile | ConfigText):
            self._configure(message)
        elif isinstance(message, ismrmrdHeader):
            self._set_header(message)
        elif isinstance(message, ismrmrd.Acquisition):
            return self._add(message)
        elif isinstance(message, ismrmrd.Waveform):
            if self._dump is not None:
                self._dump.add(message)
        elif isinstance(message, str):
            log.info("%s: text: %s", self.peer, message.strip()[:500])
        else:
            log.info("%s: ignored a %s message", self.peer, type(message).__name__)
        return []

    def finish(self) -> list[ismrmrd.Image]:
        """The client closed the stream: reconstruct every slice still buffered."""
        return [image for index in sorted(self._slices) for image in self._flush(index)]

    def close(self) -> None:
        """Release the dump file and the buffers."""
        if self._dump is not None:
            self._dump.close()
        self._noise, self._slices = [], {}

    def _configure(self, message: str) -> None:
        if self._acquisitions:
            raise StreamError("a config message after the first acquisition")
        parse = parse_config_file if isinstance(message, ConfigFile) else parse_config_text
        self.config = parse(message, self.pool.default)
        self.recon = self.pool.get(self.config)
        config = self.config
        log.info("%s: method %s%s, %s images, series %d", self.peer, config.method,
                 f" ({self.recon.model_name})" if self.recon.model_name else "", config.dtype,
                 config.series_index)

    def _set_header(self, header: ismrmrdHeader) -> None:
        if self.header is not None:
            raise StreamError("a second XML header")
        try:
            self._slice_range = Encoding.from_header(header).counter_range("slice")
        except (ValueError, TypeError, AttributeError) as error:
            raise StreamError(f"XML header: {error}") from None
        self.header = header
        if self._dump_dir is not None:
            self._dump = StreamDump(self._dump_dir, header.toXML())
            log.info("%s: dumping the stream to %s", self.peer, self._dump.path)

    def _add(self, acquisition: ismrmrd.Acquisition) -> list[ismrmrd.Image]:
        if self.header is None:
            raise StreamError("an acquisition before the XML header")
        self._acquisitions += 1
        if self._dump is not None:
            self._dump.add(acquisition)
        self._buffered += _nbytes(acquisition)
        if self._buffered > self.limits.max_buffer_bytes:
            raise StreamError(f"more than {self.limits.max_buffer_bytes // MIB} MiB of "
                              "acquisitions buffered (--max-buffer-mb); does the stream set "
                              "ACQ_LAST_IN_SLICE?")
        if acquisition.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
            self._noise.append(acquisition)
            return []
        index = acquisition.idx.slice
        if not self._slice_range[0] <= index <= self._slice_range[1]:
            raise StreamError(f"slice {index} is outside the header's limits {self._slice_range}")
        self._slices.setdefault(index, []).append(acquisition)
        if acquisition.is_flag_set(ismrmrd.ACQ_LAST_IN_SLICE):
            return self._flush(index)
        return []

    def _flush(self, index: int) -> list[ismrmrd.Image]:
        lines = self._slices.pop(index)
        self._buffered -= sum(_nbytes(a) for a in lines)
        study = self._read_slice(lines)
        with self.pool.compute_lock:
            result = reconstruct_study(study, self.recon, progress=False)
        return self._to_images(study, result, index)

    def _read_slice(self, lines: list[ismrmrd.Acquisition]) -> RawStudy:
        """The noise and one slice's readouts assembled in memory exactly as ``npgd-recon``
        assembles a file; the slice is stored as slice 0 (the assembly wants slices 0..n-1)."""
        for acquisition in lines:
            acquisition.idx.slice = 0
        table = InMemoryAcquisitions.from_acquisitions(self._noise + lines)
        return assemble_study(self.header, table, f"stream from {self.peer}")

    def _to_images(self, study: RawStudy, result: Reconstruction,
                   index: int) -> list[ismrmrd.Image]:
        magnitude = np.abs(result.images)
        dtype = np.uint16 if self.config.dtype == "uint16" else np.float32
        if dtype == np.uint16:
            if self._scale is None:
                peak = float(magnitude.max())
                self._scale = _UINT16_PEAK / peak if peak > 0 else 1.0
            magnitude = np.clip(np.rint(magnitude * self._scale), 0, 65535)
        window = float(np.percentile(magnitude, 99.5))
        meta = {"DataRole": "Image",
                "ImageProcessingHistory": ["NPGD-RECON", self.recon.method.upper()],
                "WindowCenter": window / 2, "WindowWidth": window}
        planes = iter(zip(magnitude, result.geometry))
        images = []
        for volume in study.volumes:
            for problem in range(len(volume.kspace)):
                pixels, plane = next(planes)
                image = to_ismrmrd_image(pixels, plane, self.images_sent,
                                         series_index=self.config.series_index, dtype=dtype,
                                         meta=meta, contrast=volume.contrast,
                                         repetition=volume.repetition)
                image.slice = problem if study.is_3d else index
                image.phase, image.set = volume.phase, volume.set
                self.images_sent += 1
                images.append(image)
        return images

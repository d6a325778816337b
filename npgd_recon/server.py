"""``npgd-serve``: reconstruct MRD streams (the ISMRMRD streaming protocol) for Gadgetron-style
pipelines and python-ismrmrd-server clients, and send the images back.

One thread per connection. A stream is config (optional), XML header, then acquisitions;
noise readouts are kept for prewhitening, image readouts are buffered per slice until
``ACQ_LAST_IN_SLICE`` (a 3-D volume is one slice) or the client's CLOSE. A finished slice is
written with the header and the noise readouts into a temporary ISMRMRD file and goes through
the very code ``npgd-recon`` runs (:func:`~npgd_recon.ismrmrd_reader.read_raw`,
:func:`~npgd_recon.pipeline.reconstruct_study`); its magnitude images go back as
``ismrmrd.Image`` messages, then CLOSE answers CLOSE. Reconstructors are built once and shared;
a lock serialises their use. Protocol violations, limits and failures end only their own
connection, with one log line (and a TEXT message to the client where it can still read it).
"""

from __future__ import annotations

import itertools
import logging
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import ismrmrd
import numpy as np
from ismrmrd.serialization import ConfigFile, ConfigText, ProtocolDeserializer, ProtocolSerializer
from ismrmrd.xsd import ismrmrdHeader

from npgd_recon.geometry import Encoding
from npgd_recon.ismrmrd_images import to_ismrmrd_image
from npgd_recon.ismrmrd_reader import RawStudy, read_raw
from npgd_recon.pipeline import Reconstruction, reconstruct_study
from npgd_recon.reconstruct import Reconstructor, make_reconstructor
from npgd_recon.registry import shipped_models
from npgd_recon.server_config import (
    ConfigError,
    SessionConfig,
    parse_config_file,
    parse_config_text,
)

log = logging.getLogger(__name__)

MIB = 1 << 20
_ACQ_HEADER_BYTES = 340
_UINT16_PEAK = 32767  # the first slice's maximum; later, brighter slices have 2x headroom
_POLL_S = 0.2
_JOIN_S = 5.0
_DRAIN_BYTES = MIB
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
        if config.method in ("npgd", "resnet"):
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


class _LimitedReader:
    """The connection's input: every read is complete (else EOFError) and at most ``limit``."""

    def __init__(self, stream, limit: int) -> None:
        self._stream, self._limit = stream, limit

    def read(self, size: int) -> bytes:
        size = int(size)
        if not 0 <= size <= self._limit:
            raise StreamError(f"a message declares {size} bytes, above the limit of "
                              f"{self._limit // MIB} MiB (--max-message-mb)")
        data = self._stream.read(size)
        if len(data) < size:
            raise EOFError(f"stream ended inside a message ({len(data)} of {size} bytes)")
        return data


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
        """The header, the noise and one slice's readouts as a file, read as ``npgd-recon``
        reads one; the slice is stored as slice 0 (the reader wants slices 0..n-1)."""
        for acquisition in lines:
            acquisition.idx.slice = 0
        with tempfile.TemporaryDirectory(prefix="npgd-serve-") as folder:
            path = Path(folder) / "slice.h5"
            with ismrmrd.File(str(path), "w") as file:
                group = file["dataset"]
                group.header = self.header
                group.acquisitions = self._noise + lines
            return read_raw(path)

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


class ReconServer:
    """The TCP listener: a thread per connection, :meth:`shutdown` from any thread."""

    def __init__(self, pool: ReconstructorPool, host: str = "127.0.0.1", port: int = 9002,
                 limits: Limits | None = None, dump_dir: Path | None = None) -> None:
        self.pool, self.limits, self.dump_dir = pool, limits or Limits(), dump_dir
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, port), family=family)
        self._listener.settimeout(_POLL_S)
        self._stop = threading.Event()
        self._clients: dict[threading.Thread, socket.socket] = {}
        self._lock = threading.Lock()

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` actually bound (``port=0`` picks a free one)."""
        return self._listener.getsockname()[:2]

    def serve_forever(self) -> None:
        """Accept connections until :meth:`shutdown`; then close every socket."""
        try:
            while not self._stop.is_set():
                try:
                    conn, peer = self._listener.accept()
                except TimeoutError:
                    continue
                except OSError as error:  # e.g. out of file descriptors: wait, go on
                    log.error("accept failed: %s", error)
                    self._stop.wait(_POLL_S)
                    continue
                thread = threading.Thread(target=self._serve, args=(conn, peer), daemon=True,
                                          name=f"npgd-serve {peer[0]}:{peer[1]}")
                with self._lock:
                    self._clients[thread] = conn
                thread.start()
        finally:
            self._close_all()

    def shutdown(self) -> None:
        """Stop accepting; :meth:`serve_forever` closes the sockets and returns."""
        self._stop.set()

    def _close_all(self) -> None:
        self._listener.close()
        with self._lock:
            clients = list(self._clients.items())
        for _, conn in clients:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread, _ in clients:
            thread.join(_JOIN_S)

    def _serve(self, conn: socket.socket, peer: tuple) -> None:
        name = f"{peer[0]}:{peer[1]}"
        conn.settimeout(self.limits.idle_timeout_s)
        reader, writer = conn.makefile("rb"), conn.makefile("wb")
        out = ProtocolSerializer(writer)
        session = None
        start = time.perf_counter()
        try:
            session = Session(self.pool, self.limits, name, self.dump_dir)
            stream = _LimitedReader(reader, self.limits.max_message_bytes)
            for message in ProtocolDeserializer(stream).deserialize():
                _send(out, writer, session.receive(message))
            _send(out, writer, session.finish())
            out.close()
            log.info("%s: %d images (%s) in %.1f s", name, session.images_sent,
                     session.recon.method, time.perf_counter() - start)
        except (EOFError, ConnectionError, TimeoutError) as error:
            reason = "server shutting down" if self._stop.is_set() else \
                f"client went away mid-stream ({error or type(error).__name__})"
            log.warning("%s: connection ended: %s", name, reason)
        except Exception as error:  # any failure ends this connection only
            text = (str(error).splitlines() or [type(error).__name__])[0]
            log.error("%s: connection ended: %s", name, text)
            _report(conn, out, writer, f"npgd-serve: error: {text}")
        finally:
            if session is not None:
                session.close()
            for handle in (reader, writer, conn):
                _close_quietly(handle)
            with self._lock:
                self._clients.pop(threading.current_thread(), None)


def _send(out: ProtocolSerializer, writer, images: list[ismrmrd.Image]) -> None:
    for image in images:
        out.serialize(image)
    writer.flush()


def _report(conn: socket.socket, out: ProtocolSerializer, writer, text: str) -> None:
    """Send TEXT + CLOSE, then read what the client still sends (bounded) so that closing
    does not reset the connection before it has read them."""
    try:
        out.serialize(text)
        out.close()
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(_POLL_S)
        drained = 0
        while drained < _DRAIN_BYTES:
            chunk = conn.recv(65536)
            if not chunk:
                break
            drained += len(chunk)
    except (OSError, ValueError):
        pass


def _close_quietly(handle) -> None:
    try:
        handle.close()
    except OSError:
        pass

"""One ``npgd-serve`` client's stream, from received MRD messages to the messages sent back.

A stream is config (optional: ``CONFIG_FILE`` or ``CONFIG_TEXT``), XML header, an optional
``TEXT`` with python-ismrmrd-server's JSON (``parameters.config`` chooses the config), then
acquisitions; noise readouts are kept for prewhitening, image readouts are buffered per slice
until ``ACQ_LAST_IN_SLICE`` (a 3-D volume is one slice) or the client's CLOSE. A finished slice is
assembled in memory with the noise readouts by the very code ``npgd-recon`` runs on a file
(:func:`~npgd_recon.io.assembly.assemble_study`,
:func:`~npgd_recon.recon.pipeline.reconstruct_study`); its magnitude images go back as
``ismrmrd.Image`` messages, with ``TEXT`` log messages as the reference server sends them (what
runs; warnings; the processing time of the image series). The transport
(:mod:`npgd_recon.server.transport`) does the sending.

Reconstructors are built once and shared by every connection (:class:`ReconstructorPool`);
they hold no per-call state, so a session calls its shared one directly, sums the compute time
each call returns and the time it waited for a slot, and checks before every call that its
client is still there. At most :meth:`ReconstructorPool.workers` slices run at once per device
(one on a GPU; on the CPU the workers of the pool's
:class:`~npgd_recon.core.threads.ThreadBudget`, each with its share of the cores); a session
whose client has gone away stops at the next slice (or batch) boundary.

Images never leave with NaN or Inf pixels: a slice (or 3-D volume) whose reconstruction has any
is not sent; the client gets an ``ERROR`` ``TEXT`` naming it (as ``npgd-recon`` refuses to write
such images), the log a warning, and the stream goes on with its next slice.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import ismrmrd
import numpy as np
from ismrmrd.serialization import ConfigFile, ConfigText
from ismrmrd.xsd import ismrmrdHeader

from npgd_recon.core.device import pick_device
from npgd_recon.core.threads import plan_threads
from npgd_recon.io.assembly import InMemoryAcquisitions, RawStudy, assemble_study
from npgd_recon.io.geometry import Encoding
from npgd_recon.io.ismrmrd_images import image_meta, to_ismrmrd_image
from npgd_recon.models.registry import default_weights, shipped_models
from npgd_recon.recon.base import ReconOptions, Reconstructor
from npgd_recon.recon.methods import make_reconstructor, reconstructor_class
from npgd_recon.recon.pipeline import Reconstruction, reconstruct_study
from npgd_recon.server.config import (
    Choice,
    ConfigError,
    SessionConfig,
    parse_config_file,
    parse_config_text,
    parse_text_message,
)
from npgd_recon.server.protocol import MIB, StreamError, Text, log_text

__all__ = ["MIB", "Cancelled", "Limits", "ReconstructorPool", "Session", "StreamError"]

log = logging.getLogger(__name__)

_ACQ_HEADER_BYTES = 340
_PEAKS = {"uint16": 32767, "int16": 4095}  # the first slice's maximum (int16: 12 bits stored)
_WAIT_S = 0.2
_dump_numbers = itertools.count(1)


class Cancelled(Exception):
    """The client went away (or the server is stopping): its remaining work is dropped."""


@dataclass(frozen=True)
class Limits:
    """Per-connection bounds: one message field, all buffered readouts, seconds of silence."""

    max_message_bytes: int = 64 * MIB
    max_buffer_bytes: int = 2048 * MIB
    idle_timeout_s: float = 60.0


class ReconstructorPool:
    """Reconstructors built once (the server's own at start, others on first use) and shared
    by every connection, and the slots that bound how many reconstructions run at once.

    ``options`` are the server's (``weights``: its own model, offered to clients besides the
    shipped ones; ``device``, ``batch``, ``precision``, ``compile`` for every reconstructor); a
    client's config chooses the method, the model and the CS weight. Slots are counted per
    device: a network on a GPU gets ``workers`` slots on that GPU (default 1), everything else
    (networks on the CPU, zero filling, BART) the CPU's: :attr:`budget` splits the cores among
    them (``workers`` x ``threads``, :func:`~npgd_recon.core.threads.plan_threads`). The process
    gives each reconstruction its threads once, at start
    (:func:`~npgd_recon.core.threads.apply_thread_budget`; ``npgd-serve`` does).
    """

    def __init__(self, method: str = "npgd", options: ReconOptions | None = None,
                 workers: int | None = None, threads: int | None = None) -> None:
        self.budget = plan_threads(workers, threads)
        self._options = options or ReconOptions()
        self.default = SessionConfig(method=method, weights=self._options.weights)
        self._gpu_workers = workers or 1
        self._cache: dict[tuple, Reconstructor] = {}
        self._cache_lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self.get(self.default)

    def get(self, config: SessionConfig, plane: tuple[int, int] | None = None,
            coils: int | None = None) -> Reconstructor:
        """The reconstructor for a config; a client may name only the server's ``--weights``
        or a shipped model (never an arbitrary file on the server). Without either, a network
        method takes the default model for the device and, once a header says them, the
        problems' matrix ``plane`` and coil count ``coils``, and the config's ``map_sets``
        (:func:`~npgd_recon.models.registry.default_weights`)."""
        weights = None
        network = reconstructor_class(config.method).uses_weights
        if network:
            allowed = (self.default.weights, *shipped_models())
            if config.weights is not None and config.weights not in allowed:
                names = ", ".join(n for n in allowed if n) or "none"
                raise ConfigError(f"weights {config.weights!r} are not offered by this server "
                                  f"({names})")
            weights = config.weights or self.default.weights or default_weights(
                config.method, pick_device(self._options.device).type, plane, coils,
                config.map_sets)
        lam = config.cs_lambda if not network else None
        key = (config.method, weights, lam)
        with self._cache_lock:
            if key not in self._cache:
                options = replace(self._options, weights=weights, lam=lam)
                self._cache[key] = make_reconstructor(config.method, options)
            return self._cache[key]

    def workers(self, recon: Reconstructor) -> tuple[str, int]:
        """The device whose slots ``recon`` uses, and how many reconstructions it runs at once."""
        kind = recon.device.type if type(recon).uses_weights else "cpu"
        return kind, self.budget.workers if kind == "cpu" else self._gpu_workers

    @contextmanager
    def slot(self, recon: Reconstructor, cancelled: Callable[[], bool]) -> Iterator[float]:
        """Hold one of the device's slots; yields the seconds spent waiting for it. Waiting
        ends with :class:`Cancelled` if ``cancelled()`` turns true."""
        kind, count = self.workers(recon)
        with self._cache_lock:
            semaphore = self._slots.setdefault(kind, threading.BoundedSemaphore(count))
        start = time.perf_counter()
        while not semaphore.acquire(timeout=_WAIT_S):
            if cancelled():
                raise Cancelled("the client went away while waiting for a reconstruction slot")
        try:
            yield time.perf_counter() - start
        finally:
            semaphore.release()


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
    """One client's stream: turns received messages into the messages to send back (images
    and ``TEXT`` strings)."""

    def __init__(self, pool: ReconstructorPool, limits: Limits, peer: str,
                 dump_dir: Path | None = None,
                 cancelled: Callable[[], bool] = lambda: False) -> None:
        self.pool, self.limits, self.peer = pool, limits, peer
        self.cancelled = cancelled
        self.config = pool.default
        self.recon = pool.get(self.config)
        self.header: ismrmrdHeader | None = None
        self._plane: tuple[int, int] | None = None  # the header's problem matrix
        self._coils: int | None = None  # the header's receiver channels
        self._is_3d = False  # the header's encoding is 3-D (one set of maps per volume)
        self.images_sent = 0
        self.slices_done = 0
        self._dump_dir = dump_dir
        self._dump: StreamDump | None = None
        self._noise: list[ismrmrd.Acquisition] = []
        self._slices: dict[int, list[ismrmrd.Acquisition]] = {}
        self._buffered = 0
        self._acquisitions = 0
        self._scale: float | None = None
        self._slice_range = (0, 0)
        self._started = False
        self._processing_s = 0.0  # holding a slot: assembly, ESPIRiT, reconstructor, images
        self._queued_s = 0.0  # waiting for a slot
        self._recon_s = 0.0
        self._warnings: list[str] = []

    def receive(self, message) -> list:
        """Handle one message; returns what to send back (images of a slice it completed,
        ``TEXT`` strings)."""
        if isinstance(message, ConfigFile | ConfigText):
            return self._configure(message)
        if isinstance(message, ismrmrdHeader):
            self._set_header(message)
        elif isinstance(message, ismrmrd.Acquisition):
            return self._add(message)
        elif isinstance(message, ismrmrd.Waveform):
            if self._dump is not None:
                self._dump.add(message)
        elif isinstance(message, Text | str):
            return self._text(message)
        else:
            log.info("%s: ignored a %s message", self.peer, type(message).__name__)
        return []

    def finish(self) -> list:
        """The client closed the stream: reconstruct every slice still buffered; then the
        series' processing time as a ``TEXT`` (compute and time queued for a slot apart)."""
        out = self._say_warnings()
        out += [message for index in sorted(self._slices) for message in self._flush(index)]
        if self._started and self.slices_done:
            compute, queued = self._processing_s * 1e3, self._queued_s * 1e3
            text = (f"processing time for image series {self.config.series_index}: "
                    f"{self.images_sent} images, {compute:.2f} ms compute "
                    f"({self._recon_s * 1e3:.2f} ms in {self.recon.method}) + {queued:.2f} ms "
                    f"queued for a worker = {compute + queued:.2f} ms")
            log.info("%s: %s", self.peer, text)
            out += self._say("INFO", text)
        return out

    def close(self) -> None:
        """Release the dump file and the buffers."""
        if self._dump is not None:
            self._dump.close()
        self._noise, self._slices = [], {}

    def _reconstructor(self, config: SessionConfig) -> Reconstructor:
        """The pool's reconstructor for ``config`` on this stream's problems: a 3-D volume keeps
        one set of maps whatever ``map_sets`` says, so its model is chosen for one set."""
        chosen = replace(config, map_sets=1) if self._is_3d else config
        return self.pool.get(chosen, self._plane, self._coils)

    def _choose(self, choice: Choice) -> list:
        """Apply a config message; its warnings wait until the config is fixed (the first
        acquisition), so that a later message naming a method replaces them."""
        recon = self._reconstructor(choice.config)
        self.config, self.recon = choice.config, recon
        if choice.named:
            self._warnings = list(choice.warnings)
        return []

    def _say(self, level: str, text: str) -> list[str]:
        """A ``TEXT`` log message for the client, unless the config turned them off."""
        return [log_text(level, text)] if self.config.log_text else []

    def _say_warnings(self) -> list:
        warnings, self._warnings = self._warnings, []
        for warning in warnings:
            log.warning("%s: %s", self.peer, warning)
        return [text for warning in warnings for text in self._say("WARNING", warning)]

    def _configure(self, message: str) -> list:
        if self._acquisitions:
            raise StreamError("a config message after the first acquisition")
        parse = parse_config_file if isinstance(message, ConfigFile) else parse_config_text
        return self._choose(parse(message, self.pool.default))

    def _text(self, text: str) -> list:
        log.info("%s: text: %s", self.peer, text.strip()[:500])
        choice = parse_text_message(text, self.config, self.pool.default)
        if choice is None:
            return []
        if self._acquisitions:
            log.info("%s: a JSON config in a TEXT after the first acquisition is ignored",
                     self.peer)
            return []
        return self._choose(choice)

    def _set_header(self, header: ismrmrdHeader) -> None:
        if self.header is not None:
            raise StreamError("a second XML header")
        try:
            encoding = Encoding.from_header(header)
            self._slice_range = encoding.counter_range("slice")
        except (ValueError, TypeError, AttributeError) as error:
            raise StreamError(f"XML header: {error}") from None
        self.header, self._plane, self._is_3d = header, encoding.plane, encoding.is_3d
        system = header.acquisitionSystemInformation
        self._coils = getattr(system, "receiverChannels", None) if system else None
        self.recon = self._reconstructor(self.config)
        if self._dump_dir is not None:
            self._dump = StreamDump(self._dump_dir, header.toXML())
            log.info("%s: dumping the stream to %s", self.peer, self._dump.path)

    def _start(self) -> list:
        """The first acquisition fixes the config: say what runs."""
        self._started = True
        config, recon = self.config, self.recon
        model = (f", model {Path(recon.model_name).name} ({recon.precision})"
                 if recon.model_name else "")  # a file's name only: no server paths
        sampling = (f", retrospectively undersampled R={config.undersample:g} ({config.mask}, "
                    f"seed {config.seed})" if config.undersample else "")
        text = (f"npgd-serve: method {recon.method}{model}, device {recon.device.type}; "
                f"{config.dtype} images, series {config.series_index}{sampling}")
        log.info("%s: %s", self.peer, text)
        return [*self._say_warnings(), *self._say("INFO", text)]

    def _add(self, acquisition: ismrmrd.Acquisition) -> list:
        if self.header is None:
            raise StreamError("an acquisition before the XML header")
        out = [] if self._started else self._start()
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
            return out
        index = acquisition.idx.slice
        if not self._slice_range[0] <= index <= self._slice_range[1]:
            raise StreamError(f"slice {index} is outside the header's limits {self._slice_range}")
        self._slices.setdefault(index, []).append(acquisition)
        if acquisition.is_flag_set(ismrmrd.ACQ_LAST_IN_SLICE):
            out += self._flush(index)
        return out

    def _flush(self, index: int) -> list:
        """Reconstruct one buffered slice (a 3-D volume is slice 0): its images, or an error
        ``TEXT`` instead when the reconstruction has NaN or Inf pixels."""
        lines = self._slices.pop(index)
        self._buffered -= sum(_nbytes(a) for a in lines)
        self._stop_if_cancelled()
        with self.pool.slot(self.recon, self.cancelled) as queued:
            start = time.perf_counter()
            study = self._read_slice(lines)
            config = self.config
            result = reconstruct_study(study, self.recon, accel=config.undersample,
                                       mask_kind=config.mask, seed=config.seed, progress=False,
                                       virtual_coils=config.virtual_coils,
                                       map_sets=config.map_sets,
                                       before_call=self._stop_if_cancelled)
            bad = int(np.count_nonzero(~np.isfinite(result.images)))
            images = [] if bad else self._to_images(study, result, index)
            self._queued_s += queued
            self._processing_s += time.perf_counter() - start
            self._recon_s += result.recon_seconds
        self.slices_done += 1
        if not bad:
            return images
        what = "the 3-D volume" if study.is_3d else f"slice {index}"
        text = (f"{what}: {bad} of {result.images.size} pixels are NaN or Inf; its "
                f"{len(result.images)} images were not sent (npgd-recon refuses to write them "
                "too)")
        log.warning("%s: %s", self.peer, text)
        return [log_text("ERROR", f"npgd-serve: error: {text}")]

    def _stop_if_cancelled(self) -> None:
        """Raise :class:`Cancelled` once the client has gone away (before every slice and every
        reconstructor call)."""
        if self.cancelled():
            raise Cancelled("the client went away")

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
        dtype = np.dtype(self.config.dtype)
        if dtype != np.float32:
            if self._scale is None:
                peak = float(magnitude.max())
                self._scale = _PEAKS[self.config.dtype] / peak if peak > 0 else 1.0
            magnitude = np.clip(np.rint(magnitude * self._scale), 0, np.iinfo(dtype).max)
        meta = image_meta(magnitude, self.recon.method)
        planes = iter(zip(magnitude, result.geometry))
        images = []
        for volume in study.volumes:
            for problem in range(len(volume.kspace)):
                pixels, plane = next(planes)
                image = to_ismrmrd_image(pixels, plane, self.images_sent,
                                         series_index=self.config.series_index, dtype=dtype,
                                         meta=meta, contrast=volume.index.contrast,
                                         repetition=volume.index.repetition)
                image.slice = problem if study.is_3d else index
                image.phase, image.set = volume.index.phase, volume.index.set
                self.images_sent += 1
                images.append(image)
        return images

"""The ``npgd-serve`` transport: a TCP listener, a thread per connection, MRD message framing.

Each connection is read through ``ismrmrd.serialization`` with every message field bounded
(:class:`~npgd_recon.server.session.Limits`), its messages handed to a
:class:`~npgd_recon.server.session.Session`, and the images it returns written back. Protocol
violations, limits and failures end only their own connection, with one log line (and a TEXT
message to the client where it can still read it).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

import ismrmrd
from ismrmrd.serialization import ProtocolDeserializer, ProtocolSerializer

from npgd_recon.server.session import MIB, Limits, ReconstructorPool, Session, StreamError

log = logging.getLogger(__name__)

_POLL_S = 0.2
_JOIN_S = 5.0
_DRAIN_BYTES = MIB


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

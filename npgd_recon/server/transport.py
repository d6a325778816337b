"""The ``npgd-serve`` transport: a TCP listener and two threads per connection.

A connection's *reader* thread reads its messages ahead (:mod:`npgd_recon.server.protocol`,
every field bounded by :class:`~npgd_recon.server.session.Limits`) into an inbox bounded by
``max_buffer_bytes``; its *session* thread hands them to a
:class:`~npgd_recon.server.session.Session` and writes back what it returns. So the server
notices a client that goes away while its slices are being reconstructed (end of stream or
reset, also after the client's CLOSE) and the session stops at the next slice boundary; and a
client is dropped for silence only while the server waits for it (``idle_timeout_s`` with no
byte while the session has nothing to do, or in the middle of a message), never while it is busy
with the client's work. A client that goes away before its CLOSE is a warning naming what it had
sent (acquisitions, bytes) and that it was dropped; one that closes at a message boundary before
sending any acquisition (a port probe) is logged at INFO.
Protocol violations, limits and failures end only their own connection, with one log line (and
one ``TEXT`` line + ``CLOSE`` to the client where it can still read them); a failure that is
not an :class:`~npgd_recon.core.errors.NpgdError` is a bug, logged with its traceback.
"""

from __future__ import annotations

import collections
import logging
import socket
import threading
import time
from pathlib import Path

import ismrmrd
from ismrmrd.serialization import ProtocolSerializer

from npgd_recon.core.errors import NpgdError, one_line
from npgd_recon.server.protocol import (
    Close,
    EndOfStream,
    SocketReader,
    log_text,
    read_message,
    write_messages,
)
from npgd_recon.server.session import MIB, Cancelled, Limits, ReconstructorPool, Session

log = logging.getLogger(__name__)

_POLL_S = 0.2
_JOIN_S = 5.0
_DRAIN_BYTES = MIB
_RECV_BYTES = 1 << 16


class IdleTimeout(TimeoutError):
    """The client sent nothing for ``idle_timeout_s`` while the server waited for it."""


class _Stop(Exception):
    """The session stopped taking messages: the reader only discards from now on."""


class _Inbox:
    """Messages read ahead of the session, at most ``limit`` bytes of them (the reader waits
    beyond that), and how the reading ended (raised to the session after the messages)."""

    def __init__(self, limit: int) -> None:
        self._items: collections.deque = collections.deque()
        self._bytes, self._limit = 0, limit
        self._cond = threading.Condition()
        self._end: BaseException | None = None
        self._waiting = False
        self.closed = False

    def put(self, message, size: int) -> None:
        """Queue one message (raises :class:`_Stop` once the session has stopped)."""
        with self._cond:
            while self._bytes > self._limit and not self.closed:
                self._cond.wait()
            if self.closed:
                raise _Stop
            self._items.append((message, size))
            self._bytes += size
            self._cond.notify_all()

    def end(self, error: BaseException) -> None:
        """The reading ended with ``error``."""
        with self._cond:
            self._end = error
            self._cond.notify_all()

    def get(self):
        """The next message, or the reading's end raised."""
        with self._cond:
            while not self._items and self._end is None:
                self._waiting = True
                self._cond.wait()
            self._waiting = False
            if not self._items:
                raise self._end
            message, size = self._items.popleft()
            self._bytes -= size
            self._cond.notify_all()
            return message

    def idle(self) -> bool:
        """Whether the session waits for a message and none is queued."""
        with self._cond:
            return self._waiting and not self._items

    def close(self) -> None:
        """The session stopped: drop what is queued, release the reader."""
        with self._cond:
            self.closed = True
            self._items.clear()
            self._bytes = 0
            self._cond.notify_all()


class _Connection:
    """One client: the socket, its reader thread and the flags both threads share."""

    def __init__(self, conn: socket.socket, name: str, limits: Limits,
                 stop: threading.Event) -> None:
        self.conn, self.name, self.limits, self.stop = conn, name, limits, stop
        self.reader = SocketReader(conn, limits.max_message_bytes)
        self.inbox = _Inbox(limits.max_buffer_bytes)
        self.gone = threading.Event()      # the client closed or reset its side
        self.done = threading.Event()      # the session thread has finished
        self.reported = threading.Event()  # an error went out: drain until quiet
        self.acquisitions = 0              # acquisitions read off the socket
        self.thread = threading.Thread(target=self._read_ahead, daemon=True,
                                       name=f"npgd-serve reader {name}")

    def cancelled(self) -> bool:
        """Whether the session's remaining work should be dropped."""
        return self.gone.is_set() or self.stop.is_set()

    def _hung_up(self) -> None:
        if not self.gone.is_set():
            log.debug("%s: the client hung up", self.name)
        self.gone.set()

    def _read_ahead(self) -> None:
        try:
            while True:
                self._wait_for_message()
                before = self.reader.consumed
                message = read_message(self.reader)
                self.acquisitions += isinstance(message, ismrmrd.Acquisition)
                self.inbox.put(message, self.reader.consumed - before)
                if message is Close:
                    break
        except _Stop:
            pass
        except TimeoutError:
            self.inbox.end(IdleTimeout(f"no data for {self.limits.idle_timeout_s:g} s "
                                       "(--timeout)"))
        except (EOFError, ConnectionError) as error:
            self._hung_up()
            self.inbox.end(error)
            return
        except OSError as error:  # the session thread shut the socket down
            self.inbox.end(EOFError(str(error)))
            return
        except Exception as error:  # a protocol violation: the session reports it
            self.inbox.end(error)
        self._discard()

    def received(self, session: Session | None) -> str:
        """How far the client got: acquisitions and bytes received, images sent back."""
        sent = session.images_sent if session is not None else 0
        return (f"{self.acquisitions} acquisitions ({self.reader.received} bytes) received, "
                f"{sent} images sent")

    def _wait_for_message(self) -> None:
        """Wait until a message starts arriving; raise TimeoutError once the client has been
        silent for ``idle_timeout_s`` while the session had nothing to do."""
        silent_since = None
        while not self.reader.pending(_POLL_S):
            if self.inbox.closed:
                raise _Stop
            if self.stop.is_set():
                raise EndOfStream("server shutting down")
            if not self.inbox.idle():
                silent_since = None
            elif silent_since is None:
                silent_since = time.monotonic()
            elif time.monotonic() - silent_since >= self.limits.idle_timeout_s:
                raise TimeoutError

    def _discard(self) -> None:
        """After CLOSE or an error: read and drop what still comes, noting when the client
        hangs up; ends when the session is done, or (after an error report) once the client
        is quiet, has closed, or has sent ``_DRAIN_BYTES``."""
        self.reader.discard()
        drained = 0
        try:
            while not self.done.is_set():
                if not self.reader.pending(_POLL_S):
                    if self.reported.is_set():
                        return
                    continue
                chunk = self.conn.recv(_RECV_BYTES)
                if not chunk:
                    self._hung_up()
                    return
                if self.reported.is_set():
                    drained += len(chunk)
                    if drained >= _DRAIN_BYTES:
                        return
        except OSError:
            self._hung_up()


class ReconServer:
    """The TCP listener: two threads per connection, :meth:`shutdown` from any thread."""

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
        client = _Connection(conn, name, self.limits, self._stop)
        writer = conn.makefile("wb")
        out = ProtocolSerializer(writer)
        session = None
        start = time.perf_counter()
        client.thread.start()
        try:
            session = Session(self.pool, self.limits, name, self.dump_dir, client.cancelled)
            while (message := client.inbox.get()) is not Close:
                write_messages(out, writer, session.receive(message))
            write_messages(out, writer, session.finish())
            out.close()
            log.info("%s: %d images (%s) in %.1f s", name, session.images_sent,
                     session.recon.method, time.perf_counter() - start)
        except IdleTimeout as error:
            log.warning("%s: dropped: %s; %s", name, error, client.received(session))
        except EndOfStream as error:
            if self._stop.is_set():
                log.warning("%s: connection ended: server shutting down", name)
            elif client.acquisitions:
                log.warning("%s: connection ended: client went away mid-stream (%s before "
                            "CLOSE); dropped: %s", name, error, client.received(session))
            else:
                log.info("%s: %s before CLOSE", name, error)
        except Cancelled as error:
            done = session.slices_done if session is not None else 0
            reason = "server shutting down" if self._stop.is_set() else \
                f"{error}; work cancelled after {done} slices; dropped: {client.received(session)}"
            log.warning("%s: connection ended: %s", name, reason)
        except (EOFError, ConnectionError, TimeoutError) as error:
            reason = "server shutting down" if self._stop.is_set() else \
                (f"client went away mid-stream ({error or type(error).__name__}); "
                 f"dropped: {client.received(session)}")
            log.warning("%s: connection ended: %s", name, reason)
        except Exception as error:  # any failure ends this connection only
            text = one_line(error)
            if isinstance(error, NpgdError):
                log.error("%s: connection ended: %s", name, text)
                reply = f"npgd-serve: error: {text}"
            else:  # a bug: the log keeps its traceback, the client gets one line
                log.exception("%s: connection ended: internal error: %s", name, text)
                reply = f"npgd-serve: internal error: {text}"
            client.inbox.close()
            _report(conn, out, writer, log_text("ERROR", reply))
            client.reported.set()
            client.thread.join(_JOIN_S)
        finally:
            client.done.set()
            client.inbox.close()
            if session is not None:
                session.close()
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            client.thread.join(_JOIN_S)
            for handle in (writer, conn):
                _close_quietly(handle)
            with self._lock:
                self._clients.pop(threading.current_thread(), None)


def _report(conn: socket.socket, out: ProtocolSerializer, writer, text: str) -> None:
    """Send TEXT + CLOSE and end the sending side; the reader thread then drains what the
    client still sends (bounded), so that closing does not reset the connection before the
    client has read them."""
    try:
        write_messages(out, writer, [text])
        out.close()
        conn.shutdown(socket.SHUT_WR)
    except (OSError, ValueError):
        pass


def _close_quietly(handle) -> None:
    try:
        handle.close()
    except OSError:
        pass

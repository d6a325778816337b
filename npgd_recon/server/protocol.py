"""MRD message framing for ``npgd-serve``: reading a client's messages off a socket, bounded,
and writing images, ``TEXT`` and ``CLOSE`` back.

Reading is the server's own (``ismrmrd.serialization`` hands NUL-terminated strings to the XML
parser unchanged, and cannot tell a clean end of stream from a cut one). Every string message
(``CONFIG_FILE``, ``CONFIG_TEXT``, ``HEADER``, ``TEXT``) is cut at its first NUL byte, as
python-ismrmrd-server's ``client.py`` ends them with one and pads ``CONFIG_FILE`` with them;
binary messages are read with ``ismrmrd``'s own ``deserialize_from``. Every read is bounded by
``max_bytes`` before it is made. ``TEXT`` messages sent back are NUL-terminated and start with
a padded level (``INFO     ...``), as the reference server's ``send_logging`` writes them.
"""

from __future__ import annotations

import select
import socket
import struct

import ismrmrd
import numpy as np
from ismrmrd.image import get_dtype_from_data_type
from ismrmrd.serialization import ConfigFile, ConfigText, ISMRMRDMessageID, ProtocolSerializer
from ismrmrd.xsd import ismrmrdHeader

from npgd_recon.core.errors import NpgdError
from npgd_recon.io.assembly import RawDataError
from npgd_recon.io.ismrmrd_file import parse_header

MIB = 1 << 20
CONFIG_FILE_BYTES = 1024
_RECV_BYTES = 1 << 16


class StreamError(NpgdError):
    """The stream broke the protocol or a server limit; the message says how, in one line."""


class EndOfStream(EOFError):
    """The client closed its side at a message boundary (no partial message)."""


class Close:
    """The client's ``CLOSE`` message (a marker; the class itself is used)."""


class Text(str):
    """A ``TEXT`` message's string (NUL cut off)."""


class SocketReader:
    """Exact reads from a socket with a buffer of its own, so that :meth:`pending` can tell
    whether a message has started arriving without consuming it."""

    def __init__(self, sock: socket.socket, max_bytes: int) -> None:
        self._sock, self._max = sock, max_bytes
        self._buffer = bytearray()
        self.consumed = 0  # bytes of the messages read
        self.received = 0  # bytes off the socket, a message cut short included

    def read(self, size: int) -> bytes:
        """``size`` bytes; EOFError if the stream ends first, StreamError above the limit."""
        size = int(size)
        if not 0 <= size <= self._max:
            raise StreamError(f"a message declares {size} bytes, above the limit of "
                              f"{self._max // MIB} MiB (--max-message-mb)")
        while len(self._buffer) < size:
            chunk = self._recv(max(_RECV_BYTES, min(size - len(self._buffer), 4 * MIB)))
            if not chunk:
                raise EOFError(f"stream ended inside a message ({len(self._buffer)} of {size} "
                               "bytes)")
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        self.consumed += size
        return data

    def pending(self, timeout: float) -> bool:
        """Whether bytes (or the end of the stream) can be read without waiting, after waiting
        up to ``timeout`` seconds."""
        if self._buffer:
            return True
        readable, _, _ = select.select([self._sock], [], [], timeout)
        return bool(readable)

    def at_end(self) -> bool:
        """Whether nothing is buffered and the next read finds the end of the stream."""
        if self._buffer:
            return False
        chunk = self._recv(_RECV_BYTES)
        self._buffer += chunk
        return not chunk

    def discard(self) -> None:
        """Drop what is buffered."""
        self._buffer.clear()

    def _recv(self, size: int) -> bytes:
        chunk = self._sock.recv(size)
        self.received += len(chunk)
        return chunk


def _string(reader: SocketReader, size: int, what: str) -> str:
    data = reader.read(size).split(b"\0", 1)[0]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise StreamError(f"{what} is not UTF-8 text ({error.reason} at byte "
                          f"{error.start})") from None


def _length(reader: SocketReader) -> int:
    return struct.unpack("<I", reader.read(4))[0]


def _header(text: str) -> ismrmrdHeader:
    """The header parsed by the file reader's parser (same checks, same messages)."""
    try:
        return parse_header(text, "stream")
    except RawDataError as error:
        raise StreamError(str(error)) from None


def _ndarray(reader: SocketReader) -> np.ndarray:
    data_type, _version, ndim = struct.unpack("<HHH", reader.read(6))
    dims = struct.unpack(f"<{ndim}Q", reader.read(8 * ndim))
    try:
        dtype = np.dtype(get_dtype_from_data_type(data_type))
    except (KeyError, TypeError, ValueError):
        raise StreamError(f"an NDARRAY message with unknown data type {data_type}") from None
    size = int(np.prod(dims, dtype=np.uint64)) * dtype.itemsize if dims else dtype.itemsize
    return np.frombuffer(reader.read(size), dtype=dtype).reshape(dims)


def read_message(reader: SocketReader):
    """The next message: :class:`Close` (the class), ``ConfigFile``, ``ConfigText``, an
    ``ismrmrdHeader``, :class:`Text`, or an ``ismrmrd`` Acquisition / Waveform / Image / NDArray.

    Raises:
        EndOfStream: the client closed at a message boundary.
        EOFError: the stream ended inside a message.
        StreamError: an unknown message id, a size above the limit, undecodable text.
    """
    first = reader.read(1) if not reader.at_end() else b""
    if not first:
        raise EndOfStream("the client closed the connection")
    message_id = struct.unpack("<H", first + reader.read(1))[0]
    if message_id == ISMRMRDMessageID.ACQUISITION:
        return ismrmrd.Acquisition.deserialize_from(reader.read)
    if message_id == ISMRMRDMessageID.CLOSE:
        return Close
    if message_id == ISMRMRDMessageID.CONFIG_FILE:
        return ConfigFile(_string(reader, CONFIG_FILE_BYTES, "the config file name"))
    if message_id == ISMRMRDMessageID.CONFIG_TEXT:
        return ConfigText(_string(reader, _length(reader), "the config text"))
    if message_id == ISMRMRDMessageID.HEADER:
        return _header(_string(reader, _length(reader), "the XML header"))
    if message_id == ISMRMRDMessageID.TEXT:
        return Text(_string(reader, _length(reader), "a TEXT message"))
    if message_id == ISMRMRDMessageID.WAVEFORM:
        return ismrmrd.Waveform.deserialize_from(reader.read)
    if message_id == ISMRMRDMessageID.IMAGE:
        return ismrmrd.Image.deserialize_from(reader.read)
    if message_id == ISMRMRDMessageID.NDARRAY:
        return _ndarray(reader)
    raise StreamError(f"unknown message id {message_id}")


def log_text(level: str, text: str) -> str:
    """A ``TEXT`` message body as the reference server's ``send_logging`` writes it: the level
    padded to 8 characters, a space, the text, a NUL."""
    return f"{level.upper():<8} {text}\0"


def write_messages(out: ProtocolSerializer, stream, messages: list) -> None:
    """Send images and ``TEXT`` strings (from :func:`log_text`), then flush."""
    for message in messages:
        out.serialize(message)
    stream.flush()

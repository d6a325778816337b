"""A small MRD client for the server tests that frames messages the way python-ismrmrd-server's
``client.py`` does: ``CONFIG_FILE`` as a NUL-padded 1024-byte name, ``CONFIG_TEXT``, the XML
header and ``TEXT`` as length-prefixed NUL-terminated strings (``nul=False``: without the NUL,
as ``ismrmrd.serialization`` writes them), the JSON ``configAdditional`` as a ``TEXT`` after the
header, then acquisitions and ``CLOSE``. Replies are read as the reference client reads them
(``TEXT`` cut at its NUL)."""

from __future__ import annotations

import json
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import ismrmrd

CONFIG_FILE, CONFIG_TEXT, HEADER, CLOSE, TEXT = 1, 2, 3, 4, 5
ACQUISITION, IMAGE = 1008, 1022


@dataclass
class Reply:
    """What the server sent back: images, TEXT messages, and whether it ended with CLOSE."""

    images: list = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    closed: bool = False

    def level(self, name: str) -> list[str]:
        """The TEXT messages of one level (``INFO``, ``WARNING``, ``ERROR``), level removed."""
        return [text[9:] for text in self.texts if text.startswith(f"{name:<8} ")]

    @property
    def infos(self) -> list[str]:
        """``INFO`` TEXT messages."""
        return self.level("INFO")

    @property
    def errors(self) -> list[str]:
        """``ERROR`` TEXT messages."""
        return self.level("ERROR")

    @property
    def warnings(self) -> list[str]:
        """``WARNING`` TEXT messages."""
        return self.level("WARNING")


def read_file(path: Path) -> tuple[str, list[ismrmrd.Acquisition]]:
    """The XML header and every acquisition of an ISMRMRD file."""
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=False) as dataset:
        header = dataset.read_xml_header()
        acquisitions = [dataset.read_acquisition(i)
                        for i in range(dataset.number_of_acquisitions())]
    return header.decode() if isinstance(header, bytes) else header, acquisitions


def connect(address: tuple[str, int], timeout: float = 60.0) -> socket.socket:
    """A TCP connection to the server."""
    return socket.create_connection(address, timeout=timeout)


class Sender:
    """Writes MRD messages on a socket as the reference client frames them."""

    def __init__(self, sock: socket.socket, nul: bool = True) -> None:
        self.sock, self.nul = sock, nul

    def _string(self, message_id: int, text: str) -> None:
        data = text.encode() + (b"\0" if self.nul else b"")
        self.sock.sendall(struct.pack("<HI", message_id, len(data)) + data)

    def config_file(self, name: str) -> None:
        """``CONFIG_FILE``: the name NUL-padded to 1024 bytes."""
        self.sock.sendall(struct.pack("<H1024s", CONFIG_FILE, name.encode()))

    def config_text(self, text: str) -> None:
        """``CONFIG_TEXT``."""
        self._string(CONFIG_TEXT, text)

    def header(self, xml: str) -> None:
        """The XML header."""
        self._string(HEADER, xml)

    def text(self, text: str) -> None:
        """A ``TEXT`` message."""
        self._string(TEXT, text)

    def acquisition(self, acquisition: ismrmrd.Acquisition) -> None:
        """One acquisition."""
        self.sock.sendall(struct.pack("<H", ACQUISITION) + acquisition.to_bytes())

    def close(self) -> None:
        """``CLOSE``."""
        self.sock.sendall(struct.pack("<H", CLOSE))


def receive(sock: socket.socket, images: int | None = None,
            messages: int | None = None) -> Reply:
    """Read the server's messages until CLOSE or the end of the connection (or until
    ``images`` images, or ``messages`` messages, have arrived)."""
    reply = Reply()
    stream = sock.makefile("rb", buffering=0)

    def read(size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = stream.read(size - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    try:
        while (images is None or len(reply.images) < images) and \
                (messages is None or len(reply.images) + len(reply.texts) < messages):
            message_id = struct.unpack("<H", read(2))[0]
            if message_id == CLOSE:
                reply.closed = True
                break
            if message_id == IMAGE:
                reply.images.append(ismrmrd.Image.deserialize_from(read))
            elif message_id == TEXT:
                size = struct.unpack("<I", read(4))[0]
                reply.texts.append(read(size).split(b"\0", 1)[0].decode())
            else:
                raise AssertionError(f"unexpected message id {message_id} from the server")
    except (EOFError, ConnectionError):
        pass
    finally:
        stream.close()
    return reply


def send_stream(sender: Sender, header: str, acquisitions: list, config: str | None,
                *, text: bool = False, additional: dict | None = None) -> None:
    """Config (a file name, or text when ``text``), header, the JSON ``additional`` config as
    a TEXT, acquisitions and CLOSE."""
    if config is not None:
        (sender.config_text if text else sender.config_file)(config)
    sender.header(header)
    if additional is not None:
        sender.text(json.dumps(additional, indent=2))
    for acquisition in acquisitions:
        sender.acquisition(acquisition)
    sender.close()


def stream_file(address: tuple[str, int], path: Path, config: str | None = "zerofill", *,
                text: bool = False, additional: dict | None = None, nul: bool = True,
                timeout: float = 60.0) -> Reply:
    """Stream a whole file as python-ismrmrd-server's ``client.py`` does and read the reply."""
    header, acquisitions = read_file(path)
    with connect(address, timeout) as sock:
        send_stream(Sender(sock, nul), header, acquisitions, config, text=text,
                    additional=additional)
        return receive(sock)


def wait_for_log(caplog, text: str, seconds: float = 10.0) -> list:
    """The server's log records (from its connection threads) containing ``text``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = [r for r in caplog.records if text in r.getMessage()]
        if found:
            return found
        time.sleep(0.05)
    return []

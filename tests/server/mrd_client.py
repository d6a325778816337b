"""A small MRD client for the server tests, built on ``ismrmrd.serialization``."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

import ismrmrd
from ismrmrd.serialization import ConfigFile, ConfigText, ProtocolDeserializer, ProtocolSerializer


@dataclass
class Reply:
    """What the server sent back: images, TEXT messages, and whether it ended with CLOSE."""

    images: list = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    closed: bool = False


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


def receive(sock: socket.socket) -> Reply:
    """Read the server's messages until CLOSE or the end of the connection."""
    reply = Reply()
    stream = sock.makefile("rb")
    try:
        for message in ProtocolDeserializer(stream).deserialize():
            if isinstance(message, ismrmrd.Image):
                reply.images.append(message)
            elif isinstance(message, str):
                reply.texts.append(message)
        reply.closed = True
    except (EOFError, ConnectionError):
        pass
    finally:
        stream.close()
    return reply


def stream_file(address: tuple[str, int], path: Path, config: str | None = "zerofill", *,
                text: bool = False) -> Reply:
    """Send config (a file name, or text when ``text``), header, acquisitions and CLOSE."""
    header, acquisitions = read_file(path)
    with connect(address) as sock:
        out = sock.makefile("wb")
        serializer = ProtocolSerializer(out)
        if config is not None:
            serializer.serialize(ConfigText(config) if text else ConfigFile(config))
        serializer.serialize(ismrmrd.xsd.CreateFromDocument(header))
        for acquisition in acquisitions:
            serializer.serialize(acquisition)
        serializer.close()
        out.close()
        return receive(sock)

"""npgd-serve under bad clients: garbage, unknown ids, absurd lengths, truncated and abandoned
streams, buffer limits; each ends only its own connection, and the server answers next. A failure
that is not a user error keeps its traceback in the log."""

import io
import logging
import re
import socket
import struct

import ismrmrd
import pytest
from ismrmrd.serialization import ConfigFile, ISMRMRDMessageID, ProtocolSerializer

from npgd_recon.core.errors import NpgdError
from npgd_recon.recon.classic import ZeroFilled
from npgd_recon.server import session as session_module
from npgd_recon.server.session import MIB, Limits
from tests.server.mrd_client import connect, read_file, receive, stream_file, wait_for_log

LIMITS = Limits(max_message_bytes=MIB, max_buffer_bytes=4 * MIB, idle_timeout_s=30)


def send_raw(address, payload: bytes):
    """Send bytes as they are, then read the reply."""
    with connect(address, timeout=30) as sock:
        sock.sendall(payload)
        return receive(sock)


def message_id(value: int) -> bytes:
    return struct.pack("<H", value)


def assert_still_serving(server, raw):
    reply = stream_file(server.address, raw / "multislice.h5")
    assert reply.closed and len(reply.images) == 3


@pytest.mark.parametrize("payload, message", [
    (b"\x99\x99 certainly not MRD " * 50, "unknown message id 39321"),
    (message_id(ISMRMRDMessageID.HEADER) + struct.pack("<I", 0xFFFFFFFF),
     "declares 4294967295 bytes, above the limit of 1 MiB"),
    (message_id(ISMRMRDMessageID.TEXT) + struct.pack("<I", 2 * MIB), "above the limit"),
    (message_id(ISMRMRDMessageID.HEADER) + struct.pack("<I", 9) + b"<garbage>",
     "npgd-serve: error:"),
])
def test_bad_bytes_end_the_connection_with_an_error(start_server, raw, payload, message):
    server = start_server(limits=LIMITS)
    reply = send_raw(server.address, payload)
    assert reply.images == [] and reply.closed
    assert len(reply.errors) == 1 and message in reply.errors[0]
    assert_still_serving(server, raw)


def test_absurd_acquisition_size_is_refused_without_allocating_it(start_server, raw):
    server = start_server(limits=LIMITS)
    header, _ = read_file(raw / "multislice.h5")
    head = ismrmrd.AcquisitionHeader()
    head.version, head.number_of_samples, head.active_channels = 1, 65535, 65535
    with connect(server.address) as sock:
        out = sock.makefile("wb")
        serializer = ProtocolSerializer(out)
        serializer.serialize(ismrmrd.xsd.CreateFromDocument(header))
        out.write(message_id(ISMRMRDMessageID.ACQUISITION) + bytes(head))
        out.close()
        reply = receive(sock)
    assert reply.closed and reply.images == []
    # refused by the size limit, or (machines with less memory) by numpy's lazy allocation
    assert "above the limit" in reply.errors[0] or "Unable to allocate" in reply.errors[0]
    assert_still_serving(server, raw)


def stream_start(path, acquisitions: int) -> bytes:
    """A stream's first messages as bytes: config, header and ``acquisitions`` acquisitions."""
    header, read = read_file(path)
    buffer = io.BytesIO()
    serializer = ProtocolSerializer(buffer)
    serializer.serialize(ConfigFile("zerofill"))
    serializer.serialize(ismrmrd.xsd.CreateFromDocument(header))
    for acquisition in read[:acquisitions]:
        serializer.serialize(acquisition)
    return buffer.getvalue()


@pytest.mark.parametrize("cut, reset", [(100, False), (100, True), (0, False)])
def test_client_vanishing_mid_stream_is_one_warning_with_what_was_dropped(
        start_server, raw, caplog, cut, reset):
    """Cut inside an acquisition (closed, or reset as a killed process with unread data does),
    or closed at a message boundary after 20 acquisitions."""
    server = start_server(limits=LIMITS)
    _, acquisitions = read_file(raw / "multislice.h5")
    payload = stream_start(raw / "multislice.h5", 20)
    if cut:
        payload += message_id(ISMRMRDMessageID.ACQUISITION) + acquisitions[20].to_bytes()[:cut]
    with connect(server.address) as sock:
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(payload)
        port = sock.getsockname()[1]
    lines = wait_for_log(caplog, f":{port}: connection ended")
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    text = lines[0].getMessage()
    assert "went away mid-stream" in text
    if reset:  # a reset may discard what the server had not read yet
        counts = re.search(r"; dropped: (\d+) acquisitions \((\d+) bytes\) received, 0 images "
                           r"sent$", text).groups()
        assert int(counts[0]) <= 20 and int(counts[1]) <= len(payload)
    else:
        assert text.endswith(
            f"; dropped: 20 acquisitions ({len(payload)} bytes) received, 0 images sent")
    assert_still_serving(server, raw)


def test_acquisition_before_header_is_a_protocol_error(start_server, raw):
    server = start_server(limits=LIMITS)
    _, acquisitions = read_file(raw / "multislice.h5")
    reply = send_raw(server.address, message_id(ISMRMRDMessageID.ACQUISITION)
                     + acquisitions[0].to_bytes())
    assert "an acquisition before the XML header" in reply.errors[0]


def test_slice_outside_the_header_limits_is_refused(start_server, raw):
    server = start_server(limits=LIMITS)
    header, acquisitions = read_file(raw / "multislice.h5")
    acquisitions[-1].idx.slice = 7
    with connect(server.address) as sock:
        out = sock.makefile("wb")
        serializer = ProtocolSerializer(out)
        serializer.serialize(ismrmrd.xsd.CreateFromDocument(header))
        serializer.serialize(acquisitions[-1])
        out.close()
        reply = receive(sock)
    assert "slice 7 is outside the header's limits (0, 2)" in reply.errors[0]


def test_buffered_acquisitions_are_capped(start_server, raw):
    limits = Limits(max_message_bytes=MIB, max_buffer_bytes=20_000, idle_timeout_s=30)
    server = start_server(limits=limits)
    reply = stream_file(server.address, raw / "multislice.h5")
    assert reply.images == [] and "acquisitions buffered" in reply.errors[0]
    assert stream_file(start_server(limits=LIMITS).address, raw / "multislice.h5").images


def test_client_silent_inside_a_message_times_out(start_server, raw, caplog):
    server = start_server(limits=Limits(idle_timeout_s=1.0))
    with connect(server.address) as sock:
        sock.sendall(message_id(ISMRMRDMessageID.CONFIG_FILE))
        port = sock.getsockname()[1]
        assert receive(sock).images == []
    lines = wait_for_log(caplog, f":{port}: ")
    assert len(lines) == 1 and "dropped: no data for 1 s (--timeout)" in lines[0].getMessage()
    assert_still_serving(server, raw)


class Failing(ZeroFilled):
    """Zero filling that raises ``error`` on every call."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def reconstruct(self, *args, **kwargs):
        raise self.error


@pytest.mark.parametrize("error, is_bug", [
    (RuntimeError("index 7 is out of bounds\nfor a tensor of 4"), True),
    (NpgdError("these data do not suit this method"), False),
])
def test_a_bug_is_logged_with_its_traceback_and_a_user_error_in_one_line(
        start_server, raw, caplog, monkeypatch, error, is_bug):
    caplog.set_level(logging.INFO, logger="npgd_recon.server")
    real = session_module.make_reconstructor
    monkeypatch.setattr(session_module, "make_reconstructor", lambda method, options=None: (
        Failing(error) if method == "cstv" else real(method, options)))
    server = start_server()
    reply = stream_file(server.address, raw / "multislice.h5", "cstv")
    assert reply.closed and reply.images == [] and len(reply.errors) == 1
    first_line = str(error).splitlines()[0]
    kind = "internal error" if is_bug else "error"
    assert reply.errors[0] == f"npgd-serve: {kind}: {first_line}"
    [record] = wait_for_log(caplog, "connection ended")
    assert record.getMessage().endswith(first_line)
    assert (record.exc_info is not None) == is_bug
    if is_bug:
        assert "Traceback" in caplog.text and "RuntimeError: index 7" in caplog.text
    assert_still_serving(server, raw)

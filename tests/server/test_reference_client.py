"""npgd-serve with a client that behaves like python-ismrmrd-server's ``client.py``:
NUL-terminated strings, config names and texts, the unknown default name ``invertcontrast``
(fallback + TEXT warning), the JSON config in a TEXT after the header, log TEXT messages,
int16 output, retrospective undersampling; and the server side of concurrency: a slow request
does not hold up a fast one, work for a vanished client is cancelled, silence is timed only
while the server waits for the client."""

import logging
import re
import socket
import struct
import threading
import time

import ismrmrd
import numpy as np
import pytest
import torch

from npgd_recon.io.ismrmrd_file import read_raw
from npgd_recon.recon.base import ReconOptions
from npgd_recon.recon.classic import ZeroFilled
from npgd_recon.recon.methods import make_reconstructor
from npgd_recon.recon.pipeline import reconstruct_study
from npgd_recon.server import session as session_module
from npgd_recon.server.session import Limits
from tests.server.mrd_client import (
    Sender,
    connect,
    read_file,
    receive,
    send_stream,
    stream_file,
    wait_for_log,
)
from tests.server.test_session import assert_same_images, cli_magnitude, meta, pixels

FASTMRI_STYLE = {"version": "1.0", "parameters": {"config": "npgd", "customconfig": ""}}
TIMING = re.compile(r"processing time for image series 1: (\d+) images, ([\d.]+) ms compute "
                    r"\(([\d.]+) ms in (\w+)\) \+ ([\d.]+) ms queued for a worker = ([\d.]+) ms")


def history(reply):
    return list(meta(reply.images[0])["ImageProcessingHistory"])


@pytest.mark.parametrize("nul", [True, False])
def test_nul_terminated_strings_in_every_message(start_server, raw, nul):
    server = start_server()
    reply = stream_file(server.address, raw / "multislice.h5", 'method = "zerofill"\n',
                        text=True, additional={"parameters": {"note": "x"}}, nul=nul)
    assert reply.closed and reply.errors == reply.warnings == []
    assert_same_images(reply.images, cli_magnitude(raw / "multislice.h5"))


def test_config_file_name_padded_after_its_nul(start_server, raw):
    server = start_server()
    header, acquisitions = read_file(raw / "multislice.h5")
    with connect(server.address) as sock:
        sock.sendall(struct.pack("<H1024s", 1, b"simplefft\0junk after the terminator"))
        send_stream(Sender(sock), header, acquisitions, None)
        reply = receive(sock)
    assert reply.closed and reply.errors == reply.warnings == [] and len(reply.images) == 3


@pytest.mark.parametrize("config, text, method", [
    ("simplefft", False, "ZEROFILL"),
    ("npgd.xml", False, "NPGD"),
    ('method = "npgd"\ndtype = "float32"', True, "NPGD"),
    ('{"method": "npgd"}', True, "NPGD"),
    ('{"version": "1.0", "parameters": {"config": "npgd", "customconfig": "", "x": 1}}', True,
     "NPGD"),
    ("<configuration><property name='method' value='npgd'/></configuration>", True, "NPGD"),
])
def test_config_name_and_text_variants(start_server, raw, config, text, method):
    server = start_server("zerofill", str(raw / "tiny.safetensors"))
    reply = stream_file(server.address, raw / "multislice.h5", config, text=text)
    assert reply.closed and reply.errors == reply.warnings == []
    assert len(reply.images) == 3 and history(reply) == ["NPGD-RECON", method]


@pytest.mark.parametrize("config, text", [("invertcontrast", False), ("invertcontrast", True)])
def test_reference_default_name_falls_back_with_a_warning(start_server, raw, config, text):
    server = start_server("zerofill")
    reply = stream_file(server.address, raw / "multislice.h5", config, text=text)
    assert reply.closed and reply.errors == []
    assert len(reply.warnings) == 1
    assert "config 'invertcontrast' is not offered by npgd-serve" in reply.warnings[0]
    assert "default reconstruction (zerofill)" in reply.warnings[0]
    assert_same_images(reply.images, cli_magnitude(raw / "multislice.h5"))


def test_json_text_after_the_header_selects_the_config(start_server, raw):
    server = start_server("zerofill", str(raw / "tiny.safetensors"))
    reply = stream_file(server.address, raw / "multislice.h5", "invertcontrast",
                        additional=FASTMRI_STYLE)
    assert reply.closed and reply.errors == reply.warnings == []
    assert history(reply) == ["NPGD-RECON", "NPGD"]
    assert_same_images(reply.images, cli_magnitude(raw / "multislice.h5", "npgd",
                                                   str(raw / "tiny.safetensors")))
    custom = {"parameters": {"config": "invertcontrast", "customconfig": "cswv-typo"}}
    fallback = stream_file(server.address, raw / "multislice.h5", "npgd", additional=custom)
    assert history(fallback) == ["NPGD-RECON", "ZEROFILL"]
    assert len(fallback.warnings) == 1 and "'cswv-typo'" in fallback.warnings[0]


def test_log_text_messages_say_what_runs_and_how_long(start_server, raw):
    server = start_server("zerofill", str(raw / "tiny.safetensors"))
    reply = stream_file(server.address, raw / "multislice.h5", "npgd")
    first, last = reply.infos[0], reply.infos[-1]
    assert first.startswith("npgd-serve: method npgd, model tiny.safetensors (")
    assert "device cpu; float32 images, series 1" in first and str(raw) not in first
    images, compute, inside, method, queued, total = TIMING.fullmatch(last).groups()
    assert images == "3" and method == "npgd"
    assert float(inside) <= float(compute)
    assert float(total) == pytest.approx(float(compute) + float(queued), abs=0.02)


@pytest.mark.parametrize("config", [
    "log_text = false",
    "<configuration><property name='method' value='zerofill'/></configuration>",  # Gadgetron
])
def test_log_text_messages_can_be_turned_off(start_server, raw, config):
    server = start_server()
    reply = stream_file(server.address, raw / "multislice.h5", config, text=True)
    assert reply.closed and len(reply.images) == 3 and reply.texts == []


def test_errors_are_a_text_then_close(start_server, raw):
    server = start_server()
    reply = stream_file(server.address, raw / "multislice.h5", 'method = "invertcontrast"',
                        text=True)
    assert reply.images == [] and reply.closed and len(reply.texts) == 1
    assert reply.errors[0].startswith("npgd-serve: error: unknown config 'invertcontrast'")


def test_int16_output_scaled_to_12_bits(start_server, raw):
    server = start_server()
    reply = stream_file(server.address, raw / "multislice.h5", 'dtype = "int16"\n', text=True)
    expected = cli_magnitude(raw / "multislice.h5")
    scale = 4095 / expected[0].max()
    for image, reference in zip(reply.images, expected, strict=True):
        assert image.data.dtype == np.int16 and image.data_type == ismrmrd.DATATYPE_SHORT
        np.testing.assert_allclose(pixels(image), np.rint(reference * scale), atol=1)
    assert pixels(reply.images[0]).max() == 4095


@pytest.mark.parametrize("config, accel, mask, seed", [
    ("undersample = 3\nseed = 5\n", 3.0, "vdrad", 5),
    ('{"parameters": {"config": "simplefft", "undersample": 2.5, "mask": "lines"}}', 2.5,
     "lines", 0),
])
def test_undersample_key_matches_npgd_recon_undersample(start_server, raw, config, accel, mask,
                                                        seed):
    server = start_server()
    reply = stream_file(server.address, raw / "multislice.h5", config, text=True)
    recon = make_reconstructor("zerofill", ReconOptions(device="cpu"))
    expected = np.abs(reconstruct_study(read_raw(raw / "multislice.h5"), recon, accel=accel,
                                        mask_kind=mask, seed=seed, progress=False).images)
    assert reply.errors == []
    assert_same_images(reply.images, expected)
    full = cli_magnitude(raw / "multislice.h5")
    assert np.abs(expected - full).max() > 0.05 * full.max()
    assert f"undersampled R={accel:g} ({mask}, seed {seed})" in reply.infos[0]


class Gate(ZeroFilled):
    """Zero filling that holds every call until released, counting the calls."""

    def __init__(self) -> None:
        super().__init__(torch.device("cpu"))
        self.entered, self.release = threading.Event(), threading.Event()
        self.calls = 0

    def reconstruct(self, *args, **kwargs):
        self.calls += 1
        self.entered.set()
        if not self.release.wait(60):
            raise RuntimeError("the test never released the gate")
        return super().reconstruct(*args, **kwargs)


@pytest.fixture
def gate(monkeypatch):
    """Requests for ``cstv`` get a :class:`Gate` (the slow request the test controls)."""
    held = Gate()
    real = session_module.make_reconstructor

    def make(method, *args, **kwargs):
        return held if method == "cstv" else real(method, *args, **kwargs)

    monkeypatch.setattr(session_module, "make_reconstructor", make)
    yield held
    held.release.set()


def test_a_slow_request_does_not_block_a_fast_one(start_server, raw, gate):
    server = start_server(workers=2)
    replies = {}
    slow = threading.Thread(target=lambda: replies.setdefault(
        "slow", stream_file(server.address, raw / "multislice.h5", "cstv")))
    slow.start()
    assert gate.entered.wait(30)
    fast = stream_file(server.address, raw / "multislice.h5", "zerofill", timeout=30)
    slow_still_held = slow.is_alive() and not gate.release.is_set()
    gate.release.set()
    slow.join(60)
    assert fast.closed and len(fast.images) == 3 and slow_still_held
    assert replies["slow"].closed and len(replies["slow"].images) == 3


def test_time_queued_for_a_worker_is_reported_apart_from_compute(start_server, raw, gate,
                                                                 monkeypatch):
    server = start_server(workers=1)
    queued = threading.Event()
    real_slot = server.pool.slot

    def slot(recon, cancelled):
        if recon is not gate:
            queued.set()  # the zero-filling request asks for the slot the gate holds
        return real_slot(recon, cancelled)

    monkeypatch.setattr(server.pool, "slot", slot)
    replies = {}

    def request(config):
        replies[config] = stream_file(server.address, raw / "multislice.h5", config)

    slow = threading.Thread(target=request, args=("cstv",))
    slow.start()
    assert gate.entered.wait(30)
    fast = threading.Thread(target=request, args=("zerofill",))
    fast.start()
    assert queued.wait(30)
    time.sleep(0.3)  # the slot stays held: at least this long queued
    gate.release.set()
    for thread in (slow, fast):
        thread.join(60)
    _, compute, _, _, waited, total = TIMING.fullmatch(replies["zerofill"].infos[-1]).groups()
    assert float(waited) >= 300
    assert float(total) == pytest.approx(float(compute) + float(waited), abs=0.02)
    assert len(replies["zerofill"].images) == len(replies["cstv"].images) == 3


@pytest.mark.parametrize("name, hang_up", [
    ("volume.h5", socket.SHUT_RDWR),     # one 3-D slice in two batches: stops between them
    ("multislice.h5", socket.SHUT_WR),   # three slices: stops before the second
])
def test_work_for_a_vanished_client_is_cancelled_at_the_next_boundary(start_server, raw, gate,
                                                                     caplog, name, hang_up):
    caplog.set_level(logging.DEBUG, logger="npgd_recon.server")
    server = start_server(workers=2)
    header, acquisitions = read_file(raw / name)
    with connect(server.address) as sock:
        send_stream(Sender(sock), header, acquisitions, "cstv")
        assert gate.entered.wait(30)
        assert receive(sock, messages=1).infos  # read, so that closing sends FIN, not RST
        port = sock.getsockname()[1]
        sock.shutdown(hang_up)
        assert wait_for_log(caplog, f":{port}: the client hung up")
        gate.release.set()
        lines = wait_for_log(caplog, f":{port}: connection ended")
    assert len(lines) == 1 and "went away" in lines[0].getMessage()
    assert gate.calls == 1  # the second batch / slices 2 and 3 were never reconstructed
    assert len(stream_file(server.address, raw / "multislice.h5").images) == 3


def test_silence_is_not_counted_while_the_server_is_busy(start_server, raw, gate):
    server = start_server(limits=Limits(idle_timeout_s=1.0), workers=2)
    header, acquisitions = read_file(raw / "multislice.h5")
    first = next(i for i, a in enumerate(acquisitions)
                 if a.is_flag_set(ismrmrd.ACQ_LAST_IN_SLICE)) + 1
    with connect(server.address) as sock:
        sender = Sender(sock)
        sender.config_file("cstv")
        sender.header(header)
        for acquisition in acquisitions[:first]:
            sender.acquisition(acquisition)
        assert gate.entered.wait(30)
        time.sleep(2.5)  # the client is silent, but the server is busy with its slice
        gate.release.set()
        assert len(receive(sock, images=1).images) == 1
        for acquisition in acquisitions[first:]:
            sender.acquisition(acquisition)
        sender.close()
        rest = receive(sock)
    assert rest.closed and len(rest.images) == 2 and rest.errors == []


def test_silent_client_at_a_message_boundary_is_dropped_with_one_line(start_server, raw,
                                                                      caplog):
    server = start_server(limits=Limits(idle_timeout_s=1.0))
    header, _ = read_file(raw / "multislice.h5")
    with connect(server.address) as sock:
        sender = Sender(sock)
        sender.config_file("zerofill")
        sender.header(header)
        port = sock.getsockname()[1]
        reply = receive(sock)
    assert reply.images == [] and not reply.closed
    lines = wait_for_log(caplog, f":{port}: ")
    lines = [r for r in caplog.records if f":{port}: " in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert "dropped: no data for 1 s (--timeout)" in lines[0].getMessage()


def test_clean_end_of_stream_is_not_a_warning(start_server, caplog):
    caplog.set_level(logging.INFO, logger="npgd_recon.server")
    server = start_server()
    with connect(server.address) as sock:
        port = sock.getsockname()[1]
    assert wait_for_log(caplog, f":{port}: the client closed the connection before CLOSE")
    records = [r for r in caplog.records if f":{port}: " in r.getMessage()]
    assert [r.levelno for r in records] == [logging.INFO]

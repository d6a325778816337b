"""The serve image's health check (docker/healthcheck.py) against a real in-process npgd-serve,
and what the Dockerfile promises about it; the images themselves are `make docker-test`."""

from __future__ import annotations

import importlib.util
import re
import socket
import threading
from pathlib import Path

import pytest

from npgd_recon.recon.base import ReconOptions
from npgd_recon.server.session import ReconstructorPool
from npgd_recon.server.transport import ReconServer

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def _healthcheck():
    spec = importlib.util.spec_from_file_location("healthcheck", DOCKER / "healthcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def server_port():
    server = ReconServer(ReconstructorPool("zerofill", ReconOptions(device="cpu")), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.address[1]
    server.shutdown()
    thread.join(10)


def test_a_running_server_is_healthy(server_port, capsys):
    assert _healthcheck().main(["healthcheck.py", str(server_port)]) == 0
    assert "MRD CLOSE answered" in capsys.readouterr().out


def test_no_server_is_unhealthy():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free, and nothing listens on it
    assert _healthcheck().check(port, timeout_s=2) is not None


def test_a_port_that_answers_something_else_is_unhealthy():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def answer():
            conn, _ = listener.accept()
            with conn:
                conn.recv(2)
                conn.sendall(b"HTTP/1.0 400\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        problem = _healthcheck().check(listener.getsockname()[1], timeout_s=5)
        thread.join(5)
    assert problem is not None and "not an MRD CLOSE" in problem


def test_the_serve_image_checks_the_port_it_serves_as_a_user():
    text = (DOCKER / "Dockerfile").read_text()
    serve = text[text.index("FROM runtime AS serve"):]
    entry_port = re.search(r'ENTRYPOINT \["npgd-serve".*"--port", "(\d+)"\]', serve).group(1)
    check_port = re.search(r'HEALTHCHECK .*?CMD \[.*"(\d+)"\]', serve, re.S).group(1)
    assert entry_port == check_port == re.search(r"EXPOSE (\d+)", serve).group(1)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and all(not u.startswith(("root", "0")) for u in users)

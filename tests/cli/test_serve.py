"""npgd-serve's command line: one-line errors with exit 2, a real process serving a client,
and a clean exit 0 on SIGTERM."""

import os
import signal
import socket
import subprocess
import sys

import pytest

from npgd_recon.cli.serve import main
from tests.server.mrd_client import connect, stream_file


@pytest.mark.parametrize("argv, message", [
    (["--port", "70000"], "--port must be 0-65535"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--method", "fancy"], "argument --method: invalid choice"),
    (["--max-buffer-mb", "0"], "--max-buffer-mb must be positive"),
    (["--workers", "0"], "--workers must be positive"),
    (["--threads", "0"], "--threads must be positive"),
    (["--timeout", "-1"], "--timeout must be positive"),
])
def test_bad_arguments_are_one_line_and_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_missing_weights_and_busy_port_are_one_line_errors(capsys, tmp_path):
    assert main(["--method", "npgd", "--weights", str(tmp_path / "none.safetensors"),
                 "--port", "0", "--device", "cpu"]) == 2
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert main(["--method", "zerofill", "--port", str(port), "--device", "cpu"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(line.startswith("npgd-serve: error:") for line in lines)
    assert "none.safetensors" in lines[0]


def test_a_thread_budget_beyond_the_cores_is_a_one_line_error(capsys):
    cores = len(os.sched_getaffinity(0))
    assert main(["--method", "zerofill", "--port", "0", "--device", "cpu", "--workers", "2",
                 "--threads", str(cores)]) == 2
    assert capsys.readouterr().err == (f"npgd-serve: error: 2 workers x {cores} threads need "
                                       f"{2 * cores} cores, but this process may use {cores}\n")


def test_sigterm_stops_the_server_cleanly(raw, tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "npgd_recon.cli.serve", "--port", "0", "--method", "zerofill",
         "--device", "cpu", "--workers", "2", "--dump", str(tmp_path / "dumps")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = process.stdout.readline()
        assert "npgd-serve: listening on 127.0.0.1:" in banner, process.stderr.read()
        cores = len(os.sched_getaffinity(0))
        assert f"device cpu (2 at once) | CPU: 2 workers x {max(1, cores // 2)} threads of " \
               f"{cores} cores" in banner
        port = int(banner.split("127.0.0.1:")[1].split()[0])
        reply = stream_file(("127.0.0.1", port), raw / "multislice.h5", "default")
        assert reply.closed and len(reply.images) == 3
        with connect(("127.0.0.1", port)) as idle:
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0
            assert idle.recv(1) == b""
        assert "npgd-serve: stopped" in process.stdout.read()
        assert len(list((tmp_path / "dumps").glob("stream-*.h5"))) == 1
    finally:
        process.kill()
        process.wait()

"""What every command does with an exception: user errors are one line and exit 2, anything else
is a bug, one ``internal error`` line and exit 1, with the traceback only under NPGD_DEBUG=1."""

import signal
import subprocess
import sys
import textwrap

import pytest

from bart_baselines.runner import BartError
from npgd_recon.cli._common import run
from npgd_recon.cli.recon import main as recon
from npgd_recon.core.errors import NpgdError
from npgd_recon.recon import pipeline
from npgd_recon.sim.phantoms import shepp_logan
from npgd_recon.sim.scan_writer import write_scan


def fail(error: BaseException):
    def body() -> int:
        raise error
    return body


@pytest.mark.parametrize("error", [
    NpgdError("bad option\nsecond line"),
    BartError(["bart", "pics"], "pics failed"),
    FileNotFoundError(2, "No such file or directory", "in.h5"),
])
def test_user_errors_are_one_line_and_exit_2(capsys, monkeypatch, error):
    monkeypatch.setenv("NPGD_DEBUG", "1")  # user errors never show a traceback
    assert run("prog", fail(error)) == 2
    err = capsys.readouterr().err
    assert err.startswith("prog: error: ") and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("error", [ValueError("shapes differ"), KeyError("kspace"),
                                   RuntimeError()])
def test_any_other_exception_is_an_internal_error_with_exit_1(capsys, monkeypatch, error):
    monkeypatch.delenv("NPGD_DEBUG", raising=False)
    assert run("prog", fail(error)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"prog: internal error: {type(error).__name__}")
    assert err.rstrip().endswith("(NPGD_DEBUG=1 shows the traceback)")


@pytest.fixture
def scan(tmp_path):
    path = tmp_path / "scan.h5"
    write_scan(path, shepp_logan((2, 32, 24)))
    return path


def broken_study(*args, **kwargs):
    raise IndexError("index 3 is out of bounds for axis 0 with size 2")


def test_a_bug_in_npgd_recon_is_one_line_exit_1_and_leaves_nothing(scan, tmp_path, capsys,
                                                                    monkeypatch):
    monkeypatch.delenv("NPGD_DEBUG", raising=False)
    monkeypatch.setattr(pipeline, "reconstruct_study", broken_study)
    out = tmp_path / "series"
    assert recon([str(scan), "--out", str(out), "--method", "zerofill", "--png", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err == ("npgd-recon: internal error: IndexError: index 3 is out of bounds for axis 0 "
                   "with size 2 (NPGD_DEBUG=1 shows the traceback)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.h5"]


def test_npgd_debug_shows_the_traceback_of_a_bug(scan, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NPGD_DEBUG", "1")
    monkeypatch.setattr(pipeline, "reconstruct_study", broken_study)
    assert recon([str(scan), "--out", str(tmp_path / "series"), "--method", "zerofill",
                  "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert "in broken_study" in err and "IndexError: index 3 is out of bounds" in err
    assert err.splitlines()[-1] == ("npgd-recon: internal error: IndexError: index 3 is out of "
                                    "bounds for axis 0 with size 2")


def test_ctrl_c_that_drops_an_open_file_is_still_one_line(tmp_path):
    """Ctrl-C right after ``open`` returns, before a ``with`` holds the file: the unwinding frees
    it unclosed, and with ResourceWarning shown (``-W default``) only the one line may follow."""
    body = textwrap.dedent(f"""
        import os, signal, sys, time
        from npgd_recon.cli._common import run
        def body():
            # the file sits on the evaluation stack when the signal's handler raises
            return len([open({str(tmp_path / "f")!r}, "wb"),
                        os.kill(os.getpid(), signal.SIGINT), time.sleep(30)])
        sys.exit(run("prog", body))
    """)
    done = subprocess.run([sys.executable, "-W", "default::ResourceWarning", "-c", body],
                          capture_output=True, text=True, timeout=60,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert done.returncode == 130
    assert done.stderr.splitlines() == ["prog: interrupted; nothing was written"]

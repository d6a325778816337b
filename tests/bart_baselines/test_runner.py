"""The bart runner: locating the binary, temporary folders, errors, against the real binary."""

import os
import tempfile
import time

import numpy as np
import pytest

from bart_baselines import BartError, BartNotFoundError, find_bart, run_bart
from npgd_recon.core.fft import fft2c
from tests.conftest import needs_bart


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """Point tempfile at an empty folder so leftovers of run_bart are visible."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def fake_bart(folder, script: str):
    """An executable ``folder/bart`` running ``script`` in sh."""
    folder.mkdir(exist_ok=True)
    path = folder / "bart"
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)
    return path


@needs_bart
def test_fft_round_trip_and_folder_removed(private_tmp):
    rng = np.random.default_rng(0)
    image = (rng.standard_normal((12, 10)) + 1j * rng.standard_normal((12, 10))).astype(
        np.complex64)
    out = run_bart(["fft", "-u", "3", "img", "k"], {"img": image}, ["k"], threads=1)
    np.testing.assert_allclose(out["k"], fft2c(image), atol=1e-5)
    assert list(private_tmp.iterdir()) == []


@needs_bart
def test_failed_call_is_one_line_error_with_command_and_message(private_tmp):
    with pytest.raises(BartError) as caught:
        run_bart(["fft", "-u", "3", "missing", "out"])
    error = caught.value
    assert not isinstance(error, BartNotFoundError)
    assert error.command[1:] == ["fft", "-u", "3", "missing", "out"]
    assert "missing" in error.message and "No such file" in error.message
    assert error.returncode != 0
    text = str(error)
    assert "\n" not in text and "\x1b" not in text
    assert "fft -u 3 missing out" in text and "No such file" in text
    assert list(private_tmp.iterdir()) == []


@needs_bart
def test_output_bart_did_not_write_is_an_error():
    with pytest.raises(BartError, match="no output 'nothing'"):
        run_bart(["version"], outputs=["nothing"])


def test_names_must_be_bare(tmp_path):
    with pytest.raises(ValueError, match="bare file name"):
        run_bart(["fft", "-u", "3", "x", "y"], {"../x": np.zeros(2)}, ["y"])
    with pytest.raises(ValueError, match="threads"):
        run_bart(["version"], threads=0)


def test_toolbox_path_is_preferred_and_threads_are_passed(tmp_path, monkeypatch, private_tmp):
    fake = fake_bart(tmp_path / "toolbox", 'echo "threads=$OMP_NUM_THREADS args=$*" >&2; exit 3')
    monkeypatch.setenv("BART_TOOLBOX_PATH", str(fake.parent))
    assert find_bart() == str(fake)
    with pytest.raises(BartError) as caught:
        run_bart(["pics", "a", "b"], {"a": np.ones(3)}, threads=2)
    assert caught.value.returncode == 3
    assert caught.value.message == "threads=2 args=pics a b"
    assert "(exit 3)" in str(caught.value)
    assert list(private_tmp.iterdir()) == []


def test_missing_binary_says_how_to_install(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("BART_TOOLBOX_PATH", str(empty))
    with pytest.raises(BartNotFoundError) as caught:
        run_bart(["version"])
    assert isinstance(caught.value, BartError)
    text = str(caught.value)
    assert "apt-get install -y bart" in text and "BART_TOOLBOX_PATH" in text
    assert "\n" not in text
    monkeypatch.delenv("BART_TOOLBOX_PATH")
    with pytest.raises(BartNotFoundError, match="apt-get install -y bart"):
        find_bart()


def test_toolbox_path_without_bart_falls_back_to_path(tmp_path, monkeypatch):
    on_path = fake_bart(tmp_path / "bin", "exit 0")
    monkeypatch.setenv("PATH", str(on_path.parent) + os.pathsep + os.environ["PATH"])
    monkeypatch.setenv("BART_TOOLBOX_PATH", str(tmp_path / "nowhere"))
    assert find_bart() == str(on_path)


def _reported_env(tmp_path, monkeypatch, **call) -> str:
    fake = fake_bart(tmp_path / "toolbox",
                     'echo "$OMP_NUM_THREADS $OMP_WAIT_POLICY" >&2; exit 3')
    monkeypatch.setenv("BART_TOOLBOX_PATH", str(fake.parent))
    with pytest.raises(BartError) as caught:
        run_bart(["pics"], **call)
    return caught.value.message


def test_every_call_gets_an_explicit_thread_count_and_a_passive_wait_policy(
        tmp_path, monkeypatch):
    from bart_baselines.runner import available_cores

    monkeypatch.setenv("OMP_NUM_THREADS", "64")  # what a loaded shell may hand down
    monkeypatch.delenv("NPGD_THREADS", raising=False)
    assert _reported_env(tmp_path, monkeypatch) == f"{available_cores()} PASSIVE"
    monkeypatch.setenv("NPGD_THREADS", "1")
    assert _reported_env(tmp_path, monkeypatch) == "1 PASSIVE"


def test_the_process_default_overrides_the_environment_and_a_call_overrides_both(
        tmp_path, monkeypatch):
    from bart_baselines.runner import set_default_threads

    monkeypatch.setenv("NPGD_THREADS", "3")
    set_default_threads(2)
    try:
        assert _reported_env(tmp_path, monkeypatch) == "2 PASSIVE"
        assert _reported_env(tmp_path, monkeypatch, threads=5) == "5 PASSIVE"
    finally:
        set_default_threads(None)
    assert _reported_env(tmp_path, monkeypatch) == "3 PASSIVE"


def test_a_bad_thread_budget_is_a_one_line_value_error(monkeypatch):
    from bart_baselines.runner import default_threads, set_default_threads

    monkeypatch.setenv("NPGD_THREADS", "many")
    with pytest.raises(ValueError, match="NPGD_THREADS"):
        default_threads()
    with pytest.raises(ValueError, match="threads"):
        set_default_threads(0)


def test_a_started_call_can_be_killed_and_leaves_nothing(tmp_path, monkeypatch, private_tmp):
    from bart_baselines.runner import start_bart

    started = tmp_path / "started"
    fake = fake_bart(tmp_path / "toolbox", f"touch {started}; exec sleep 600")
    monkeypatch.setenv("BART_TOOLBOX_PATH", str(fake.parent))
    call = start_bart(["ecalib", "kspace", "maps"], {"kspace": np.ones((4, 4))}, ["maps"])
    while not started.exists():
        time.sleep(0.01)
    assert len(list(private_tmp.iterdir())) == 1  # its folder, with the input
    call.kill()
    assert call._process.returncode is not None
    assert list(private_tmp.iterdir()) == []


def test_concurrent_slice_calibrations_stop_the_others_when_one_fails(tmp_path, monkeypatch,
                                                                       private_tmp):
    """espirit_maps runs one ecalib per slice, two at once on two threads' budget, and waits
    for them in order: a failing call ends the stack with its error, and the call beside it is
    killed, not waited for."""
    from bart_baselines.cs import espirit_maps

    calls = tmp_path / "calls"
    calls.mkdir()
    # the first call fails, the second (started beside it) would block for ten minutes
    fake = fake_bart(tmp_path / "toolbox",
                     f'n=$(ls {calls} | wc -l); touch {calls}/$n\n'
                     'if [ "$n" != 0 ]; then exec sleep 600; fi\n'
                     'echo "no calibration region" >&2; exit 1')
    monkeypatch.setenv("BART_TOOLBOX_PATH", str(fake.parent))
    start = time.monotonic()
    with pytest.raises(BartError, match="no calibration region"):
        espirit_maps(np.ones((3, 2, 8, 8), np.complex64), stack=True, threads=2)
    assert time.monotonic() - start < 60
    assert len(list(calls.iterdir())) <= 2  # the third slice never started
    assert list(private_tmp.iterdir()) == []

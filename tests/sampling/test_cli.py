"""The npgd-mask command: files written, rate printed, bad arguments rejected in one line."""

import subprocess
import sys

import numpy as np

from bart_baselines.cfl import readcfl


def run(*args):
    return subprocess.run([sys.executable, "-m", "sampling.cli", *args],
                          capture_output=True, text=True)


def test_writes_npy_cfl_png_and_reports_rate(tmp_path):
    result = run(str(tmp_path / "mask"), "--shape", "200x100", "--accel", "5")
    assert result.returncode == 0, result.stderr
    assert "rate 20.0000%" in result.stdout
    mask = np.load(tmp_path / "mask.npy")
    assert mask.shape == (200, 100) and mask.sum() == 4000
    cfl = readcfl(tmp_path / "mask")
    np.testing.assert_array_equal(cfl[0].real.astype(bool), mask)
    assert (tmp_path / "mask.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_accel_is_one_line_exit_2(tmp_path):
    result = run(str(tmp_path / "mask"), "--accel", "0.5")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "accel" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())


def test_one_calibration_option_for_every_kind(tmp_path):
    """A box CYxCZ for every kind (lines keeps CY rows), or just CY for lines."""
    for kind, calib, rows in (("lines", "16x8", 16), ("lines", "12", 12), ("vdrad", "16x8", 16)):
        result = run(str(tmp_path / kind), "--shape", "64x48", "--accel", "3", "--kind", kind,
                     "--calib", calib)
        assert result.returncode == 0, result.stderr
        mask = np.load(tmp_path / f"{kind}.npy")
        assert mask[32 - rows // 2: 32 - rows // 2 + rows, 20:28].all()

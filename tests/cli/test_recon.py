"""npgd-recon end to end: ISMRMRD in, dciodvfy-clean DICOM out; bad input never leaves output."""

import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pydicom
import pytest

from npgd_recon.sim.phantoms import shepp_logan
from npgd_recon.sim.scan_writer import ScanSettings, write_scan
from sampling import vdrad
from tests.conftest import dciodvfy_findings, save_tiny_model


def recon(*args):
    return subprocess.run([sys.executable, "-m", "npgd_recon.cli.recon", "--quiet", *args],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    write_scan(root / "full2d.h5", shepp_logan((2, 48, 40)),
               settings=ScanSettings(coils=3, oversampling=2, noise=0.002))
    write_scan(root / "vd3d.h5", shepp_logan((12, 32, 24)), volumetric=True,
               pattern=vdrad((32, 12), 2.5, seed=1), settings=ScanSettings(coils=1))
    save_tiny_model(root / "tiny.safetensors")
    return root


@pytest.mark.parametrize("method", ["zerofill", "cswv", "npgd"])
def test_2d_multicoil_retrospective_series_is_dciodvfy_clean(files, tmp_path, method):
    out = tmp_path / "series"
    result = recon(str(files / "full2d.h5"), "--out", str(out), "--method", method,
                   "--weights", str(files / "tiny.safetensors"), "--undersample", "3", "--png",
                   "--also-ismrmrd", str(tmp_path / "images.h5"))
    assert result.returncode == 0, result.stderr
    assert f"2 images written to {out} | method {method}" in result.stdout
    dicoms = sorted(out.iterdir())
    assert [p.name for p in dicoms] == ["IM00001.dcm", "IM00002.dcm"]
    for path in dicoms:
        assert dciodvfy_findings(path) == []
    first = pydicom.dcmread(dicoms[0])
    assert (first.Rows, first.Columns) == (48, 40)
    assert method.upper() in first.SeriesDescription
    assert (tmp_path / "series.png").read_bytes()[:4] == b"\x89PNG"
    with h5py.File(tmp_path / "images.h5") as f:
        assert f["dataset/image_0/data"].shape[0] == 2


def test_3d_file_gives_one_image_per_readout_position(files, tmp_path):
    result = recon(str(files / "vd3d.h5"), "--out", str(tmp_path / "s"), "--method", "npgd",
                   "--weights", str(files / "tiny.safetensors"), "--precision", "fp32")
    assert result.returncode == 0, result.stderr
    assert "(fp32)" in result.stdout
    assert pydicom.dcmread(sorted((tmp_path / "s").iterdir())[0]).SeriesDescription.endswith(
        "fp32")
    images = sorted((tmp_path / "s").iterdir())
    assert len(images) == 24
    assert (pydicom.dcmread(images[0]).Rows, pydicom.dcmread(images[0]).Columns) == (32, 12)


def corrupt(files, tmp_path, how):
    path = tmp_path / "bad.h5"
    if how == "not-hdf5":
        path.write_text("hello\n")
    elif how == "truncated":
        data = (files / "full2d.h5").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "flipped":
        data = bytearray((files / "full2d.h5").read_bytes())
        data[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64
        path.write_bytes(bytes(data))
    elif how == "no-header":
        shutil.copy(files / "full2d.h5", path)
        with h5py.File(path, "a") as f:
            del f["dataset/xml"]
    elif how == "nan":
        shutil.copy(files / "full2d.h5", path)
        with h5py.File(path, "a") as f:
            table = f["dataset/data"]
            row = table[5]
            row["data"][:] = np.nan
            table[5] = row
    return path


@pytest.mark.parametrize("how", ["not-hdf5", "truncated", "flipped", "no-header", "nan"])
def test_bad_files_one_line_exit_2_nothing_written(files, tmp_path, how):
    path = corrupt(files, tmp_path, how)
    out = tmp_path / "series"
    result = recon(str(path), "--out", str(out), "--method", "zerofill")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.h5"]


def test_bad_options_one_line_exit_2(files, tmp_path):
    out = tmp_path / "series"
    for args in (["--weights", "no-such-model"], ["--group", "nope", "--method", "zerofill"],
                 ["--undersample", "0.5", "--method", "zerofill"]):
        result = recon(str(files / "full2d.h5"), "--out", str(out), *args)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, (args, result.stderr)
        assert not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("x")
    result = recon(str(files / "full2d.h5"), "--out", str(out), "--method", "zerofill")
    assert result.returncode == 2 and "--force" in result.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    result = recon(str(files / "vd3d.h5"), "--out", str(tmp_path / "x"), "--method",
                   "zerofill", "--undersample", "4")
    assert result.returncode == 2 and "fully sampled" in result.stderr
    result = recon(str(files / "full2d.h5"), "--out", str(tmp_path / "y"), "--method",
                   "zerofill", "--undersample", "60")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "--undersample 60" in result.stderr
    assert "accel" not in result.stderr and "calib" not in result.stderr.replace("calibration", "")


def test_tool_generated_file(tmp_path):
    subprocess.run(["ismrmrd_generate_cartesian_shepp_logan", "-m", "64", "-c", "4", "-O", "2",
                    "-C", "-o", str(tmp_path / "sl.h5")], check=True, capture_output=True)
    result = recon(str(tmp_path / "sl.h5"), "--out", str(tmp_path / "s"), "--method",
                   "zerofill", "--undersample", "3")
    assert result.returncode == 0, result.stderr
    [image] = sorted((tmp_path / "s").iterdir())
    assert dciodvfy_findings(image) == []


def leftovers(folder):
    """Every name in ``folder`` (temporary ones included)."""
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("case", ["png-is-a-folder", "ismrmrd-parent-is-a-file",
                                  "ismrmrd-exists", "bad-input"])
def test_every_output_is_checked_first_and_nothing_is_left(files, tmp_path, case):
    out = tmp_path / "series"
    source = files / "full2d.h5"
    extra = ["--png", "--also-ismrmrd", str(tmp_path / "images.h5")]
    if case == "png-is-a-folder":
        (tmp_path / "series.png").mkdir()
    elif case == "ismrmrd-parent-is-a-file":
        (tmp_path / "file").write_text("x")
        extra = ["--png", "--also-ismrmrd", str(tmp_path / "file" / "images.h5")]
    elif case == "ismrmrd-exists":
        (tmp_path / "images.h5").write_text("old")
    else:
        source = tmp_path / "missing.h5"
    before = leftovers(tmp_path)
    result = recon(str(source), "--out", str(out), "--method", "zerofill", *extra)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr and ".part" not in result.stderr
    assert leftovers(tmp_path) == before
    if case == "ismrmrd-exists":
        assert "--force" in result.stderr and (tmp_path / "images.h5").read_text() == "old"


def test_all_outputs_appear_together_and_force_replaces_them(files, tmp_path):
    args = [str(files / "full2d.h5"), "--out", str(tmp_path / "s"), "--method", "zerofill",
            "--png", "--also-ismrmrd", str(tmp_path / "s.h5")]
    assert recon(*args).returncode == 0
    assert leftovers(tmp_path) == ["s", "s.h5", "s.png"]
    assert recon(*args).returncode == 2
    assert recon(*args, "--force").returncode == 0
    assert leftovers(tmp_path) == ["s", "s.h5", "s.png"]


def test_ctrl_c_exits_130_with_one_line_and_nothing_left(files, tmp_path):
    """The signal lands while BART runs, whatever the load: the ``bart`` on the path announces
    itself and then blocks until it is killed, so the test waits on a condition, not on luck."""
    started = tmp_path / "toolbox" / "bart-started"
    fake = tmp_path / "toolbox" / "bart"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\ntouch {started}\nexec sleep 600\n")
    fake.chmod(0o755)
    process = subprocess.Popen(
        [sys.executable, "-m", "npgd_recon.cli.recon", str(files / "full2d.h5"), "--out",
         str(tmp_path / "s"), "--method", "cstv", "--png"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "BART_TOOLBOX_PATH": str(fake.parent)})
    deadline = time.monotonic() + 120
    while not started.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "bart was never started"
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=60)
    assert process.returncode == 130
    lines = [line for line in rest.replace("\r", "\n").splitlines() if "npgd-recon:" in line]
    assert lines == ["npgd-recon: interrupted; nothing was written"]
    assert "Traceback" not in rest
    assert leftovers(tmp_path) == ["toolbox"]

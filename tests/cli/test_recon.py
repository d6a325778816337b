"""npgd-recon end to end: ISMRMRD in, dciodvfy-clean DICOM out; bad input never leaves output."""

import errno
import fcntl
import json
import os
import pty
import re
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time

import h5py
import numpy as np
import pydicom
import pytest

from npgd_recon.models.registry import (
    CPU_DEFAULT,
    MULTI_DEFAULT,
    SMALL_MULTI,
    SMALL_SINGLE,
    SOFT_SMALL,
)
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


@pytest.mark.parametrize("matrix, coils, model", [((48, 40), 2, SMALL_MULTI),
                                                  ((48, 40), 1, SMALL_SINGLE),
                                                  ((96, 80), 2, MULTI_DEFAULT),
                                                  ((96, 80), 1, CPU_DEFAULT)])
def test_the_default_model_follows_the_plane_matrix_and_says_so(tmp_path, matrix, coils, model):
    """Without --weights, planes of at most 64 pixels a side (oversampling removed) get the
    CPU default's single-coil small arm (multi-coil ones its multi-coil small arm), larger
    multi-coil ones its multi-coil arm, larger single-coil ones the default; stderr says which
    and why."""
    write_scan(tmp_path / "scan.h5", shepp_logan((1, *matrix)),
               settings=ScanSettings(coils=coils, oversampling=2, noise=0.002))
    command = ["--out", str(tmp_path / "s"), "--undersample", "3", "--device", "cpu"]
    result = subprocess.run([sys.executable, "-m", "npgd_recon.cli.recon",
                             str(tmp_path / "scan.h5"), *command], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"{coils}-coil data, {matrix[0]}x{matrix[1]} planes: model {model} (" in result.stderr
    assert f"| method npgd, model {model} (" in result.stdout
    image = pydicom.dcmread(tmp_path / "s" / "IM00001.dcm")
    assert (image.Rows, image.Columns) == matrix


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
        # ResourceWarning shown, as some environments do: none may come out
        [sys.executable, "-W", "default::ResourceWarning", "-m", "npgd_recon.cli.recon",
         str(files / "full2d.h5"), "--out",
         str(tmp_path / "s"), "--method", "cstv", "--png"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "BART_TOOLBOX_PATH": str(fake.parent)},
        # a suite started in the background of a script inherits SIGINT ignored, and Python
        # then installs no KeyboardInterrupt handler: give the child the default disposition
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not started.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "bart was never started"
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=60)
    assert process.returncode == 130
    # exactly one line: no ResourceWarning about an unwaited bart, no tracemalloc hint; a tqdm
    # bar would be set aside, but off a terminal the progress is one line per finished stage
    lines = [line for line in rest.replace("\r", "\n").splitlines()
             if line.strip() and "%|" not in line]
    assert lines == ["npgd-recon: interrupted; nothing was written"]
    assert "Traceback" not in rest
    assert leftovers(tmp_path) == ["toolbox"]


def run_recon(*args, stderr=subprocess.PIPE):
    """npgd-recon without ``--quiet``: its progress goes to ``stderr``."""
    return subprocess.run([sys.executable, "-m", "npgd_recon.cli.recon", *args],
                          stdout=subprocess.PIPE, stderr=stderr, text=True)


def test_timings_table_on_stderr_and_json_committed_beside_the_series(files, tmp_path):
    args = [str(files / "full2d.h5"), "--out", str(tmp_path / "s"), "--method", "zerofill",
            "--undersample", "3", "--timings"]
    result = run_recon(*args)
    assert result.returncode == 0, result.stderr
    assert leftovers(tmp_path) == ["s", "s.timings.json"]
    record = json.loads((tmp_path / "s.timings.json").read_text())
    assert (record["method"], record["images"], record["coils"], record["is_3d"]) == (
        "zerofill", 2, 3, False)
    stages = record["seconds"]
    assert list(stages) == ["read", "undersampling", "coil_maps", "setup", "reconstruction",
                            "writing"]
    assert all(seconds >= 0 for seconds in stages.values())
    assert record["total_seconds"] == pytest.approx(sum(stages.values()), abs=1e-3)
    lines = result.stderr.splitlines()
    assert "\r" not in result.stderr  # off a terminal: one line per finished stage, no bar
    assert re.fullmatch(r"coil maps: 2 slices in \d+\.\d\d s", lines[0])
    assert re.fullmatch(r"zerofill: 2 slices in \d+\.\d\d s", lines[1])
    assert lines[2] == "npgd-recon: seconds per stage"
    assert [line.split()[0] for line in lines[3:]] == ["read", "retrospective", "coil",
                                                       "waiting", "reconstruction", "writing",
                                                       "total"]
    shutil.rmtree(tmp_path / "s")
    again = recon(*args)
    assert again.returncode == 2 and "s.timings.json exists" in again.stderr
    assert leftovers(tmp_path) == ["s.timings.json"]


def test_3d_progress_counts_planes_in_a_log_and_on_a_terminal(files, tmp_path):
    result = run_recon(str(files / "vd3d.h5"), "--out", str(tmp_path / "a"), "--method",
                       "zerofill")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"zerofill: 24 planes in \d+\.\d\d s\n", result.stderr)
    terminal, screen = pty.openpty()
    fcntl.ioctl(screen, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "npgd_recon.cli.recon", str(files / "vd3d.h5"), "--out",
         str(tmp_path / "b"), "--method", "zerofill"], stdout=subprocess.DEVNULL, stderr=screen)
    os.close(screen)
    shown = b""
    while chunk := _read_or_end(terminal):
        shown += chunk
    os.close(terminal)
    assert process.wait(timeout=60) == 0
    updates = shown.decode().replace("\r\n", "\r").split("\r")
    first = next(update for update in updates if update.strip())
    assert "0/24" in first and "plane/s" in first
    assert "slice" not in shown.decode() and "24/24" in updates[-2]


def _read_or_end(terminal: int) -> bytes:
    """What a pseudo-terminal shows next; b"" once the writer has closed it."""
    try:
        return os.read(terminal, 4096)
    except OSError:  # EIO: every writer is gone
        return b""


def test_a_write_error_names_the_users_path_not_the_staging_one(files, tmp_path, monkeypatch,
                                                                 capsys):
    from npgd_recon.cli.recon import main
    from npgd_recon.recon import pipeline

    def full_disk(images, geometry, folder, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / "IM00001.dcm"))

    monkeypatch.setattr(pipeline, "write_series_files", full_disk)
    out = tmp_path / "series"
    assert main([str(files / "full2d.h5"), "--out", str(out), "--method", "zerofill",
                 "--quiet", "--png"]) == 2
    assert capsys.readouterr().err == (f"npgd-recon: error: [Errno {errno.ENOSPC}] No space "
                                       f"left on device: '{out / 'IM00001.dcm'}'\n")
    assert leftovers(tmp_path) == []


def test_reconstructions_of_one_file_are_series_of_one_study(files, tmp_path):
    """Issue 26: one raw file is one study and frame of reference; each reconstruction is its
    own series, numbered by method unless --series-number says otherwise, and says what made
    it (method, model file's stem, precision, R) within SeriesDescription's 64 characters."""
    long_model = tmp_path / ("m" * 70 + ".safetensors")
    shutil.copy(files / "tiny.safetensors", long_model)
    runs = {"zerofill": [],
            "cswv": ["--series-number", "12", "--series-description", "CS wavelet, λ auto"],
            "npgd": ["--weights", str(long_model), "--precision", "fp32"]}
    first = {}
    for method, extra in runs.items():
        out = tmp_path / method
        result = recon(str(files / "full2d.h5"), "--out", str(out), "--method", method,
                       "--undersample", "3", *extra)
        assert result.returncode == 0, result.stderr
        assert all(dciodvfy_findings(path) == [] for path in out.iterdir())
        first[method] = pydicom.dcmread(sorted(out.iterdir())[0])
    assert len({d.StudyInstanceUID for d in first.values()}) == 1
    assert len({d.FrameOfReferenceUID for d in first.values()}) == 1
    assert len({d.SeriesInstanceUID for d in first.values()}) == 3
    assert [first[m].SeriesNumber for m in runs] == [1, 12, 5]
    assert first["zerofill"].SeriesDescription == "ZEROFILL R=3"
    assert first["cswv"].SeriesDescription == "CS wavelet, λ auto"
    description = first["npgd"].SeriesDescription
    assert len(description) == 64 and description.startswith("NPGD mmmm")
    assert description.endswith("m~ fp32 R=3")
    assert first["npgd"].SoftwareVersions.startswith("npgd-recon ")
    assert (first["npgd"].Manufacturer, float(first["npgd"].MagneticFieldStrength)) == (
        "npgd-recon", 3.0)


@pytest.mark.parametrize("option, value, message", [
    ("--series-number", "0", "--series-number must be from 1 to 2147483647, got 0"),
    ("--series-description", "x" * 65, "--series-description must be at most 64 printable"),
    ("--series-description", "T1\\T2", "without a backslash"),
])
def test_bad_series_labels_one_line_exit_2(files, tmp_path, option, value, message):
    result = recon(str(files / "full2d.h5"), "--out", str(tmp_path / "s"), "--method",
                   "zerofill", option, value)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr and leftovers(tmp_path) == []


def test_soft_sense_follows_an_object_that_fills_the_field_of_view(tmp_path):
    """``--map-sets 2`` (soft SENSE) on an 8-coil scan of an object that fills the field of view
    (its coil images jump across the periodic edges, which one set of smooth maps cannot
    follow): NPGD and CS-WV come closer to the fully sampled image (zero filling of the full
    data, one set) with two sets than with one, and the series stay dciodvfy-clean. NPGD's
    64x64 planes take the small-matrix arm with one set, its soft-SENSE arm with two. NPGD runs
    with ``--map-error 0``: what is measured is the second set's gain, not the maps' error told
    as noise (which closes part of the same gap with one set: tested on its own below)."""
    y, x = np.mgrid[0:64, 0:64] / 64
    plane = (1 + 0.4 * np.cos(2 * np.pi * (1.5 * y + x)) + 0.3 * (x > 0.5)) * np.exp(1j * y)
    write_scan(tmp_path / "scan.h5", np.stack([plane, plane[::-1]]),
               settings=ScanSettings(coils=8, noise=0.001))

    def series(name, *options):
        result = recon(str(tmp_path / "scan.h5"), "--out", str(tmp_path / name), *options)
        assert result.returncode == 0, result.stderr
        if name.startswith("npgd"):
            arm = SOFT_SMALL if name.endswith("2") else SMALL_MULTI
            assert f"model {arm} (" in result.stdout, result.stdout
        paths = sorted((tmp_path / name).iterdir())
        assert dciodvfy_findings(paths[0]) == []
        return np.stack([pydicom.dcmread(p).pixel_array.astype(float) for p in paths])

    def snr(estimate):  # dB, after the best scale (each series has its own)
        scale = (estimate * truth).sum() / (estimate * estimate).sum()
        return 10 * np.log10((truth ** 2).sum() / ((truth - scale * estimate) ** 2).sum())

    truth = series("full", "--method", "zerofill")
    for method in ("npgd", "cswv"):
        extra = ("--map-error", "0") if method == "npgd" else ()
        one, two = (snr(series(f"{method}{sets}", "--method", method, "--undersample", "4",
                               "--map-sets", str(sets), *extra)) for sets in (1, 2))
        assert two > one + 1, (method, one, two)


def test_the_maps_error_told_as_noise_where_the_object_fills_the_field_of_view(tmp_path):
    """``--map-error`` (default 0.1): on an 8-coil object that fills the field of view (one
    set of maps cannot hold its coil images) NPGD comes closer to the fully sampled image
    than when told the thermal noise alone (``--map-error 0``); on the same object inside the
    field of view it changes little; a negative weight is a one-line error."""
    y, x = np.mgrid[0:64, 0:64] / 64
    plane = (1 + 0.4 * np.cos(2 * np.pi * (1.5 * y + x)) + 0.3 * (x > 0.5)) * np.exp(1j * y)
    inside = plane * (np.hypot(y - 0.5, x - 0.5) < 0.3)

    def series(path, name, *options):
        result = recon(str(path), "--out", str(tmp_path / name), *options)
        assert result.returncode == 0, result.stderr
        return np.stack([pydicom.dcmread(p).pixel_array.astype(float)
                         for p in sorted((tmp_path / name).iterdir())])

    def snrs(name, image):  # dB against the fully sampled image, --map-error 0 and 0.1
        path = tmp_path / f"{name}.h5"
        write_scan(path, np.stack([image, image[::-1]]),
                   settings=ScanSettings(coils=8, noise=0.001))
        truth = series(path, f"{name}-full", "--method", "zerofill")
        out = []
        for weight in ("0", "0.1"):
            estimate = series(path, f"{name}-{weight}", "--undersample", "4",
                              "--map-error", weight)
            scale = (estimate * truth).sum() / (estimate * estimate).sum()
            out.append(10 * np.log10((truth ** 2).sum()
                                     / ((truth - scale * estimate) ** 2).sum()))
        return out

    filled, within = snrs("filled", plane), snrs("inside", inside)
    assert filled[1] > filled[0] + 1.0, filled
    assert abs(within[1] - within[0]) < 0.3, within
    result = recon(str(tmp_path / "inside.h5"), "--out", str(tmp_path / "bad"),
                   "--map-error", "-1")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "error weight" in result.stderr and not (tmp_path / "bad").exists()

"""npgd-compare: all methods on one operator, mask and reference; tables, pictures, report."""

import json
import subprocess
import sys

import numpy as np
import pytest

from npgd_recon.sim.phantoms import shepp_logan
from npgd_recon.sim.scan_writer import ScanSettings, write_scan
from tests.conftest import save_tiny_model


def compare(*args):
    return subprocess.run([sys.executable, "-m", "npgd_recon.cli.compare", "--quiet", *args],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    slices = shepp_logan((48, 40))[None] * np.array([1.0, 0.5j])[:, None, None]
    write_scan(root / "a.h5", slices, settings=ScanSettings(coils=1))
    write_scan(root / "b.h5", shepp_logan((40, 40))[None], settings=ScanSettings(coils=3))
    save_tiny_model(root / "tiny.safetensors")
    return root


def test_metrics_tables_pictures_and_report(inputs, tmp_path):
    out = tmp_path / "cmp"
    result = compare(str(inputs / "a.h5"), str(inputs / "b.h5"), "--out", str(out),
                     "--undersample", "3", "--methods", "zerofill,cswv,npgd",
                     "--npgd-weights", str(inputs / "tiny.safetensors"))
    assert result.returncode == 0, result.stderr
    records = json.loads((out / "metrics.json").read_text())
    assert len(records) == (2 + 1) * 3
    assert {r["method"] for r in records} == {"zerofill", "cswv", "npgd"}
    assert set(records[0]) >= {"case", "method", "snr_db", "psnr_db", "ssim", "nrmse",
                               "seconds", "device", "precision"}
    assert {r["precision"] for r in records if r["method"] == "npgd"} <= {"bf16", "fp32"}
    for case in ("a", "b"):
        rows = [r for r in records if r["case"] == case]
        zf = min(r["snr_db"] for r in rows if r["method"] == "zerofill")
        cs = [r for r in rows if r["method"] == "cswv"]
        assert all(r["lam"] > 0 for r in cs)
        assert min(r["snr_db"] for r in cs) > zf + 2  # tuned CS beats zero filling
        assert (out / f"{case}.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "metrics.csv").read_text().count("\n") == len(records) + 1
    report = (out / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 3 and "SNR (dB)" in report
    assert "tiny.safetensors</td>" in report and "<th>precision</th>" in report  # model named
    assert "<h3>CS regularisation</h3>" in report and "<td>CS-WV</td>" in report
    assert "<pre>" not in report and "SNR = 20 log10" in report  # definitions as prose
    assert "zerofill" in result.stdout and "report:" in result.stdout


def test_progress_from_the_first_phase(inputs, tmp_path):
    result = subprocess.run([sys.executable, "-m", "npgd_recon.cli.compare", str(inputs / "b.h5"),
                             "--out", str(tmp_path / "c"), "--methods", "zerofill,cstv",
                             "--undersample", "3"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    err = result.stderr
    phases = ["reading", "ESPIRiT", "tuning CS-TV lambda", "writing pictures"]
    assert all(p in err for p in phases), err
    assert [err.index(p) for p in phases] == sorted(err.index(p) for p in phases)


def test_refusals(inputs, tmp_path):
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "x").write_text("x")
    result = compare(str(inputs / "a.h5"), "--out", str(out), "--methods", "zerofill")
    assert result.returncode == 2 and "--force" in result.stderr
    result = compare(str(tmp_path / "missing.h5"), "--out", str(tmp_path / "new"),
                     "--methods", "zerofill")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert not (tmp_path / "new").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["cmp"]

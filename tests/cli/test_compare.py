"""npgd-compare: all methods on one operator, mask and reference; tables, pictures, report."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from npgd_recon.models.registry import SMALL_MULTI, SOFT_SMALL
from npgd_recon.sim.phantoms import shepp_logan
from npgd_recon.sim.scan_writer import ScanSettings, write_scan
from tests.conftest import needs_bart, save_tiny_model


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
    metrics = json.loads((out / "metrics.json").read_text())
    records = metrics["records"]
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
    # every slice reachable: each has its picture, linked from the report with its SNR
    for case, slices in (("a", 2), ("b", 1)):
        for k in range(slices):
            assert (out / f"slices/{case}-{k:04d}.png").read_bytes()[:4] == b"\x89PNG"
            assert f"<a href='slices/{case}-{k:04d}.png'>{k}</a>" in report
    # the tuning text names the slices it used, never more than there are
    assert "first 3" not in report and "on slices 0, 1</td>" in report
    lams = {c["case"]: c["cs_lambda"]["cswv"] for c in metrics["cases"]}
    assert lams["b"]["chosen_by"] == "best SNR against the reference on slices 0"
    assert all(c["skipped_slices"] == [] for c in metrics["cases"])


def test_progress_from_the_first_phase(inputs, tmp_path):
    result = subprocess.run([sys.executable, "-m", "npgd_recon.cli.compare", str(inputs / "b.h5"),
                             "--out", str(tmp_path / "c"), "--methods", "zerofill,cstv",
                             "--undersample", "3"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    err = result.stderr
    phases = ["reading", "ESPIRiT", "tuning CS-TV lambda", "writing pictures"]
    assert all(p in err for p in phases), err
    assert [err.index(p) for p in phases] == sorted(err.index(p) for p in phases)
    totals = re.findall(r"tuning CS-TV lambda: .*? (\d+)/(\d+) ", err)
    assert totals and totals[0][1] == "13" and totals[-1][0] == totals[-1][1]  # a total, met


def test_3d_phantom_metrics_skip_empty_slices_and_say_so(tmp_path):
    """The outer planes of a 3-D phantom are air: their reference is empty and their SNR 0/0.
    They get no record (every metric finite), and summary, metrics.json and report count them."""
    from npgd_recon.cli.simulate import main as simulate

    assert simulate(["--phantom", "shepp-logan", "--3d", "--matrix", "24x16x32",
                     "--out", str(tmp_path / "p.h5")]) == 0
    out = tmp_path / "c"
    result = compare(str(tmp_path / "p.h5"), "--undersample", "4", "--methods", "zerofill",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr

    def refuse(constant):
        raise AssertionError(f"{constant} in metrics.json")

    metrics = json.loads((out / "metrics.json").read_text(), parse_constant=refuse)
    [case] = metrics["cases"]
    skipped, slices = case["skipped_slices"], case["slices"]
    assert skipped and len(metrics["records"]) == slices - len(skipped)
    assert not {r["slice"] for r in metrics["records"]} & set(skipped)
    assert "empty" in metrics["empty_slices"] and "skipped" in metrics["empty_slices"]
    counted = f"metrics over {slices - len(skipped)} of {slices} slices; {len(skipped)} with an "
    report = (out / "report.html").read_text()
    assert counted in result.stdout and counted.capitalize() in report
    assert "nan" not in result.stdout and "Slices whose reference is empty" in report
    assert "empty reference, skipped" in report


def test_help_names_the_tuning_cost_and_the_options_that_avoid_it():
    text = " ".join(compare("--help").stdout.split())
    assert "about 13 BART runs per CS method" in text and "300-iteration" in text
    assert "--cs-lambda L|METHOD=L,..." in text and "cswv=1e-4,cstv=3e-3" in text
    assert "--cs-tuning {truth,auto}" in text and "truth (default)" in text
    assert "--threads N" in text and "cores this process may use" in text
    assert "empty" in text  # the empty-slice rule


@needs_bart
def test_cs_lambdas_given_or_automatic_are_recorded_without_tuning(inputs, tmp_path):
    from bart_baselines.cs import auto_lambda

    out = tmp_path / "c"
    result = subprocess.run([sys.executable, "-m", "npgd_recon.cli.compare", str(inputs / "a.h5"),
                             "--out", str(out), "--methods", "zerofill,cswv,cstv",
                             "--cs-lambda", "cswv=2e-3", "--cs-tuning", "auto", "--threads", "1"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "tuning" not in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    lams = metrics["cases"][0]["cs_lambda"]
    assert lams["cswv"] == {"lambda": 2e-3, "chosen_by": "given (--cs-lambda)"}
    assert lams["cstv"]["chosen_by"].startswith("automatic")
    assert lams["cstv"]["lambda"] >= auto_lambda("tv", 0.0)  # at least the noiseless floor
    assert {r["lam"] for r in metrics["records"] if r["method"] == "cstv"} == {
        lams["cstv"]["lambda"]}
    report = (out / "report.html").read_text()
    assert "BART threads: 1." in report and "given (--cs-lambda)" in report


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
    for args, message in ((["--cs-lambda", "cswv"], "neither a number L nor METHOD=L"),
                          (["--cs-lambda", "cswv=1,cswv=2"], "named twice"),
                          (["--cs-lambda", "cstv=1e-3"], "not among the CS methods compared"),
                          (["--cs-lambda", "0"], "must be positive"),
                          (["--threads", "0"], "--threads: must be a whole number >= 1")):
        result = compare(str(inputs / "a.h5"), "--out", str(tmp_path / "new"), "--methods",
                         "zerofill,cswv", *args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1
    assert not (tmp_path / "new").exists()


def test_two_map_sets_for_every_method_on_an_object_that_fills_the_field_of_view(tmp_path):
    """``--map-sets 2``: every method gets two sets of ESPIRiT maps (NPGD its soft-SENSE arm on
    64x64 multi-coil planes), the report says so, and on an 8-coil object that fills the field
    of view CS-WV and NPGD come closer to the reference (which keeps one set) than with one."""
    y, x = np.mgrid[0:64, 0:64] / 64
    plane = (1 + 0.4 * np.cos(2 * np.pi * (1.5 * y + x)) + 0.3 * (x > 0.5)) * np.exp(1j * y)
    write_scan(tmp_path / "fov.h5", np.stack([plane, plane[::-1]]),
               settings=ScanSettings(coils=8, noise=0.001))
    snr = {}
    for sets in (1, 2):
        out = tmp_path / f"sets{sets}"
        result = compare(str(tmp_path / "fov.h5"), "--out", str(out), "--undersample", "4",
                         "--methods", "zerofill,cswv,npgd", "--cs-tuning", "auto",
                         "--map-sets", str(sets), "--quiet")
        assert result.returncode == 0, result.stderr
        records = json.loads((out / "metrics.json").read_text())["records"]
        models = {r["model"] for r in records if r["method"] == "npgd"}
        assert models == {SOFT_SMALL if sets == 2 else SMALL_MULTI}
        snr[sets] = {m: np.mean([r["snr_db"] for r in records if r["method"] == m])
                     for m in ("cswv", "npgd")}
        assert ("two sets of ESPIRiT maps" in (out / "report.html").read_text()) == (sets == 2)
    for method in ("cswv", "npgd"):
        assert snr[2][method] > snr[1][method] + 1, snr

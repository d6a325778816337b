"""npgd-convert: a twix file as an ISMRMRD file that the ISMRMRD tools and npgd-recon read,
with the same result as the .dat itself; bad input is one line, exit 2, nothing written."""

from __future__ import annotations

import shutil
import subprocess
import sys

import h5py
import numpy as np
import pydicom
import pytest

from npgd_recon.io.ismrmrd_file import read_raw
from tests.conftest import dciodvfy_findings, needs_ismrmrd_tools
from tests.io.test_twix import boxes, twix_examples, write_synthetic_twix  # noqa: F401

HEAVY = ("torch", "h5py", "ismrmrd", "twixtools", "pydicom", "scipy", "matplotlib")


def convert(*args):
    return subprocess.run([sys.executable, "-m", "npgd_recon.cli.convert", *map(str, args)],
                          capture_output=True, text=True)


def recon(*args):
    return subprocess.run([sys.executable, "-m", "npgd_recon.cli.recon", "--quiet",
                           *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def dat(tmp_path_factory):
    path = tmp_path_factory.mktemp("convert") / "meas.dat"
    write_synthetic_twix(path, boxes())
    return path


def test_help_imports_nothing_heavy():
    code = ("import sys; import npgd_recon.cli.convert as m\n"
            "try:\n    m.main(['--help'])\nexcept SystemExit:\n    pass\n"
            f"print(sorted(n for n in {HEAVY!r} if n in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "--out" in result.stdout and "twix" in result.stdout


def test_converted_file_reads_exactly_like_the_dat(dat, tmp_path):
    out = tmp_path / "meas.h5"
    result = convert(dat, "--out", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("64 acquisitions (16 noise) from measurement 2 of 2, "
                                    "2 channel(s), encoded 64x24x1")
    with h5py.File(out) as file:
        flags = file["dataset/data"]["head"]["flags"]
        assert np.all(flags[:16] & np.uint64(1 << 18))  # ACQ_IS_NOISE_MEASUREMENT
    direct, converted = read_raw(dat), read_raw(out)
    np.testing.assert_array_equal(converted.noise_covariance, direct.noise_covariance)
    for a, b in zip(direct.volumes, converted.volumes, strict=True):
        np.testing.assert_array_equal(a.kspace, b.kspace)
        np.testing.assert_array_equal(a.mask, b.mask)
        for ga, gb in zip(a.geometry, b.geometry, strict=True):
            np.testing.assert_array_equal(ga.centre, gb.centre)
            np.testing.assert_array_equal(ga.orientation(), gb.orientation())
    assert converted.header == direct.header


@needs_ismrmrd_tools
def test_ismrmrd_cartesian_recon_reads_the_converted_file(dat, tmp_path):
    out = tmp_path / "meas.h5"
    assert convert(dat, "--out", out).returncode == 0
    result = subprocess.run(["ismrmrd_recon_cartesian_2d", str(out)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert "Encoding Matrix Size        : [64, 24, 1]" in result.stdout
    assert "Number of acquisitions      : 64" in result.stdout


def _series_pixels(folder):
    return [pydicom.dcmread(p).pixel_array for p in sorted(folder.iterdir())]


@pytest.mark.parametrize("method", ["zerofill", "cswv"])
def test_npgd_recon_of_dat_and_converted_h5_give_the_same_series(dat, tmp_path, method):
    h5 = tmp_path / "meas.h5"
    assert convert(dat, "--out", h5).returncode == 0
    for source, out in ((dat, tmp_path / "from_dat"), (h5, tmp_path / "from_h5")):
        result = recon(source, "--out", out, "--method", method, "--png")
        assert result.returncode == 0, result.stderr
    for a, b in zip(_series_pixels(tmp_path / "from_dat"), _series_pixels(tmp_path / "from_h5"),
                    strict=True):
        np.testing.assert_array_equal(a, b)


def test_gre_example_end_to_end_is_dciodvfy_clean_and_equal_via_h5(twix_examples, tmp_path):  # noqa: F811
    gre = twix_examples["gre"]
    h5 = tmp_path / "gre.h5"
    result = convert(gre, "--out", h5)
    assert result.returncode == 0, result.stderr
    assert "160 acquisitions (0 noise) from measurement 1 of 1, 2 channel(s)" in result.stdout
    for source, out in ((gre, tmp_path / "from_dat"), (h5, tmp_path / "from_h5")):
        result = recon(source, "--out", out, "--method", "zerofill", "--png")
        assert result.returncode == 0, result.stderr
    dat_series, h5_series = _series_pixels(tmp_path / "from_dat"), _series_pixels(
        tmp_path / "from_h5")
    assert dat_series[0].shape == (160, 160)
    np.testing.assert_array_equal(dat_series[0], h5_series[0])
    assert dciodvfy_findings(tmp_path / "from_dat" / "IM00001.dcm") == []
    first = pydicom.dcmread(tmp_path / "from_dat" / "IM00001.dcm")
    assert (first.Manufacturer, first.ManufacturerModelName) == ("SIEMENS", "Skyra")
    assert (float(first.EchoTime), float(first.RepetitionTime)) == (3.0, 10.0)
    assert (tmp_path / "from_dat.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_inputs_and_outputs_are_one_line_exit_2_and_leave_nothing(dat, tmp_path):
    garbage = tmp_path / "garbage.dat"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(dat.read_bytes()[:len(dat.read_bytes()) * 2 // 3])
    hdf5 = tmp_path / "already.h5"
    assert convert(dat, "--out", hdf5).returncode == 0
    existing = tmp_path / "existing.h5"
    existing.write_text("keep me")
    cases = {garbage: "not an HDF5 file", truncated: "truncated twix file",
             hdf5: "nothing to convert", dat: "exists"}
    for source, expected in cases.items():
        out = existing if source == dat else tmp_path / "out.h5"
        result = convert(source, "--out", out)
        assert result.returncode == 2, (source, result.stderr)
        assert result.stderr.count("\n") == 1 and expected in result.stderr
        assert not (tmp_path / "out.h5").exists()
    assert existing.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "already.h5", "existing.h5", "garbage.dat", "truncated.dat"]


def test_npgd_recon_of_a_truncated_dat_is_one_line_exit_2(dat, tmp_path):
    truncated = tmp_path / "truncated.dat"
    shutil.copy(dat, truncated)
    with open(truncated, "r+b") as file:
        file.truncate(truncated.stat().st_size // 2)
    result = recon(truncated, "--out", tmp_path / "series", "--method", "zerofill")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "truncated twix file" in result.stderr
    assert not (tmp_path / "series").exists()

"""BART cfl I/O round trips through the real bart binary."""

import shutil
import subprocess

import numpy as np
import pytest

from bart_baselines.cfl import readcfl, writecfl
from npgd_recon.core.fft import fft2c
from tests.conftest import needs_bart

BART = shutil.which("bart")


def test_round_trip_in_python(tmp_path):
    data = (np.random.default_rng(0).standard_normal((3, 5, 7))
            + 1j * np.random.default_rng(1).standard_normal((3, 5, 7))).astype(np.complex64)
    writecfl(tmp_path / "x", data)
    np.testing.assert_array_equal(readcfl(tmp_path / "x"), data)


@needs_bart
def test_bart_show_sees_our_dims_and_values(tmp_path):
    data = np.arange(6, dtype=np.complex64).reshape(2, 3)
    writecfl(tmp_path / "x", data)
    dims = subprocess.run([BART, "show", "-m", str(tmp_path / "x")], capture_output=True,
                          text=True, check=True).stdout
    assert "\t2\t3\t1" in dims
    values = subprocess.run([BART, "show", str(tmp_path / "x")], capture_output=True,
                            text=True, check=True).stdout.split()
    # bart show prints dim 0 fastest (rows of the column-major view): x[0,0], x[1,0]? no:
    # one line per index of dim 1, each with dim 0 running: x[0,j] x[1,j]
    parsed = [complex(v.replace("i", "j")) for v in values]
    np.testing.assert_allclose(np.array(parsed).reshape(3, 2).T, data)


@needs_bart
def test_bart_flip_and_fft_agree_with_ours(tmp_path):
    rng = np.random.default_rng(2)
    image = rng.standard_normal((16, 12)) + 1j * rng.standard_normal((16, 12))
    image = image.astype(np.complex64)
    writecfl(tmp_path / "img", image)
    subprocess.run([BART, "flip", "1", str(tmp_path / "img"), str(tmp_path / "flip")], check=True)
    np.testing.assert_array_equal(readcfl(tmp_path / "flip"), image[::-1])
    # bart fft -u (unitary, centred) over dims 0 and 1 (bitmask 3) is our fft2c
    subprocess.run([BART, "fft", "-u", "3", str(tmp_path / "img"), str(tmp_path / "k")],
                   check=True)
    np.testing.assert_allclose(readcfl(tmp_path / "k"), fft2c(image), atol=1e-4)


def test_malformed_header_is_a_clear_error(tmp_path):
    (tmp_path / "bad.hdr").write_text("not a header\n")
    (tmp_path / "bad.cfl").write_bytes(b"")
    with pytest.raises(ValueError, match="Dimensions"):
        readcfl(tmp_path / "bad")
    writecfl(tmp_path / "short", np.zeros((4, 4)))
    (tmp_path / "short.cfl").write_bytes(b"\0" * 16)
    with pytest.raises(ValueError, match="header says"):
        readcfl(tmp_path / "short")

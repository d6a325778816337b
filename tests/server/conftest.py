"""Fixtures for the npgd-serve tests: small raw files, a tiny model, in-process servers."""

import shutil
import subprocess
import threading

import pytest

from npgd_recon.checkpoint import save_checkpoint
from npgd_recon.model import NeuralPGD
from npgd_recon.server import Limits, ReconServer, ReconstructorPool
from npgd_recon.simulate_cli import main as simulate
from npgd_recon.transforms import NORMALISATION


@pytest.fixture(scope="session")
def raw(tmp_path_factory):
    """``multislice.h5`` (npgd-simulate: 3 slices 48x40, 4 coils, noise readouts, readout
    oversampling), ``volume.h5`` (3-D 24x16x16, 2 coils), ``tiny.safetensors``."""
    root = tmp_path_factory.mktemp("server")
    assert simulate(["--phantom", "shepp-logan", "--matrix", "48x40", "--slices", "3",
                     "--coils", "4", "--noise", "0.01", "--noise-readouts", "8",
                     "--out", str(root / "multislice.h5")]) == 0
    assert simulate(["--phantom", "shepp-logan", "--3d", "--matrix", "24x16x16", "--coils", "2",
                     "--noise-readouts", "4", "--out", str(root / "volume.h5")]) == 0
    save_checkpoint(NeuralPGD(iterations=2, blocks=1, features=4), root / "tiny.safetensors",
                    {"normalisation": NORMALISATION})
    return root


@pytest.fixture(scope="session")
def shepp(tmp_path_factory):
    """A file from ``ismrmrd_generate_cartesian_shepp_logan`` (64x64, 4 coils, noise scan)."""
    tool = shutil.which("ismrmrd_generate_cartesian_shepp_logan")
    if tool is None:
        pytest.skip("ismrmrd_generate_cartesian_shepp_logan is not installed")
    path = tmp_path_factory.mktemp("shepp") / "shepp.h5"
    subprocess.run([tool, "-m", "64", "-c", "4", "-O", "2", "-C", "-o", str(path)], check=True,
                   capture_output=True)
    return path


@pytest.fixture
def start_server():
    """Start servers in threads on ephemeral ports; all are shut down after the test."""
    running = []

    def start(method="zerofill", weights=None, limits=None, dump_dir=None):
        pool = ReconstructorPool(method, weights, device="cpu")
        server = ReconServer(pool, "127.0.0.1", 0, limits or Limits(idle_timeout_s=30),
                             dump_dir)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        running.append((server, thread))
        return server

    yield start
    for server, thread in running:
        server.shutdown()
        thread.join(10)
        assert not thread.is_alive()

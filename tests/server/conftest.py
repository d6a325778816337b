"""Fixtures for the npgd-serve tests: a reference Shepp-Logan file, in-process servers (the
simulated raw files, ``raw``, are in the root conftest: the CLI tests use them too)."""

import shutil
import subprocess
import threading

import pytest

from npgd_recon.recon.base import ReconOptions
from npgd_recon.server.session import Limits, ReconstructorPool
from npgd_recon.server.transport import ReconServer


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

    def start(method="zerofill", weights=None, limits=None, dump_dir=None, workers=None,
              threads=None):
        pool = ReconstructorPool(method, ReconOptions(weights=weights, device="cpu"), workers,
                                 threads)
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

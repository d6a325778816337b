"""npgd-recon builds its reconstructor (torch, model) in the background while bart ecalib
computes the coil maps: the read and maps path must not import torch, and the pending
reconstructor behaves like the one it stands for."""

import subprocess
import sys
import threading

import pytest

from npgd_recon.core.errors import NpgdError
from npgd_recon.recon.pipeline import PendingReconstructor


@pytest.mark.parametrize("name", ["volume.h5", "multislice.h5"])
def test_reading_and_coil_maps_do_not_import_torch(raw, name):
    code = ("import sys\n"
            "from npgd_recon.io.ismrmrd_file import read_raw\n"
            "from npgd_recon.recon.pipeline import espirit_coil_maps\n"
            "import npgd_recon.cli.recon\n"
            f"study = read_raw({str(raw / name)!r}, 'dataset')\n"
            "maps = espirit_coil_maps(study.volumes[0].kspace, volumetric=study.is_3d)\n"
            "print(study.whitener is not None, maps.shape, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split()[0] == "True"  # noise whitening ran too
    assert result.stdout.split()[-1] == "False", result.stdout


def test_pending_reconstructor_waits_announces_once_in_the_callers_thread():
    release, seen = threading.Event(), []
    built = object()

    def build():
        release.wait(5)
        return built

    pending = PendingReconstructor("npgd", build,
                                   lambda r: seen.append((r, threading.current_thread())))
    assert pending.method == "npgd" and not seen
    release.set()
    assert pending.result() is built and pending.result() is built
    assert seen == [(built, threading.main_thread())]


def test_pending_reconstructor_reraises_what_the_build_raised():
    def build():
        raise NpgdError("no such model")

    pending = PendingReconstructor("npgd", build, lambda r: pytest.fail("announced a failure"))
    with pytest.raises(NpgdError, match="no such model"):
        pending.result()

"""The study pipeline: the caller sums the reconstructor's times, can stop between calls, and the
undersampling passes the calibration box to every mask family."""

import numpy as np
import pytest

from npgd_recon.io.ismrmrd_file import read_raw
from npgd_recon.recon.classic import ZeroFilled
from npgd_recon.recon.pipeline import reconstruct_study, undersample
from npgd_recon.sim.phantoms import shepp_logan
from npgd_recon.sim.scan_writer import ScanSettings, write_scan
from sampling import multicoil_calib


class Counting(ZeroFilled):
    """Zero filling with a batch of one problem, counting its calls."""

    def __init__(self) -> None:
        super().__init__(batch=1)
        self.calls = 0

    def reconstruct(self, *args, **kwargs):
        self.calls += 1
        return super().reconstruct(*args, **kwargs)


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    path = tmp_path_factory.mktemp("pipeline") / "scan.h5"
    write_scan(path, shepp_logan((3, 48, 40)), settings=ScanSettings(coils=1))
    return read_raw(path)


@pytest.fixture(scope="module")
def multicoil(tmp_path_factory):
    path = tmp_path_factory.mktemp("pipeline") / "coils.h5"
    write_scan(path, shepp_logan((1, 48, 40)), settings=ScanSettings(coils=2))
    return read_raw(path)


def test_study_time_holds_the_sum_of_the_calls(study):
    recon = Counting()
    result = reconstruct_study(study, recon, progress=False)
    assert recon.calls == 3 and result.images.shape == (3, 48, 40)
    assert 0 < result.recon_seconds <= result.seconds


def test_before_call_runs_before_every_call_and_can_stop_the_study(study):
    recon, seen = Counting(), []

    def before_call():
        seen.append(recon.calls)
        if len(seen) == 2:
            raise Stop

    with pytest.raises(Stop):
        reconstruct_study(study, recon, progress=False, before_call=before_call)
    assert seen == [0, 1] and recon.calls == 1


@pytest.mark.parametrize("kind", ["vdrad", "poisson", "lines"])
def test_multicoil_undersampling_keeps_the_calibration_box_for_every_mask(multicoil, kind):
    volume = multicoil.volumes[0]
    kspace, mask = undersample(volume, 3.0, kind)
    ny, nx = mask.shape[1:]
    cy, cx = multicoil_calib((ny, nx))
    rows = slice(ny // 2 - cy // 2, ny // 2 - cy // 2 + cy)
    columns = slice(nx // 2 - cx // 2, nx // 2 - cx // 2 + cx)
    assert mask[:, rows, columns].all()
    assert 0.2 < mask.mean() < 0.5
    assert np.all(kspace[:, :, ~mask[0]] == 0)

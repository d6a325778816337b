"""The study pipeline: the caller sums the reconstructor's times and gets seconds per stage, can
stop between calls; the undersampling passes the calibration box to every mask family; 3-D
volumes get one ESPIRiT calibration, 2-D slices one each; preview titles say what they show."""

import numpy as np
import pytest

from npgd_recon.io.geometry import VolumeIndex
from npgd_recon.io.ismrmrd_file import read_raw
from npgd_recon.recon import pipeline
from npgd_recon.recon.classic import ZeroFilled
from npgd_recon.recon.pipeline import (
    Reconstruction,
    format_timings,
    preview_titles,
    reconstruct_study,
    undersample,
)
from npgd_recon.sim.phantoms import shepp_logan
from npgd_recon.sim.scan_writer import ScanSettings, write_scan
from sampling import multicoil_calib
from tests.conftest import needs_bart


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


def test_the_result_holds_seconds_per_stage_within_the_study_time(study):
    result = reconstruct_study(study, Counting(), accel=2.0, progress=False)
    assert list(result.stages) == ["undersampling", "coil_maps", "reconstruction"]
    assert result.recon_seconds <= result.stages["reconstruction"]
    assert sum(result.stages.values()) <= result.seconds
    table = format_timings({"read": 0.5, **result.stages})
    assert table.splitlines()[0].split() == ["read", "and", "assemble", "(noise", "whitening",
                                             "included)", "0.50", "s"]
    assert table.splitlines()[-1].split()[0] == "total"


@needs_bart
@pytest.mark.parametrize("volumetric", [True, False])
@pytest.mark.parametrize("sets", [1, 2])
def test_coil_maps_one_calibration_per_3d_volume_one_per_2d_slice(tmp_path, monkeypatch,
                                                                   volumetric, sets):
    """One ESPIRiT calibration per 3-D volume, one per 2-D slice; with ``map_sets = 2`` (soft
    SENSE) 2-D slices get two sets of maps each, 3-D volumes keep their one set of volumetric
    maps; either way one image per plane."""
    shape = (16, 32, 24) if volumetric else (2, 32, 24)  # 3-D: 24 planes of 32x16
    write_scan(tmp_path / "scan.h5", shepp_logan(shape), volumetric=volumetric,
               settings=ScanSettings(coils=4, noise=0.002))
    study = read_raw(tmp_path / "scan.h5")
    calls = []

    def spy(function):
        def called(kspace, *args, **kwargs):
            calls.append((function.__name__, len(kspace)))
            return function(kspace, *args, **kwargs)
        return called

    monkeypatch.setattr(pipeline, "calibrate_volume", spy(pipeline.calibrate_volume))
    monkeypatch.setattr(pipeline, "espirit_maps", spy(pipeline.espirit_maps))
    seen = []

    class Recording(Counting):
        def reconstruct(self, kspace, mask, maps, noise_std=None):
            seen.append(maps.shape)
            return super().reconstruct(kspace, mask, maps, noise_std)

    result = reconstruct_study(study, Recording(), progress=False, map_sets=sets)
    problems = len(study.volumes[0].kspace)
    name = "calibrate_volume" if volumetric else "espirit_maps"
    assert calls == [(name, problems)]
    assert np.isfinite(result.images).all() and np.abs(result.images).max() > 0
    assert result.images.shape == (problems, *study.volumes[0].kspace.shape[-2:])
    with_sets = (2,) if sets == 2 and not volumetric else ()
    assert set(seen) == {(1, *with_sets, 4, *study.volumes[0].kspace.shape[-2:])}


def test_preview_titles_name_the_slice_and_the_counters_that_vary():
    volumes = [VolumeIndex(repetition=r) for r in range(2) for _ in range(3)]
    result = Reconstruction(np.zeros((6, 4, 4)), [None] * 6, volumes)
    assert preview_titles(result, False, np.array([0, 4])) == ["slice 0\nrepetition 0",
                                                               "slice 1\nrepetition 1"]
    one = Reconstruction(np.zeros((3, 4, 4)), [None] * 3, volumes[:3])
    assert preview_titles(one, True, np.array([2])) == ["plane 2"]

"""Evaluation and the de-biasing run: times come from each call, one reconstructor per de-biasing
count, and an impossible mask is a user error."""

import time

import numpy as np
import pytest

from npgd_recon.analysis.evaluation import evaluate, retrospective
from npgd_recon.analysis.experiments import run_debias
from npgd_recon.core.errors import NpgdError
from npgd_recon.recon.classic import ZeroFilled
from npgd_recon.recon.methods import make_reconstructor
from npgd_recon.sim.phantoms import shepp_logan
from tests.conftest import save_tiny_model


class Slow(ZeroFilled):
    """Zero filling whose every call takes at least 50 ms."""

    def reconstruct(self, *args, **kwargs):
        time.sleep(0.05)
        return super().reconstruct(*args, **kwargs)


def test_evaluate_records_each_calls_own_time_per_slice():
    images = np.repeat(shepp_logan((32, 24))[None], 4, axis=0).astype(np.complex64)
    kspace, masks = retrospective(images, 3.0)
    recon = Slow()
    for _ in range(2):  # the same reconstructor twice: no time carried over
        records, outputs = evaluate(images, kspace, masks, None, [recon], progress=False)
        seconds = {r["seconds"] for r in records}
        assert len(records) == 4 and len(seconds) == 1
        assert 0.05 / 4 <= seconds.pop() < 0.05
        assert outputs["zerofill"].shape == images.shape


def test_an_impossible_mask_is_a_user_error():
    images = shepp_logan((16, 12))[None].astype(np.complex64)
    with pytest.raises(NpgdError, match="lines mask at R=50"):
        retrospective(images, 50.0, kind="lines")


def test_debias_builds_one_reconstructor_per_iteration_count(tmp_path, monkeypatch):
    from npgd_recon.analysis import experiments

    volume = tmp_path / "volume.npy"
    np.save(volume, np.abs(shepp_logan((16, 32, 24))).transpose(1, 2, 0))
    weights = save_tiny_model(tmp_path / "tiny.safetensors")
    built = []

    def recording(method, options=None):
        built.append(options.debias)
        return make_reconstructor(method, options)

    monkeypatch.setattr(experiments, "make_reconstructor", recording)
    result = run_debias(tmp_path, weights=[str(weights)], volume=str(volume), slices=2,
                        iterations=(1, 5), device="cpu")
    assert built == [0, 1, 5]
    rows = result["results"]
    assert [r["debias_iterations"] for r in rows] == [0, 1, 5]
    assert all(np.isfinite(r["snr_db"]) and r["seconds"] > 0 for r in rows)
    assert (tmp_path / "debias.png").exists()


def test_debias_runs_a_deep_resnet_model_as_method_resnet(tmp_path):
    volume = tmp_path / "volume.npy"
    np.save(volume, np.abs(shepp_logan((16, 32, 24))).transpose(1, 2, 0))
    resnet = save_tiny_model(tmp_path / "resnet.safetensors", iterations=1)
    unrolled = save_tiny_model(tmp_path / "npgd.safetensors")
    result = run_debias(tmp_path, weights=[str(resnet), str(unrolled)], volume=str(volume),
                        slices=2, iterations=(1,), device="cpu")
    assert [r["model"] for r in result["results"]] == [str(resnet)] * 2 + [str(unrolled)] * 2
    assert all(np.isfinite(r["snr_db"]) for r in result["results"])

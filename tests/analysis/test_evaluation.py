"""The evaluation rules: empty reference slices are skipped, not averaged as NaN; CS lambdas are
tuned on measured slices; the automatic lambda a report prints is the one CS uses."""

import numpy as np
import pytest

from npgd_recon.analysis.evaluation import (
    EMPTY_PLANE,
    automatic_lambdas,
    evaluate,
    measured_planes,
    retrospective,
    tuning_planes,
)
from npgd_recon.recon.base import ReconOptions
from npgd_recon.recon.methods import make_reconstructor
from npgd_recon.sim.phantoms import shepp_logan
from tests.conftest import needs_bart


def stack_with_empty_ends():
    """Six slices: two exactly zero, one of float-rounding residue, three of a phantom."""
    images = np.repeat(shepp_logan((32, 24))[None], 6, axis=0).astype(np.complex64)
    images[[0, 5]] = 0
    images[1] = 1e-9 * images[1]
    return images


def test_empty_planes_are_zero_up_to_rounding():
    images = stack_with_empty_ends()
    assert measured_planes(images).tolist() == [False, False, True, True, True, False]
    faint = images.copy()
    faint[1] *= 10 * EMPTY_PLANE / 1e-9  # faint but real signal is measured
    assert measured_planes(faint)[1]
    assert not measured_planes(np.zeros((2, 4, 4))).any()


def test_evaluate_skips_empty_slices_so_every_metric_is_finite():
    images = stack_with_empty_ends()
    kspace, masks = retrospective(images, 3.0)
    records, outputs = evaluate(images, kspace, masks, None, [make_reconstructor("zerofill")],
                                progress=False)
    assert [r["slice"] for r in records] == [2, 3, 4]
    assert all(np.isfinite(r[k]) for r in records for k in ("snr_db", "psnr_db", "nrmse"))
    assert outputs["zerofill"].shape == images.shape


def test_tuning_slices_spread_over_the_measured_ones():
    images = np.repeat(stack_with_empty_ends(), 3, axis=0)  # 18 slices, 9 measured
    measured = np.flatnonzero(measured_planes(images))
    picks = tuning_planes(images, 3)
    assert len(picks) == 3 and set(picks) <= set(measured)
    assert picks[0] > measured[0] and picks[-1] < measured[-1]  # not the edge slices
    assert tuning_planes(stack_with_empty_ends(), 3).tolist() == [2, 3, 4]  # all there are
    assert tuning_planes(np.zeros((3, 4, 4)), 3).tolist() == []


@needs_bart
@pytest.mark.parametrize("method", ["cswv", "cstv"])
def test_the_automatic_lambda_is_the_one_cs_uses(method):
    images = shepp_logan((48, 40))[None].astype(np.complex64)
    kspace, masks = retrospective(images, 3.0, noise=0.02)
    [(name, lam)] = automatic_lambdas(kspace, masks, None, ("zerofill", method)).items()
    assert name == method
    auto = make_reconstructor(method)(kspace, masks).images
    given = make_reconstructor(method, ReconOptions(lam=lam))(kspace, masks).images
    np.testing.assert_allclose(given, auto, atol=1e-4 * np.abs(auto).max())

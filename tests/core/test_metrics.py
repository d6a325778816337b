"""Metrics against values computed by hand."""

import numpy as np
import pytest
import torch

from npgd_recon.core import metrics


def test_snr_nrmse_psnr_by_hand():
    ref = np.array([[3.0, 4.0], [0.0, 0.0]])          # ||ref|| = 5, max = 4
    est = ref + np.array([[0.0, 0.0], [0.5, 0.0]])     # ||err|| = 0.5, RMSE = 0.25
    assert metrics.snr_db_magnitude(ref, est) == pytest.approx(20.0)
    assert metrics.nrmse_magnitude(ref, est) == pytest.approx(0.1)
    assert metrics.psnr_db_magnitude(ref, est) == pytest.approx(20 * np.log10(4 / 0.25))


def test_complex_and_magnitude_variants_differ_on_phase():
    ref = np.full((8, 8), 1.0 + 0j)
    est = ref * np.exp(1j * 0.1)
    assert metrics.snr_db_magnitude(ref, est) > 200
    expected = -20 * np.log10(abs(1 - np.exp(1j * 0.1)))
    assert metrics.snr_db_complex(ref, est) == pytest.approx(expected)
    assert metrics.nrmse_complex(ref, est) == pytest.approx(abs(1 - np.exp(1j * 0.1)))


def test_ssim_identity_and_degradation():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0, 1, (32, 32))
    assert metrics.ssim_magnitude(ref, ref) == pytest.approx(1.0)
    noisy = ref + rng.normal(0, 0.3, ref.shape)
    assert metrics.ssim_magnitude(ref, noisy) < 0.7


def test_stacks_give_per_image_values_and_torch_accepted():
    ref = np.ones((3, 8, 8))
    est = ref * np.array([1.1, 1.01, 1.001])[:, None, None]
    snr = metrics.snr_db_magnitude(torch.from_numpy(ref), torch.from_numpy(est))
    np.testing.assert_allclose(snr, [20.0, 40.0, 60.0])
    assert metrics.ssim_magnitude(ref, est).shape == (3,)


def test_all_metrics_keys_and_shape_mismatch():
    ref = np.random.default_rng(1).uniform(0.5, 1, (16, 16))
    values = metrics.all_metrics(ref, ref * 0.9)
    assert set(values) == {"snr_db", "psnr_db", "ssim", "nrmse"}
    assert values["snr_db"] == pytest.approx(20.0)
    with pytest.raises(ValueError, match="shape"):
        metrics.snr_db_complex(ref, ref[:8])

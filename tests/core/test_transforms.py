"""The normalisation rule: finite on problems whose zero-filled image is empty (issue 26)."""

import pytest
import torch

from npgd_recon.core.operators import SenseOp
from npgd_recon.core.transforms import normalise, normalised_noise
from npgd_recon.models.registry import CPU_DEFAULT, resolve_weights


def _noise_planes_with_empty_maps(batch=3, coils=4, n=32):
    """Noisy multi-coil k-space where plane 0 has no coil sensitivity (ESPIRiT's zero maps on a
    plane without signal) and the others do."""
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(batch, coils, n, n, dtype=torch.complex64, generator=g)
    maps[0] = 0
    mask = (torch.rand(batch, n, n, generator=g) < 0.3).float()
    y = torch.randn(batch, coils, n, n, dtype=torch.complex64, generator=g) * mask[:, None]
    return y, SenseOp(mask, maps)


def test_a_problem_with_an_empty_zero_filled_image_normalises_to_zero_not_y_over_zero():
    y, op = _noise_planes_with_empty_maps()
    assert op.adjoint(y)[0].abs().max() == 0 and y[0].abs().max() > 0
    normalised, scale = normalise(y, op)
    assert torch.isfinite(normalised).all() and torch.isfinite(scale).all()
    assert normalised[0].abs().max() == 0
    assert (normalised[1:].abs().amax(dim=(1, 2, 3)) > 0).all()


def test_the_percentile_falls_back_to_the_maximum_where_the_maps_cover_few_pixels():
    maps = torch.zeros(1, 2, 32, 32, dtype=torch.complex64)
    maps[0, :, 3, 4] = 1.0  # sensitivity on one pixel of 1024: the 99th percentile is zero
    op = SenseOp(torch.ones(1, 32, 32), maps)
    y = torch.randn(1, 2, 32, 32, dtype=torch.complex64, generator=torch.Generator().manual_seed(1))
    normalised, scale = normalise(y, op)
    assert torch.isclose(scale.flatten()[0], op.adjoint(y).abs().max())
    assert torch.isfinite(normalised).all() and normalised.abs().max() > 0


@pytest.mark.parametrize("name", [CPU_DEFAULT, "npgd-t10k1-f32-dcn"])
def test_a_shipped_model_gives_a_finite_zero_image_where_the_operator_sees_nothing(name):
    """Also a model that takes the noise level as an input: the empty problem's level is 0,
    not noise / (the smallest float32)."""
    from npgd_recon.models.checkpoint import load_checkpoint

    model, meta = load_checkpoint(resolve_weights(name), torch.device("cpu"))
    y, op = _noise_planes_with_empty_maps()
    normalised, scale = normalise(y, op, meta["normalisation"])
    noise = normalised_noise(1.0, scale)
    assert noise[0] == 0 and torch.isfinite(noise).all() and (noise[1:] > 0).all()
    with torch.no_grad():
        out = model(normalised, op, noise=noise) * scale
    assert torch.isfinite(out).all()
    assert out[0].abs().max() < 1e-30

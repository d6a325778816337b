"""eta1, eta2, nRMSE per iteration: finite, non-negative, and exact in a case known by hand."""

import numpy as np
import pytest
import torch

from npgd_recon.analysis.contraction import contraction_curves, summarise
from npgd_recon.core.operators import BlockAverageOp, CartesianOp
from npgd_recon.models.npgd import NeuralPGD
from sampling import vdrad
from tests.conftest import perturbed, randc

torch.manual_seed(0)
MASK = torch.from_numpy(vdrad((16, 12), 3.0).mask)


@pytest.mark.parametrize("model, op", [
    (NeuralPGD(iterations=3, blocks=1, features=6), CartesianOp(MASK)),
    (NeuralPGD(iterations=4, features=4, proximal="linear-swish", kernel=4, global_skip=False),
     BlockAverageOp()),
])
def test_eta_values_are_finite_and_non_negative(model, op):
    model = perturbed(model)
    x_star = randc(2, 16, 12)
    y = op.forward(x_star)
    curves = contraction_curves(model, op, y, x_star)
    steps = model.iterations
    assert curves["nrmse"].shape == (2, steps + 1)
    for key in ("eta1", "eta2", "eps", "remainder", "bound_holds"):
        assert curves[key].shape == (2, steps)
    for key in ("eta1", "eta2", "remainder", "nrmse"):
        assert np.isfinite(curves[key]).all() and (curves[key] >= 0).all()
    np.testing.assert_allclose(curves["nrmse"][:, 0], 1.0, rtol=1e-6)
    assert curves["bound_holds"].all()
    # the last nRMSE is the network's own error
    with torch.no_grad():
        x_t = model(y, op)
    expected = ((x_t - x_star).flatten(1).norm(dim=1) / x_star.flatten(1).norm(dim=1)).numpy()
    np.testing.assert_allclose(curves["nrmse"][:, -1], expected, rtol=1e-5)
    summary = summarise(curves)
    assert summary["problems"] == 2 and len(summary["eta1"]) == steps
    assert len(summary["contractive"]) == steps


def test_identity_proximal_is_gradient_descent_with_eta2_zero():
    """An untrained global-skip ResNet is the identity: M* = M_t = I, so eta2 = 0,
    eta1 = ||(I - alpha Phi^H Phi) delta|| / ||delta|| and, without noise, the bound is tight
    (remainder 0)."""
    model = NeuralPGD(iterations=3, blocks=1, features=4).eval()
    op = CartesianOp(MASK)
    x_star = randc(1, 16, 12)
    y = op.forward(x_star)
    curves = contraction_curves(model, op, y, x_star)
    np.testing.assert_allclose(curves["eta2"], 0.0, atol=1e-6)
    np.testing.assert_allclose(curves["remainder"], 0.0, atol=1e-5)
    # alpha = 1 and M F a projection: x_1 = Phi^H y, and every later step leaves it unchanged
    np.testing.assert_allclose(curves["eta1"][0, 0], curves["nrmse"][0, 1], rtol=1e-5)
    np.testing.assert_allclose(curves["eta1"][0, 1:], 1.0, rtol=1e-5)
    np.testing.assert_allclose(curves["eps"], 0.0, atol=1e-5)


def test_an_untied_model_is_refused_in_one_line():
    """The analysis needs one shared proximal (one fixed point): an untied model is refused."""
    from npgd_recon.core.errors import NpgdError

    model = NeuralPGD(iterations=2, blocks=1, features=4, untied=True).eval()
    op = CartesianOp(MASK)
    x_star = randc(1, 16, 12)
    with pytest.raises(NpgdError, match="untied"):
        contraction_curves(model, op, op.forward(x_star), x_star)

"""De-biasing (Remark 1): shape, the zero-iteration invariant, a hand-checked case, the
construction option."""

import pytest
import torch

from npgd_recon.core.errors import NpgdError
from npgd_recon.core.operators import CartesianOp, SenseOp, SoftSenseOp
from npgd_recon.core.transforms import NORMALISATION
from npgd_recon.models.checkpoint import save_checkpoint
from npgd_recon.models.npgd import NeuralPGD
from npgd_recon.recon.base import ReconOptions
from npgd_recon.recon.debias import debiased
from npgd_recon.recon.methods import make_reconstructor
from sampling import vdrad
from tests.conftest import perturbed

torch.manual_seed(0)
MASK = torch.from_numpy(vdrad((16, 12), 3.0).mask)


def measurement(batch=2):
    op = CartesianOp(MASK)
    return op, op.forward(torch.randn(batch, 16, 12, dtype=torch.complex64))


@pytest.mark.parametrize("final_dc", [False, True])
def test_zero_iterations_is_the_plain_output_and_shapes_are_kept(final_dc):
    """Also for a model whose output ends with the final data-consistency step."""
    model = perturbed(NeuralPGD(iterations=3, blocks=1, features=6, final_dc=final_dc))
    op, y = measurement()
    with torch.no_grad():
        plain = model(y, op)
    torch.testing.assert_close(debiased(model, y, op, iterations=0), plain)
    out = debiased(model, y, op, iterations=3)
    assert out.shape == plain.shape and out.dtype == torch.complex64
    assert torch.isfinite(torch.view_as_real(out)).all()
    assert (out - plain).abs().max() > 0


def test_identity_proximal_debiasing_continues_gradient_descent():
    """Untrained global-skip ResNet: M_T = I and no offsets, so k de-biasing steps are k more
    gradient steps, the same as running the network for T + k iterations."""
    model = NeuralPGD(iterations=2, blocks=1, features=4, alpha_init=0.7).eval()
    longer = NeuralPGD(iterations=5, blocks=1, features=4, alpha_init=0.7).eval()
    longer.load_state_dict(model.state_dict())
    op, y = measurement(1)
    with torch.no_grad():
        expected = longer(y, op)
    torch.testing.assert_close(debiased(model, y, op, iterations=3, tol=0.0), expected)


def test_negative_iterations_are_refused():
    model = NeuralPGD(iterations=1, blocks=1, features=4).eval()
    op, y = measurement(1)
    with pytest.raises(NpgdError, match="de-biasing iterations"):
        debiased(model, y, op, iterations=-1)


def test_debiasing_is_chosen_when_the_reconstructor_is_built(tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(perturbed(NeuralPGD(iterations=2, blocks=1, features=4)), path,
                    {"normalisation": NORMALISATION})
    op, y = measurement()
    kspace, mask = y[:, None].numpy(), MASK[None].repeat(2, 1, 1).numpy()

    def built(debias: int):
        return make_reconstructor("npgd", ReconOptions(weights=str(path), device="cpu",
                                                       precision="fp32", debias=debias))

    plain, recon = built(0), built(2)
    assert (plain.debias, recon.debias) == (0, 2)
    out, reference = recon(kspace, mask).images, plain(kspace, mask).images
    assert out.shape == reference.shape == (2, 16, 12)
    assert abs(out - reference).max() > 0
    with pytest.raises(NpgdError, match="de-biasing needs a network"):
        make_reconstructor("zerofill", ReconOptions(debias=2))
    with pytest.raises(NpgdError, match="must be >= 0"):
        built(-1)


def test_soft_sense_debiasing_with_an_empty_second_set_is_the_one_set_debiasing():
    """Soft SENSE: the proximal is linearised where it acted (each set's image, with its
    problem's noise level), so a second set of zero maps de-biases exactly as one set does."""
    model = perturbed(NeuralPGD(iterations=3, blocks=1, features=6, final_dc=True,
                                final_noise=True, noise_input=True))
    maps = torch.randn(2, 3, 16, 12, dtype=torch.complex64) / 3
    one = SenseOp(MASK, maps)
    soft = SoftSenseOp(MASK, torch.stack([maps, torch.zeros_like(maps)], dim=1))
    y = one.forward(torch.randn(2, 16, 12, dtype=torch.complex64))
    noise = torch.tensor([0.01, 0.02])
    expected = debiased(model, y, one, iterations=3, noise=noise)
    out = debiased(model, y, soft, iterations=3, noise=noise)
    assert out.shape == (2, 2, 16, 12)
    torch.testing.assert_close(soft.output_image(out), expected, rtol=1e-4, atol=1e-5)

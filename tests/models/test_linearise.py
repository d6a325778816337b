"""The proximal linearised by its activation masks: exact at its point, linear, a JVP."""

import pytest
import torch

from npgd_recon.models.inference import prepare_for_inference
from npgd_recon.models.linearise import LinearisedProximal
from npgd_recon.models.npgd import NeuralPGD
from tests.conftest import randc

torch.manual_seed(0)


def trained_like(model: NeuralPGD) -> NeuralPGD:
    """Random weights everywhere (also the zero-initialised last layer) and random BN
    statistics, in eval mode, so the masks are far from trivial."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(0.3 * torch.randn_like(parameter))
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(0.1 * torch.randn_like(buffer))
            elif name.endswith("running_var"):
                buffer.copy_(0.5 + torch.rand_like(buffer))
    return model.eval()


MODELS = {
    "resnet-skip": lambda: NeuralPGD(iterations=2, blocks=2, features=6),
    "resnet-no-skip": lambda: NeuralPGD(iterations=2, blocks=1, features=6, global_skip=False),
    "linear-swish": lambda: NeuralPGD(iterations=2, features=4, proximal="linear-swish",
                                      layers=5, kernel=8, global_skip=False),
    "unet": lambda: NeuralPGD(iterations=2, blocks=2, features=4, proximal="unet"),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_frozen_network_reproduces_the_network_at_its_point(name):
    model = trained_like(MODELS[name]())
    s = randc(2, 16, 12)
    linearised = LinearisedProximal(model, s)
    expected = model.proximal(s)
    torch.testing.assert_close(linearised.affine(s), expected, rtol=1e-5, atol=1e-6)
    # elsewhere the frozen network differs from the network (it is not the identity map)
    other = randc(2, 16, 12)
    assert (linearised.affine(other) - model.proximal(other)).abs().max() > 1e-3


@pytest.mark.parametrize("name", list(MODELS))
def test_linear_part_obeys_superposition_and_matches_a_finite_difference(name):
    model = trained_like(MODELS[name]())
    s, u, v = randc(2, 16, 12), randc(2, 16, 12), randc(2, 16, 12)
    linearised = LinearisedProximal(model, s)
    combined = linearised.linear(u - 2.5 * v)
    separate = linearised.linear(u) - 2.5 * linearised.linear(v)
    # exact up to float32 rounding, which cancellation can lift to ~1e-3 of the largest value
    assert (combined - separate).abs().max() < 1e-3 * separate.abs().max()
    step = 1e-2
    difference = (linearised.affine(s + step * v) - linearised.affine(s)) / step
    scale = linearised.linear(v).abs().max()
    assert (difference - linearised.linear(v)).abs().max() < 1e-3 * scale
    # M is affine part removed: M(0) = 0
    assert linearised.linear(torch.zeros_like(s)).abs().max() == 0


def test_relu_network_linear_part_is_its_jacobian():
    """For a ReLU network the masks rarely change under a tiny step: M is the Jacobian wherever
    no mask in the receptive field flips (here at least 90 % of the pixels)."""
    model = trained_like(NeuralPGD(iterations=1, blocks=1, features=6))
    s, v = randc(1, 12, 12), randc(1, 12, 12)
    step = 3e-3
    linearised = LinearisedProximal(model, s)
    difference = (model.proximal(s + step * v) - model.proximal(s - step * v)) / (2 * step)
    error = (difference - linearised.linear(v)).abs()
    assert torch.quantile(error.flatten(), 0.9) < 1e-3 * linearised.linear(v).abs().max()


def test_untrained_global_skip_resnet_linearises_to_the_identity():
    model = NeuralPGD(iterations=1, blocks=1, features=6).eval()  # last layer starts at zero
    s, v = randc(2, 10, 8), randc(2, 10, 8)
    torch.testing.assert_close(LinearisedProximal(model, s).linear(v), v)


def test_batch_norm_in_training_mode_is_refused():
    with pytest.raises(ValueError, match="training mode"):
        LinearisedProximal(NeuralPGD(iterations=1, blocks=1, features=4).train(),
                           randc(1, 8, 8))


def test_works_under_inference_mode():
    model = trained_like(MODELS["resnet-skip"]())
    s = randc(1, 8, 8)
    with torch.inference_mode():
        linearised = LinearisedProximal(model, s)
        out = linearised.linear(s)
    torch.testing.assert_close(out, LinearisedProximal(model, s).linear(s))


@pytest.mark.parametrize("name", ["resnet-skip", "unet"])
def test_the_inference_model_with_in_place_relus_linearises_as_the_trained_one(name):
    model = trained_like(MODELS[name]())
    fast = prepare_for_inference(model)
    s, v = randc(2, 16, 12), randc(2, 16, 12)
    with torch.inference_mode():
        expected = LinearisedProximal(model, s).linear(v)
        got = LinearisedProximal(fast, s).linear(v)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert all(m.inplace for m in fast.prox.modules() if isinstance(m, torch.nn.ReLU))


def test_an_untied_model_linearises_the_proximal_of_the_iteration_asked_for():
    """LinearisedProximal of an untied model: the frozen network of iteration ``step`` (default
    the last) equals that iteration's proximal at its point, and not another's."""
    torch.manual_seed(3)
    model = NeuralPGD(iterations=3, blocks=1, features=6, untied=True, noise_input=True)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.eval()
    at, noise = randc(2, 12, 10), torch.tensor([0.01, 0.03])
    for step in (0, 2):
        frozen = LinearisedProximal(model, at, noise, step=step)
        torch.testing.assert_close(frozen.affine(at), model.proximal(at, noise, step))
    last = LinearisedProximal(model, at, noise).affine(at)
    torch.testing.assert_close(last, model.proximal(at, noise, 2))
    assert not torch.allclose(last, model.proximal(at, noise, 0))

"""Inference preparation: precision choice and the reduced-precision proximal."""

import pytest
import torch

from npgd_recon.core.operators import CartesianOp
from npgd_recon.models.inference import (
    PRECISIONS,
    ReducedPrecision,
    native_precision,
    prepare_for_inference,
    resolve_precision,
)
from npgd_recon.models.npgd import NeuralPGD
from sampling import vdrad

CPU = torch.device("cpu")


def test_precision_names_are_checked_and_auto_resolves_to_a_concrete_one():
    assert resolve_precision("auto", CPU) in ("bf16", "fp32")
    assert resolve_precision("auto", CPU) == native_precision(CPU)
    assert resolve_precision("fp32", CPU) == "fp32"
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("int8", CPU)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        resolve_precision("fp16", CPU)
    assert set(PRECISIONS) >= {"auto", "fp32", "bf16"}


def test_bf16_proximal_stays_close_to_fp32_and_keeps_the_complex_path_in_fp32():
    torch.manual_seed(0)
    model = NeuralPGD(iterations=4, blocks=1, features=8).eval()
    for p in model.prox.tail[-1].parameters():  # a non-trivial proximal, not the zero-init one
        torch.nn.init.normal_(p, std=0.1)
    op = CartesianOp(torch.from_numpy(vdrad((32, 24), 4.0).mask))
    y = op.forward(torch.randn(2, 32, 24, dtype=torch.complex64))
    exact = prepare_for_inference(model, "fp32")
    fast = prepare_for_inference(model, "bf16")
    assert isinstance(fast.prox, ReducedPrecision) and not isinstance(exact.prox, ReducedPrecision)
    with torch.inference_mode():
        reference, approx = exact(y, op), fast(y, op)
    assert approx.dtype == torch.complex64
    relative = (approx - reference).abs().norm() / reference.abs().norm()
    assert 0 < relative < 2e-2  # bf16 keeps 8 mantissa bits: different, but close


def test_compiled_proximal_computes_the_same_function():
    torch.manual_seed(1)
    model = NeuralPGD(iterations=2, blocks=1, features=4).eval()
    torch.nn.init.normal_(model.prox.tail[-1].weight, std=0.1)
    op = CartesianOp(torch.from_numpy(vdrad((16, 12), 3.0).mask))
    y = op.forward(torch.randn(1, 16, 12, dtype=torch.complex64))
    eager = prepare_for_inference(model, "fp32")
    compiled = prepare_for_inference(model, "fp32", compile=True)
    with torch.inference_mode():
        torch.testing.assert_close(compiled(y, op), eager(y, op), rtol=1e-4, atol=1e-5)


def test_compile_and_debias_are_refused_together():
    from npgd_recon.recon.base import ReconOptions
    from npgd_recon.recon.methods import make_reconstructor

    with pytest.raises(ValueError, match="cannot be combined"):
        make_reconstructor("npgd", ReconOptions(device="cpu", debias=2, compile=True))

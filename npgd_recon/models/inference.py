"""Inference preparation: batch norm folded, channels-last memory, in-place ReLUs, reduced
precision.

Folding uses the running statistics (eval mode), so the folded network computes the same
function as the trained one in eval mode (to float rounding) with two fewer layers per block.
Channels-last lets oneDNN (CPU) and cuDNN pick their faster convolution kernels.

Precision: only the proximal network (real-valued convolutions) runs in reduced precision; the
data-consistency step (FFTs, complex arithmetic) and the proximal's global skip stay in float32.
``"auto"`` picks bfloat16 where the hardware computes it natively (CUDA GPUs with bf16, fp16 on
older ones; CPUs with AVX512-BF16 or AMX) and float32 elsewhere. The SNR change against float32
is measured in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from npgd_recon.core.choices import PRECISIONS
from npgd_recon.core.errors import NpgdError
from npgd_recon.models.npgd import NeuralPGD, ResidualBlock

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def native_precision(device: torch.device) -> str:
    """The fastest precision ``device`` computes natively: ``"bf16"``, ``"fp16"`` or ``"fp32"``."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu":
        native = [getattr(torch.cpu, name, lambda: False)()
                  for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        return "bf16" if any(native) else "fp32"
    return "fp32"


def resolve_precision(precision: str, device: torch.device) -> str:
    """``precision`` with ``"auto"`` replaced by :func:`native_precision`; checks the name."""
    if precision not in PRECISIONS:
        raise NpgdError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise NpgdError("fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    return native_precision(device) if precision == "auto" else precision


class ReducedPrecision(nn.Module):
    """Runs a real-valued network under autocast in ``dtype`` and returns float32."""

    def __init__(self, net: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.net, self.dtype = net, dtype

    @property
    def noise_input(self) -> bool:
        """Whether the wrapped proximal takes the noise level."""
        return getattr(self.net, "noise_input", False)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=self.dtype):
            return self.net(x, *args, **kwargs).float()


def fold_batchnorm(model: NeuralPGD) -> NeuralPGD:
    """A copy of ``model`` (eval mode) with every BN merged into the convolution before it."""
    folded = copy.deepcopy(model).eval()
    for block in (m for m in folded.modules() if isinstance(m, ResidualBlock)):
        block.conv1 = fuse_conv_bn_eval(block.conv1, block.bn1)
        block.conv2 = fuse_conv_bn_eval(block.conv2, block.bn2)
        block.bn1, block.bn2 = nn.Identity(), nn.Identity()
    return folded


def prepare_for_inference(model: NeuralPGD, precision: str = "fp32",
                          compile: bool = False) -> NeuralPGD:
    """BN folded, weights channels-last, ReLUs in place, the proximal in ``precision``
    (``"auto"`` resolved on the model's device) and, with ``compile``, compiled by
    ``torch.compile`` (inductor; the first call per input shape pays the compilation, seconds);
    for ``torch.inference_mode`` only (in-place ReLUs would break autograd)."""
    device = next(model.parameters()).device
    precision = resolve_precision(precision, device)
    prepared = fold_batchnorm(model).to(memory_format=torch.channels_last)
    for relu in (m for m in prepared.prox.modules() if isinstance(m, nn.ReLU)):
        relu.inplace = True  # every proximal's ReLU follows a conv or a sum: a fresh temporary
    if precision != "fp32":
        prepared.prox = ReducedPrecision(prepared.prox, _DTYPES[precision])
    if compile:
        prepared.prox = torch.compile(prepared.prox, dynamic=False)
    return prepared

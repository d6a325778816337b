"""A proximal network linearised by its activation masks (paper section 4).

Every nonlinearity of our proximals acts as ``sigma(z) = D(z) z``: ReLU with the 0/1 mask
``D = 1[z > 0]``, Swish with ``D = sigmoid(beta z)``. Recording ``D`` at one input ``s0`` and
then running the network with ``D`` frozen gives an *affine* map ``frozen(s) = M s + b``
(batch norm in eval mode is affine too) that equals the network at ``s0``: ``frozen(s0) =
P(s0)``. Its linear part ``M`` (with the global skip, the identity is part of it) is what the
paper calls ``M*`` (masks at the fixed point) or ``M_t`` (masks at iteration t). ``M v`` is a
Jacobian-vector product of ``frozen`` (``torch.func.jvp``); no matrix is ever formed.

Masks are recorded per batch element, so ``M`` is one linear map per image of the batch.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch
from torch import nn

from npgd_recon.core.transforms import channels_to_complex, complex_to_channels
from npgd_recon.models.npgd import NeuralPGD, Swish

GATED = (nn.ReLU, Swish)


def _gate(module: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """``D(z)`` of a gated activation: ``sigma(z) = D(z) * z``."""
    return module.gate(z) if isinstance(module, Swish) else (z > 0).to(z.dtype)


def _check_affine_between_gates(network: nn.Module) -> None:
    for name, module in network.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            raise ValueError(f"{name}: batch norm in training mode is not a fixed affine map; "
                             f"call .eval() before linearising")


@contextmanager
def _hooked(network: nn.Module, hook):
    """``hook`` on every gated activation; in-place ReLUs (the inference model's) work out of
    place meanwhile, so that the hook sees and gates the activation's own input."""
    gates = [m for m in network.modules() if isinstance(m, GATED)]
    inplace = [m for m in gates if isinstance(m, nn.ReLU) and m.inplace]
    for relu in inplace:
        relu.inplace = False
    handles = [m.register_forward_hook(hook) for m in gates]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for relu in inplace:
            relu.inplace = True


def record_masks(network: nn.Module, x: torch.Tensor, *args, **kwargs,
                 ) -> dict[nn.Module, torch.Tensor]:
    """Run ``network`` on ``x`` (``[batch, 2, y, x]``; ``args``, ``kwargs``: its other inputs)
    and return ``D`` of every activation it ran."""
    _check_affine_between_gates(network)
    masks: dict[nn.Module, torch.Tensor] = {}

    def keep(module, inputs, output):
        masks[module] = _gate(module, inputs[0]).detach()

    with _hooked(network, keep), torch.no_grad():
        network(x, *args, **kwargs)
    return masks


def run_frozen(network: nn.Module, masks: dict[nn.Module, torch.Tensor],
               x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """``network`` on ``x`` with every activation replaced by ``z -> D z``, ``D`` from ``masks``."""

    def freeze(module, inputs, output):
        return masks[module] * inputs[0]

    with _hooked(network, freeze):
        return network(x, *args, **kwargs)


class LinearisedProximal:
    """The proximal of ``model`` with its activation masks frozen at complex images ``at``.

    Args:
        model: a :class:`~npgd_recon.models.npgd.NeuralPGD` in eval mode.
        at: complex ``[batch, y, x]``, the proximal's input where the masks are taken.
        noise: the problems' noise levels, for a ``noise_input`` proximal (a constant input:
            part of the affine map's offset ``b``).
        step: the iteration (0-based) whose proximal an ``untied`` model linearises (default
            the last); a shared model has one.

    ``affine(s)`` is the frozen network (``affine(at) == model.proximal(at)``), ``linear(v)``
    its linear part ``M v``; both on complex ``[batch, y, x]`` of the shape of ``at``.
    """

    def __init__(self, model: NeuralPGD, at: torch.Tensor,
                 noise: torch.Tensor | None = None, step: int = -1) -> None:
        self.network = model.prox
        self.args = (noise,) if model.noise_input else ()
        self.kwargs = {"step": step % model.iterations} if model.untied else {}
        with torch.inference_mode(False):  # usable under inference mode: normal tensors
            self.point = complex_to_channels(at.detach().clone())
            self.masks = record_masks(self.network, self.point, *self.args, **self.kwargs)

    def _frozen(self, channels: torch.Tensor) -> torch.Tensor:
        return run_frozen(self.network, self.masks, channels, *self.args, **self.kwargs)

    def affine(self, s: torch.Tensor) -> torch.Tensor:
        """``M s + b``: the network with the masks frozen."""
        return channels_to_complex(self._frozen(complex_to_channels(s)))

    def linear(self, v: torch.Tensor) -> torch.Tensor:
        """``M v`` (a Jacobian-vector product of the frozen network; exact, it is affine)."""
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            # torch's forward-mode decompositions call torch.jit.script on first use and warn
            warnings.filterwarnings("ignore", "`torch.jit.script", DeprecationWarning)
            tangent = complex_to_channels(v.detach().clone())
            _, out = torch.func.jvp(self._frozen, (self.point,), (tangent,))
        return channels_to_complex(out.detach())

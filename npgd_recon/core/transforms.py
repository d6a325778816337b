"""Tensor layout changes and the intensity normalisation rule stored with every model.

The network sees complex images as two real channels ``[batch, 2, y, x]`` (real, imaginary).
Normalisation (DESIGN.md): each problem is scaled so that the zero-filled image ``Phi^H y`` has
its 99th-percentile magnitude equal to 1; the network's output is scaled back afterwards.
"""

from __future__ import annotations

import torch

NORMALISATION = {"rule": "zerofill_percentile", "percentile": 99.0, "target": 1.0}


def complex_to_channels(x: torch.Tensor) -> torch.Tensor:
    """``[batch, y, x]`` complex -> ``[batch, 2, y, x]`` real."""
    return torch.view_as_real(x).permute(0, 3, 1, 2).contiguous()


def channels_to_complex(x: torch.Tensor) -> torch.Tensor:
    """``[batch, 2, y, x]`` real -> ``[batch, y, x]`` complex."""
    return torch.view_as_complex(x.permute(0, 2, 3, 1).float().contiguous())


def normalise(y: torch.Tensor, op, rule: dict = NORMALISATION,
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The measurement ``y`` of a batch scaled by ``rule``, and the per-problem scale.

    The scale is the ``rule['percentile']`` of ``|op.adjoint(y)|`` per problem (of its first
    set's image for soft SENSE: :meth:`~npgd_recon.core.operators.Operator.output_image`; its
    maximum when that percentile is zero: coil maps that are zero on over 99 % of the plane),
    returned as ``[batch, 1, 1]`` so that images ``[batch, y, x]`` divide (targets) or multiply
    (network outputs) by it directly. A problem whose zero-filled image is zero everywhere has
    nothing in the operator's range (e.g. a plane without signal, where ESPIRiT gives zero coil
    maps while the k-space still holds noise): its normalised measurement is zero and its scale
    the smallest float32, so that every reconstruction of it is zero rather than ``y / 0``.
    """
    if rule.get("rule") != NORMALISATION["rule"]:
        raise ValueError(f"unknown normalisation rule {rule!r}")
    magnitude = op.output_image(op.adjoint(y)).abs().flatten(1)
    peak = magnitude.amax(dim=1)
    scale = torch.quantile(magnitude, rule["percentile"] / 100.0, dim=1)
    scale = torch.where(scale > 0, scale, peak) / rule["target"]
    live = (peak > 0).reshape((-1,) + (1,) * (y.ndim - 1))
    scale = torch.clamp(scale, min=torch.finfo(torch.float32).tiny)
    y = torch.where(live, y / scale.reshape(live.shape), torch.zeros_like(y))
    return y, scale[:, None, None]


def normalised_noise(noise: float | torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The noise std ``noise`` (a number or one per problem) in the units of :func:`normalise`'s
    measurement, per problem ``[batch]``: ``noise / scale``, and 0 for a problem whose zero-filled
    image is empty (scale the smallest float32, measurement zero), whose level would be
    infinite and poison a network that takes it as an input."""
    scale = scale.flatten()
    level = torch.as_tensor(noise, dtype=scale.dtype, device=scale.device) / scale
    return torch.where(scale > torch.finfo(torch.float32).tiny, level, torch.zeros_like(level))

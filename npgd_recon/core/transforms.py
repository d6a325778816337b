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

    The scale is the ``rule['percentile']`` of ``|op.adjoint(y)|`` per problem, returned as
    ``[batch, 1, 1]`` so that images ``[batch, y, x]`` divide (targets) or multiply (network
    outputs) by it directly.
    """
    if rule.get("rule") != NORMALISATION["rule"]:
        raise ValueError(f"unknown normalisation rule {rule!r}")
    magnitude = op.adjoint(y).abs().flatten(1)
    scale = torch.quantile(magnitude, rule["percentile"] / 100.0, dim=1) / rule["target"]
    scale = torch.clamp(scale, min=torch.finfo(torch.float32).tiny)
    return y / scale.reshape((-1,) + (1,) * (y.ndim - 1)), scale[:, None, None]

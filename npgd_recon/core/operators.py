"""Forward operators Phi: one interface (forward, adjoint, normal) for every part of the project.

All operators are torch, batched, differentiable and device-agnostic, acting on complex64
images ``[batch, y, x]``. Cartesian k-space is centred and uses :mod:`npgd_recon.core.fft`.

- :class:`CartesianOp`: single coil, ``Phi = M F``; k-space ``[batch, y, x]``, zeros where
  unsampled. ``||Phi|| <= 1``.
- :class:`SenseOp`: multi-coil, ``Phi = M F S``; k-space ``[batch, coil, y, x]``. With maps
  normalised so that ``sum_c |S_c|^2 <= 1`` per pixel (ESPIRiT's are), ``||Phi|| <= 1``.
- :class:`BlockAverageOp`: super resolution, mean over non-overlapping 2x2 blocks;
  ``[batch, y, x] -> [batch, y/2, x/2]``, ``||Phi|| = 1/2``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from npgd_recon.core.fft import fft2c, ifft2c


class Operator(ABC):
    """A linear operator Phi with its adjoint. Subclasses define ``forward`` and ``adjoint``."""

    @abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Phi x."""

    @abstractmethod
    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Phi^H y."""

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """Phi^H Phi x."""
        return self.adjoint(self.forward(x))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)


def _as_tensor(value, dtype) -> torch.Tensor:
    return value.to(dtype) if isinstance(value, torch.Tensor) else torch.as_tensor(value).to(dtype)


class CartesianOp(Operator):
    """Single-coil Cartesian sampling ``M F``.

    Args:
        mask: ``[y, x]`` or ``[batch, y, x]`` (bool or 0/1), centred like k-space.
    """

    def __init__(self, mask) -> None:
        self.mask = _as_tensor(mask, torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fft2c(x) * self.mask

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return ifft2c(y * self.mask)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        return ifft2c(fft2c(x) * self.mask)


class SenseOp(Operator):
    """Multi-coil SENSE ``M F S``.

    Args:
        mask: ``[y, x]`` or ``[batch, y, x]``, shared by all coils.
        maps: coil sensitivities ``[coil, y, x]`` or ``[batch, coil, y, x]`` (complex).
    """

    def __init__(self, mask, maps) -> None:
        self.mask = _as_tensor(mask, torch.float32).unsqueeze(-3)
        self.maps = _as_tensor(maps, torch.complex64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fft2c(self.maps * x.unsqueeze(-3)) * self.mask

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return (self.maps.conj() * ifft2c(y * self.mask)).sum(dim=-3)


class BlockAverageOp(Operator):
    """Super-resolution forward model: the mean of each non-overlapping 2x2 block."""

    factor = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ny, nx = x.shape[-2:]
        if ny % 2 or nx % 2:
            raise ValueError(f"2x2 block averaging needs even image sizes, got {ny}x{nx}")
        blocks = x.reshape(*x.shape[:-2], ny // 2, 2, nx // 2, 2)
        return blocks.mean(dim=(-3, -1))

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        up = y.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
        return up / 4


def operator_for(mask, maps=None) -> Operator:
    """The MRI operator for a problem: :class:`CartesianOp` without maps, :class:`SenseOp` with."""
    return CartesianOp(mask) if maps is None else SenseOp(mask, maps)

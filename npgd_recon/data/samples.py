"""Typed samples: one dataclass per kind of training problem, each knowing its forward operator.

- :class:`CartesianSample`: single-coil MRI, ``target`` complex ``[y, x]``, ``kspace`` complex
  ``[y, x]`` (centred, zeros where unsampled), ``mask`` float ``[y, x]``, ``noise`` the std of
  the k-space noise per sample (a scalar); operator :class:`~npgd_recon.core.operators.
  CartesianOp`.
- :class:`SenseSample`: multi-coil MRI, the same with ``kspace`` ``[coil, y, x]`` and coil
  ``maps`` ``[coil, y, x]``; operator :class:`~npgd_recon.core.operators.SenseOp`.
- :class:`SuperResSample`: super resolution, ``target`` complex ``[y, x]``, ``lowres`` complex
  ``[y/2, x/2]``; operator :class:`~npgd_recon.core.operators.BlockAverageOp`; no noise level.

A dataset item is one problem; :func:`collate` (the ``collate_fn`` of a ``DataLoader``) stacks
items of one kind into a batch of the same type, every tensor with a leading batch axis
(``noise`` ``[batch]``). A batch moves with :meth:`Sample.to` (and pins with
:meth:`Sample.pin_memory`, which the loader calls) and gives the network's view of itself with
:meth:`Sample.normalised`: ``(op, y, target, noise)`` scaled by the rule stored with every model
(:func:`~npgd_recon.core.transforms.normalise`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import NamedTuple, Self, TypeVar

import torch
from torch.utils.data import default_collate

from npgd_recon.core.operators import BlockAverageOp, CartesianOp, Operator, operator_for
from npgd_recon.core.transforms import normalise, normalised_noise

__all__ = ["CartesianSample", "Problem", "Sample", "SenseSample", "SuperResSample", "collate"]


class Problem(NamedTuple):
    """A normalised batch as the network and the loss see it.

    ``y`` is the measurement divided by each problem's scale, ``target`` ``[batch, y, x]``
    likewise, ``noise`` ``[batch]`` the noise std per measurement sample in the units of ``y``
    (``None`` when the batch has none).
    """

    op: Operator
    y: torch.Tensor
    target: torch.Tensor
    noise: torch.Tensor | None


@dataclass(frozen=True, eq=False)
class Sample(ABC):
    """One problem or a batch of them: the ground truth and what the operator measured."""

    target: torch.Tensor

    @property
    @abstractmethod
    def measurement(self) -> torch.Tensor:
        """The measured data ``y`` (``Phi x*`` plus noise)."""

    @property
    def noise_std(self) -> torch.Tensor | None:
        """The noise std per measurement sample (``[batch]`` for a batch), if known."""
        return None

    @abstractmethod
    def operator(self) -> Operator:
        """The forward operator ``Phi`` of this sample (batched like it)."""

    def map(self, function: Callable[[torch.Tensor], torch.Tensor]) -> Self:
        """The same sample with ``function`` applied to each of its tensors."""
        return replace(self, **{f.name: function(getattr(self, f.name)) for f in fields(self)
                                if getattr(self, f.name) is not None})

    def to(self, device: str | torch.device) -> Self:
        """The sample on ``device``."""
        return self.map(lambda tensor: tensor.to(device))

    def pin_memory(self) -> Self:
        """The sample in page-locked memory (``DataLoader(pin_memory=True)`` calls this)."""
        return self.map(torch.Tensor.pin_memory)

    def normalised(self) -> Problem:
        """A batch scaled so that each zero-filled image has its 99th-percentile magnitude at 1
        (:func:`~npgd_recon.core.transforms.normalise`)."""
        op = self.operator()
        y, scale = normalise(self.measurement, op)
        noise = self.noise_std
        return Problem(op, y, self.target / scale,
                       None if noise is None else normalised_noise(noise, scale))


@dataclass(frozen=True, eq=False)
class CartesianSample(Sample):
    """Single-coil Cartesian k-space: ``y = M F x* + noise``."""

    kspace: torch.Tensor
    mask: torch.Tensor
    noise: torch.Tensor

    @property
    def measurement(self) -> torch.Tensor:
        return self.kspace

    @property
    def noise_std(self) -> torch.Tensor:
        return self.noise

    def operator(self) -> Operator:
        return CartesianOp(self.mask)


@dataclass(frozen=True, eq=False)
class SenseSample(CartesianSample):
    """Multi-coil Cartesian k-space through coil maps: ``y = M F S x* + noise``; a batch's
    ``maps`` are ``[batch, coil, y, x]``, or ``[batch, set, coil, y, x]`` for soft SENSE."""

    maps: torch.Tensor

    def operator(self) -> Operator:
        return operator_for(self.mask, self.maps)


@dataclass(frozen=True, eq=False)
class SuperResSample(Sample):
    """A 2x2 block-averaged image: ``y = B x* + noise`` (the level is not carried)."""

    lowres: torch.Tensor

    @property
    def measurement(self) -> torch.Tensor:
        return self.lowres

    def operator(self) -> Operator:
        return BlockAverageOp()


S = TypeVar("S", bound=Sample)


def collate(samples: Sequence[S]) -> S:
    """Items of one kind stacked into a batch of that kind (each tensor gains a batch axis).

    Items must agree in shape (a coil-count range is drawn per batch for this:
    :meth:`~npgd_recon.data.undersampled.UndersampledSet.coil_count`).
    """
    kinds = {type(sample) for sample in samples}
    if len(kinds) != 1:
        raise ValueError(f"a batch needs samples of one kind, got "
                         f"{', '.join(sorted(k.__name__ for k in kinds)) or 'none'}")
    first = samples[0]
    return replace(first, **{f.name: default_collate([getattr(s, f.name) for s in samples])
                             for f in fields(first)})

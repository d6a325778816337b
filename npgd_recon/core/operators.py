"""Forward operators Phi: one interface (forward, adjoint, normal) for every part of the project.

All operators are torch, batched, differentiable and device-agnostic, acting on complex64
images ``[batch, y, x]``. Cartesian k-space is centred and uses :mod:`npgd_recon.core.fft`.

- :class:`CartesianOp`: single coil, ``Phi = M F``; k-space ``[batch, y, x]``, zeros where
  unsampled. ``||Phi|| <= 1``.
- :class:`SenseOp`: multi-coil, ``Phi = M F S``; k-space ``[batch, coil, y, x]``. With maps
  normalised so that ``sum_c |S_c|^2 <= 1`` per pixel (ESPIRiT's are), ``||Phi|| <= 1``.
- :class:`SoftSenseOp`: SENSE with several sets of maps (ESPIRiT's soft SENSE, Uecker et al.
  2014), ``Phi x = M F sum_m S_m x_m``: one image per set ``[batch, set, y, x]`` -> k-space
  ``[batch, coil, y, x]``. ESPIRiT's sets are orthonormal per pixel (``||Phi|| <= 1``): the
  first holds what one-set SENSE images, the others take up what one set of smooth maps cannot
  explain (an object across the field of view's edges, folded-in signal); a reconstruction
  reports the first set's image (:meth:`Operator.output_image`).
- :class:`BlockAverageOp`: super resolution, mean over non-overlapping 2x2 blocks;
  ``[batch, y, x] -> [batch, y/2, x/2]``, ``||Phi|| = 1/2``.

Shapes (after sigpy's ``Linop``): every operator knows its input shape :attr:`Operator.ishape`
and output shape :attr:`Operator.oshape`, with ``None`` where any size fits: the batch axis
when the operator's data (mask, maps) are shared by every image, the image sizes of a
:class:`BlockAverageOp` built without a shape. A tensor may leave out a free batch axis (one
image ``[y, x]`` in, one measurement out). ``forward``, ``adjoint`` and ``normal`` compare the
shape of what they are given with these (a few integer comparisons, nothing that waits for a
GPU) and raise :class:`~npgd_recon.core.errors.NpgdError` naming the operator, its shapes and
the shape it got. Subclasses implement ``_forward`` and ``_adjoint`` on checked tensors.

``normal`` (``Phi^H Phi``, the unrolled network's data-consistency step and its conjugate
gradients) skips the FFT's centring where both sides are even (:func:`~npgd_recon.core.fft.
centring`; SENSE folds it into a cached copy of its maps): 3 passes over the coil images
instead of 8. :attr:`Operator.support` says which image pixels reach the measurement at all
(SENSE with maps that are 0 outside the object); the network sets the rest to 0.

Adjointness (after deepinv's ``adjointness_test``): :meth:`Operator.adjointness_error` draws
random ``x`` and ``y`` and returns ``|<Phi x, y> - <x, Phi^H y>| / (||Phi x|| ||y||)``, about
1e-16 in complex128 for a true adjoint pair.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from npgd_recon.core.errors import NpgdError
from npgd_recon.core.fft import centring, fft2c, ifft2c

__all__ = ["BlockAverageOp", "CartesianOp", "Operator", "SenseOp", "Shape", "SoftSenseOp",
           "operator_for"]

Shape = tuple[int | None, ...]
"""A tensor shape with ``None`` where any size fits; the first axis is the batch."""


def _show(shape: Shape) -> str:
    return "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"


def _fits(shape: tuple[int, ...], expected: Shape) -> bool:
    """``shape`` matches ``expected``, or ``expected`` without its free batch axis."""
    if len(shape) == len(expected) - 1 and expected[0] is None:
        expected = expected[1:]
    return len(shape) == len(expected) and all(
        e is None or s == e for s, e in zip(shape, expected))


class Operator(ABC):
    """A linear operator Phi with its adjoint and its shapes.

    Subclasses set :attr:`ishape` and :attr:`oshape` and define ``_forward`` and ``_adjoint``
    (and ``_normal`` when ``Phi^H Phi`` has a cheaper form).
    """

    ishape: Shape
    oshape: Shape

    def __repr__(self) -> str:
        return f"{type(self).__name__}({_show(self.ishape)} -> {_show(self.oshape)})"

    def check_input(self, x: torch.Tensor) -> None:
        """Raise NpgdError unless ``x`` fits :attr:`ishape`."""
        if not _fits(tuple(x.shape), self.ishape):
            raise NpgdError(f"{self!r}: got an input of shape {_show(tuple(x.shape))}")

    def check_output(self, y: torch.Tensor) -> None:
        """Raise NpgdError unless ``y`` fits :attr:`oshape`."""
        if not _fits(tuple(y.shape), self.oshape):
            raise NpgdError(f"{self!r}: got a measurement of shape {_show(tuple(y.shape))}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Phi x, for ``x`` of shape :attr:`ishape`."""
        self.check_input(x)
        return self._forward(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Phi^H y, for ``y`` of shape :attr:`oshape`."""
        self.check_output(y)
        return self._adjoint(y)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """Phi^H Phi x, for ``x`` of shape :attr:`ishape`."""
        self.check_input(x)
        return self._normal(x)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    @abstractmethod
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Phi x on a checked input."""

    @abstractmethod
    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Phi^H y on a checked measurement."""

    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        return self._adjoint(self._forward(x))

    @property
    def device(self) -> torch.device:
        """Where the operator's data live (the CPU for an operator without data)."""
        return torch.device("cpu")

    def output_image(self, x: torch.Tensor) -> torch.Tensor:
        """The image a reconstruction reports for ``x`` in the operator's input space: ``x``
        itself (the first set's image for :class:`SoftSenseOp`)."""
        return x

    @property
    def support(self) -> torch.Tensor | None:
        """The image pixels that reach the measurement at all (bool, broadcasting against
        :attr:`ishape`), or None when every pixel does. Outside it the image is in Phi's null
        space: no data say anything about it, and a reconstruction sets it to 0 (the
        minimum-norm choice, what CS's regularisation gives)."""
        return None

    def adjointness_error(self, batch: int = 2, *, generator: torch.Generator | None = None,
                          dtype: torch.dtype = torch.complex128) -> float:
        """``|<Phi x, y> - <x, Phi^H y>| / (||Phi x|| ||y||)`` for random ``x`` and ``y``.

        Args:
            batch: the batch size where the operator leaves it free.
            generator: draws ``x`` and ``y`` (complex Gaussian, on the CPU, then moved to
                :attr:`device`); default one seeded with 0.
            dtype: the complex dtype of ``x`` and ``y`` (complex128 tests the algebra, not the
                float32 rounding).

        Raises:
            NpgdError: an operator whose input shape is not fixed beyond the batch.
        """
        if None in self.ishape[1:]:
            raise NpgdError(f"{self!r}: give the operator its image shape to test it")
        generator = torch.Generator().manual_seed(0) if generator is None else generator
        shape = tuple(batch if s is None else s for s in self.ishape)
        x = torch.randn(shape, dtype=dtype, generator=generator).to(self.device)
        ax = self.forward(x)
        y = torch.randn(tuple(ax.shape), dtype=dtype, generator=generator).to(self.device)
        lhs = torch.vdot(ax.reshape(-1), y.reshape(-1))
        rhs = torch.vdot(x.reshape(-1), self.adjoint(y).reshape(-1))
        scale = ax.norm() * y.norm()
        return float((lhs - rhs).abs() / scale) if scale > 0 else float((lhs - rhs).abs())


def _as_tensor(value, dtype) -> torch.Tensor:
    return value.to(dtype) if isinstance(value, torch.Tensor) else torch.as_tensor(value).to(dtype)


def _check_ndim(name: str, what: str, tensor: torch.Tensor, allowed: tuple[int, int],
                layout: str) -> None:
    if tensor.ndim not in allowed:
        raise NpgdError(f"{name}: {what} must be {layout}, got shape {_show(tuple(tensor.shape))}")


class CartesianOp(Operator):
    """Single-coil Cartesian sampling ``M F``: ``[batch, y, x] -> [batch, y, x]``.

    Args:
        mask: ``[y, x]`` (shared by every image: any batch) or ``[batch, y, x]`` (one mask per
            image), bool or 0/1, centred like k-space.
    """

    def __init__(self, mask) -> None:
        self.mask = _as_tensor(mask, torch.float32)
        _check_ndim("CartesianOp", "the mask", self.mask, (2, 3), "[y, x] or [batch, y, x]")
        batch = self.mask.shape[0] if self.mask.ndim == 3 else None
        self.ishape = self.oshape = (batch, *self.mask.shape[-2:])

    @property
    def device(self) -> torch.device:
        return self.mask.device

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return fft2c(x) * self.mask

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return ifft2c(y * self.mask)

    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        b = centring(*x.shape[-2:], x.device)
        if b is None:
            return ifft2c(fft2c(x) * self.mask.square())
        return b * torch.fft.ifft2(torch.fft.fft2(b * x, norm="ortho") * self.mask.square(),
                                   norm="ortho")


class SenseOp(Operator):
    """Multi-coil SENSE ``M F S``: ``[batch, y, x] -> [batch, coil, y, x]``.

    Args:
        mask: ``[y, x]`` or ``[batch, y, x]``, shared by all coils.
        maps: coil sensitivities ``[coil, y, x]`` or ``[batch, coil, y, x]`` (complex).

    The operator's batch is fixed when the mask or the maps have one (a batch of 1 beside a
    larger one is shared), free when neither has.
    """

    def __init__(self, mask, maps) -> None:
        mask = _as_tensor(mask, torch.float32)
        self.maps = _as_tensor(maps, torch.complex64)
        _check_ndim("SenseOp", "the mask", mask, (2, 3), "[y, x] or [batch, y, x]")
        _check_ndim("SenseOp", "the maps", self.maps, (3, 4),
                    "[coil, y, x] or [batch, coil, y, x]")
        if mask.shape[-2:] != self.maps.shape[-2:]:
            raise NpgdError(f"SenseOp: the mask {_show(tuple(mask.shape))} and the maps "
                            f"{_show(tuple(self.maps.shape))} cover different image sizes")
        batches = {t.shape[0] for t, n in ((mask, 3), (self.maps, 4)) if t.ndim == n}
        if len(batches - {1}) > 1:
            raise NpgdError(f"SenseOp: the mask {_show(tuple(mask.shape))} and the maps "
                            f"{_show(tuple(self.maps.shape))} have different batch sizes")
        batch = max(batches) if batches else None
        self.mask = mask.unsqueeze(-3)
        self.ishape = (batch, *self.maps.shape[-2:])
        self.oshape = (batch, *self.maps.shape[-3:])
        self._centred: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def device(self) -> torch.device:
        return self.maps.device

    @property
    def support(self) -> torch.Tensor | None:
        """Where some coil sees the image (``sum_c |S_c|^2 > 0``; ESPIRiT's maps are 0 outside
        the object's support); None when every coil sees every pixel (synthetic maps)."""
        seen = (self.maps.real.square() + self.maps.imag.square()).sum(dim=-3) > 0
        return None if bool(seen.all()) else seen

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return fft2c(self.maps * x.unsqueeze(-3)) * self.mask

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return (self.maps.conj() * ifft2c(y * self.mask)).sum(dim=-3)

    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        """``S^H F^H M^2 F S x`` with the centring folded into the maps (:func:`centring`):
        three passes over the coil images instead of eight, the unrolled network's data
        consistency on multi-coil data (cached per operator, two copies of the maps)."""
        centred = self._centred
        if centred is None:
            b = centring(*self.maps.shape[-2:], self.maps.device)
            if b is None:
                return self._adjoint(self._forward(x))
            maps = self.maps * b
            centred = (maps, maps.conj().resolve_conj(), self.mask.square())
            if not self.maps.requires_grad:  # learned maps: a fresh graph every call
                self._centred = centred
        maps, conj, weight = centred
        k = torch.fft.fft2(maps * x.unsqueeze(-3), norm="ortho") * weight
        return (conj * torch.fft.ifft2(k, norm="ortho")).sum(dim=-3)


class SoftSenseOp(Operator):
    """SENSE with several sets of maps: ``[batch, set, y, x] -> [batch, coil, y, x]``.

    Args:
        mask: ``[y, x]`` or ``[batch, y, x]``, shared by all coils.
        maps: ``[batch, set, coil, y, x]`` (complex; ESPIRiT's sets, the first the strongest).
    """

    def __init__(self, mask, maps) -> None:
        mask = _as_tensor(mask, torch.float32)
        self.maps = _as_tensor(maps, torch.complex64)
        _check_ndim("SoftSenseOp", "the mask", mask, (2, 3), "[y, x] or [batch, y, x]")
        _check_ndim("SoftSenseOp", "the maps", self.maps, (5, 5), "[batch, set, coil, y, x]")
        batch = self.maps.shape[0]
        if mask.shape[-2:] != self.maps.shape[-2:] or (mask.ndim == 3
                                                        and mask.shape[0] not in (1, batch)):
            raise NpgdError(f"SoftSenseOp: the mask {_show(tuple(mask.shape))} does not fit "
                            f"the maps {_show(tuple(self.maps.shape))}")
        self.mask = mask.unsqueeze(-3)
        self.ishape = (batch, self.maps.shape[1], *self.maps.shape[-2:])
        self.oshape = (batch, *self.maps.shape[-3:])

    @property
    def device(self) -> torch.device:
        return self.maps.device

    @property
    def support(self) -> torch.Tensor | None:
        """Where some coil sees each set's image (``sum_c |S_mc|^2 > 0``), or None everywhere."""
        seen = (self.maps.real.square() + self.maps.imag.square()).sum(dim=-3) > 0
        return None if bool(seen.all()) else seen

    def output_image(self, x: torch.Tensor) -> torch.Tensor:
        """The first set's image ``[batch, y, x]``, what one-set SENSE estimates."""
        return x[:, 0]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return fft2c((self.maps * x.unsqueeze(-3)).sum(dim=-4)) * self.mask

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return (self.maps.conj() * ifft2c(y * self.mask).unsqueeze(-4)).sum(dim=-3)


class BlockAverageOp(Operator):
    """Super-resolution forward model: the mean of each non-overlapping 2x2 block,
    ``[batch, y, x] -> [batch, y/2, x/2]``.

    Args:
        shape: the image size ``(y, x)`` (both even); ``None``: any even size.
    """

    factor = 2

    def __init__(self, shape: tuple[int, int] | None = None) -> None:
        if shape is None:
            self.ishape = self.oshape = (None, None, None)
            return
        ny, nx = (int(s) for s in shape)
        if ny % 2 or nx % 2 or min(ny, nx) < 2:
            raise NpgdError(f"BlockAverageOp: 2x2 block averaging needs even image sizes, "
                            f"got {ny}x{nx}")
        self.ishape, self.oshape = (None, ny, nx), (None, ny // 2, nx // 2)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise NpgdError unless ``x`` fits :attr:`ishape` with even image sizes."""
        super().check_input(x)
        if x.shape[-2] % 2 or x.shape[-1] % 2:
            raise NpgdError(f"{self!r}: 2x2 block averaging needs even image sizes, got an "
                            f"input of shape {_show(tuple(x.shape))}")

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        ny, nx = x.shape[-2:]
        blocks = x.reshape(*x.shape[:-2], ny // 2, 2, nx // 2, 2)
        return blocks.mean(dim=(-3, -1))

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        up = y.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
        return up / 4


def operator_for(mask, maps=None) -> Operator:
    """The MRI operator for a problem: :class:`CartesianOp` without maps, :class:`SenseOp` with
    one set ``[coil, y, x]`` / ``[batch, coil, y, x]``, :class:`SoftSenseOp` with several
    ``[batch, set, coil, y, x]``."""
    if maps is None:
        return CartesianOp(mask)
    return SoftSenseOp(mask, maps) if maps.ndim == 5 else SenseOp(mask, maps)

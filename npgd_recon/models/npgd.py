"""The networks: neural proximal gradient descent (NPGD) and the deep-ResNet baseline.

Pure ``nn.Module``s: they take a measurement and an :class:`~npgd_recon.core.operators.Operator` and
never read files. The state-space recursion (paper eq. 3-4), with ``x_0 = 0``::

    s_{t+1} = alpha Phi^H y + (I - alpha Phi^H Phi) x_t      (gradient step, alpha > 0 learned)
    x_{t+1} = P(s_{t+1})                                     (one proximal ResNet, shared)

``data_consistency="hard"`` fixes alpha = 1: for a Cartesian ``M F`` that step replaces the
sampled k-space of ``x_t`` by the measurement, which is what the authors' public code ran.

``data_consistency="cg"`` (our addition, after MoDL) takes the implicit step instead of the
explicit one: ``s_{t+1} = argmin_s alpha ||y - Phi s||^2 + ||s - x_t||^2``, that is
``(I + alpha Phi^H Phi) s = x_t + alpha Phi^H y``, solved by ``cg_iterations`` steps of conjugate
gradients started at ``x_t`` (every step differentiable). Its condition number is at most
``1 + alpha ||Phi||^2``, so a few steps solve it; for large alpha ``s`` is the exactly
data-consistent image nearest ``x_t``, which a single gradient step cannot reach on
well-conditioned multi-coil problems.

``final_dc=True`` (our addition) ends with one more implicit data-consistency step on
``x_T`` with its own learned step ``final_alpha`` (``cg_iterations`` conjugate-gradient steps,
whatever ``data_consistency`` is): the proximal's error on what the data determine is solved
away, as far as the noise allows (the learned ``final_alpha`` sets how far).

``final_noise=True`` (with ``final_dc``) lets that step follow the measurement's noise level
``sigma`` (complex std per k-space sample, normalised units), given to ``forward`` as ``noise``:
``final_alpha(sigma) = alpha_0 / (1 + (sigma / sigma_0)^2)`` with ``alpha_0`` and ``sigma_0``
learned. It is the MAP weighting of two estimates, ``x_T`` with an error variance ``v`` and the
data with ``sigma^2``: ``alpha = v / sigma^2`` for noisy data, capped at ``alpha_0`` (where
``sigma_0^2 = v / alpha_0``) as ``sigma`` goes to zero. So a quiet scan gets an almost exactly
data-consistent output and a noisy one keeps the network's denoising. ``noise=None`` means a
noiseless measurement (``alpha_0``).

The proximal ``P`` is pluggable (``proximal=``, one of :data:`PROXIMALS`):

- ``"resnet"`` (default, the MRI proximal of section 5.1): 3x3 conv 2->F, K residual blocks (two
  3x3 conv, each with BN and ReLU, identity skip), then three 1x1 convs (ReLU after the first
  two) back to 2 channels; with ``unshuffle = r`` on ``r x r`` pixel blocks at ``1/r`` of the
  resolution (:class:`ProximalResNet`).
- ``"linear-swish"`` (the super-resolution proximal of section 5.3): ``layers`` convolutions of
  size ``kernel`` with no activation between them ("same" padding), then a Swish.
- ``"unet"`` (ours, issue 24): a small U-Net, ``blocks`` resolution levels below the full one
  (:class:`ProximalUNet`); a larger receptive field at about the CPU time of the ResNet.

``noise_input=True`` (ours, issue 24; ``"resnet"`` only) gives the proximal the measurement's
noise level as a third input channel, constant over the plane: ``sigma / NOISE_UNIT`` (the
``noise`` given to ``forward``, normalised units; 0 when ``None``). One network then learns a
denoising strength per noise level instead of one compromise for all. Its weights on that
channel start at zero, so a model fine-tuned from one without it starts as that model.

``untied=True`` (ours, issue 24; ``"resnet"`` only) gives every iteration its own copy of the
proximal (:class:`UntiedProximal`): the same operations per iteration, T times the parameters.
It departs from the paper's shared ``P`` (whose fixed-point analysis needs one map), so it is an
option of the CPU default and its arms, not the paper's model; fine-tuned from a shared model,
every copy starts as that model's proximal, so the untied model starts as the shared one.

With ``global_skip=True`` (our default, a deviation the paper does not mention)
``P(s) = s + net(s)``, so an untrained network is plain gradient descent and training converges
faster. Every nonlinearity is an ``nn.ReLU`` or :class:`Swish` module, so
:mod:`npgd_recon.models.linearise` can record and freeze their activation masks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from npgd_recon.core.operators import Operator, SoftSenseOp
from npgd_recon.core.transforms import channels_to_complex, complex_to_channels


class ResidualBlock(nn.Module):
    """Two 3x3 conv + BN + ReLU, with an identity skip around them."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(features)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(features)
        self.act1, self.act2 = nn.ReLU(), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act1(self.bn1(self.conv1(x)))
        return x + self.act2(self.bn2(self.conv2(h)))


class ProximalResNet(nn.Module):
    """The proximal map P on 2-channel images ``[batch, 2, y, x]``.

    ``unshuffle = r > 1`` (ours, issue 24) runs the ResNet on ``r x r`` pixel blocks: the planes
    are zero-padded at the end to a multiple of ``r``, folded into ``2 r^2`` channels at
    ``1/r`` of the resolution (``pixel_unshuffle``), and unfolded and cropped back at the end.
    With ``features = r F`` it costs what the full-resolution ResNet with ``F`` costs and sees
    ``r`` times as far.

    ``noise_input``: the head also takes a constant channel ``level / NOISE_UNIT`` (``level``:
    the noise std per problem ``[batch]``, or ``None`` for 0), appended after the fold; its
    head weights start at zero.
    """

    def __init__(self, blocks: int = 1, features: int = 128, global_skip: bool = True,
                 unshuffle: int = 1, noise_input: bool = False) -> None:
        super().__init__()
        if unshuffle < 1:
            raise ValueError(f"unshuffle must be at least 1, got {unshuffle}")
        self.global_skip, self.unshuffle, self.noise_input = global_skip, unshuffle, noise_input
        channels = 2 * unshuffle ** 2
        self.head = nn.Conv2d(channels + int(noise_input), features, 3, padding=1)
        if noise_input:
            with torch.no_grad():
                self.head.weight[:, channels:] = 0
        self.blocks = nn.Sequential(*(ResidualBlock(features) for _ in range(blocks)))
        self.tail = nn.Sequential(
            nn.Conv2d(features, features, 1), nn.ReLU(),
            nn.Conv2d(features, features, 1), nn.ReLU(),
            nn.Conv2d(features, channels, 1),
        )
        if global_skip:  # start as the identity: the untrained network is gradient descent
            nn.init.zeros_(self.tail[-1].weight)
            nn.init.zeros_(self.tail[-1].bias)

    def forward(self, x: torch.Tensor, level: torch.Tensor | None = None) -> torch.Tensor:
        r = self.unshuffle
        ny, nx = x.shape[-2:]
        h = x if r == 1 else F.pixel_unshuffle(F.pad(x, (0, -nx % r, 0, -ny % r)), r)
        if self.noise_input:
            h = torch.cat([h, self._level_map(h, level)], dim=1)
        out = self.tail(self.blocks(self.head(h)))
        if r > 1:
            out = F.pixel_shuffle(out, r)[..., :ny, :nx]
        return x + out if self.global_skip else out

    @staticmethod
    def _level_map(h: torch.Tensor, level: torch.Tensor | None) -> torch.Tensor:
        """The noise channel ``[batch, 1, y, x]`` for the folded input ``h``."""
        plane = h.new_zeros(h.shape[0], 1, *h.shape[-2:])
        if level is None:
            return plane
        level = torch.as_tensor(level, dtype=h.dtype, device=h.device).reshape(-1, 1, 1, 1)
        return plane + level / NOISE_UNIT


class Swish(nn.Module):
    """``z * sigmoid(beta z)`` per channel, ``beta`` learned (``beta = 1`` is the plain Swish)."""

    def __init__(self, channels: int, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.full((1, channels, 1, 1), float(beta)))

    def gate(self, z: torch.Tensor) -> torch.Tensor:
        """The factor the input is multiplied by: ``sigmoid(beta z)``."""
        return torch.sigmoid(self.beta * z)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.gate(z)


class LinearSwishProximal(nn.Module):
    """The super-resolution proximal (paper 5.3): a linear CNN with one Swish at the end.

    ``layers`` convolutions 2->F->...->F->2 of size ``kernel`` with "same" zero padding (for an
    even kernel one more row/column after than before, as PyTorch's ``padding="same"``), no
    activation between them, then :class:`Swish` on the 2 output channels.

    Initialisation (our choice, for a stable 25-step unrolled training from the start): every
    convolution is the identity on its first channels plus small noise, and the Swish starts
    with ``beta = 4`` (close to the identity for the non-negative images it sees), so the
    untrained network is about plain gradient descent.
    """

    def __init__(self, features: int = 16, layers: int = 5, kernel: int = 8,
                 global_skip: bool = False) -> None:
        super().__init__()
        if layers < 1 or kernel < 1:
            raise ValueError("layers >= 1 and kernel >= 1 are required")
        self.global_skip = global_skip
        before, after = (kernel - 1) // 2, kernel // 2
        self.pad = nn.ZeroPad2d((before, after, before, after))
        widths = [2] + [features] * (layers - 1) + [2]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, kernel)
                                   for a, b in zip(widths[:-1], widths[1:]))
        with torch.no_grad():
            for conv in self.convs:
                nn.init.normal_(conv.weight, std=0.01 / kernel)
                nn.init.zeros_(conv.bias)
                for c in range(min(conv.in_channels, conv.out_channels)):
                    conv.weight[c, c, before, before] += 1.0
        self.act = Swish(2, beta=4.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for conv in self.convs:
            out = conv(self.pad(out))
        out = self.act(out)
        return x + out if self.global_skip else out


class ProximalUNet(nn.Module):
    """A small multi-scale proximal (issue 24): a U-Net on 2-channel images.

    ``levels`` times a stride-2 3x3 conv doubles the features (``features`` at full resolution,
    ``features * 2^l`` at level ``l``), each followed by a 3x3 conv; on the way up a 2x2
    transposed conv halves them, its output is added to the skip of the same level, then a 3x3
    conv. ReLU after every conv but the last (a 1x1 conv to 2 channels, zero-initialised with
    ``global_skip`` as in :class:`ProximalResNet`). No batch norm. Planes are zero-padded at the
    end to a multiple of ``2^levels`` and cropped back. A level down has a quarter of the pixels
    and twice the features, so each of its convs costs about what one at full resolution with
    ``features`` costs, while the receptive field grows ``2^levels``-fold.
    """

    def __init__(self, levels: int = 2, features: int = 16, global_skip: bool = True) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f"a U-Net proximal needs levels >= 1, got {levels}")
        self.global_skip = global_skip
        widths = [features * 2 ** level for level in range(levels + 1)]
        self.head = nn.Sequential(nn.Conv2d(2, features, 3, padding=1), nn.ReLU())
        self.down = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a, b, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv2d(b, b, 3, padding=1), nn.ReLU())
            for a, b in zip(widths[:-1], widths[1:]))
        self.up = nn.ModuleList(nn.ConvTranspose2d(b, a, 2, stride=2)
                                for a, b in zip(widths[:-1], widths[1:]))
        self.merge = nn.ModuleList(nn.Sequential(nn.ReLU(), nn.Conv2d(a, a, 3, padding=1),
                                                 nn.ReLU()) for a in widths[:-1])
        self.tail = nn.Conv2d(features, 2, 1)
        if global_skip:
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    @property
    def levels(self) -> int:
        return len(self.down)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ny, nx = x.shape[-2:]
        step = 2 ** self.levels
        h = F.pad(x, (0, -nx % step, 0, -ny % step))
        skips = [self.head(h)]
        for down in self.down:
            skips.append(down(skips[-1]))
        h = skips.pop()
        for level in reversed(range(self.levels)):
            h = self.merge[level](self.up[level](h) + skips[level])
        out = self.tail(h)[..., :ny, :nx]
        return x + out if self.global_skip else out


PROXIMALS = ("resnet", "linear-swish", "unet")
NOISE_UNIT = 0.01  # the noise channel of ``noise_input``: sigma in these normalised units
STEP_PARAMETERS = ("alpha_raw", "final_alpha_raw", "final_log_sigma")  # the scalars, not weights
DATA_CONSISTENCY = ("gradient", "hard", "cg")


class UntiedProximal(nn.Module):
    """One proximal per iteration (``untied``): ``forward(x, *args, step=t)`` runs the copy of
    iteration ``t`` (0-based) on ``x``."""

    def __init__(self, steps: list[ProximalResNet]) -> None:
        super().__init__()
        self.steps = nn.ModuleList(steps)

    @property
    def noise_input(self) -> bool:
        """Whether the proximals take the noise level."""
        return self.steps[0].noise_input

    def forward(self, x: torch.Tensor, *args, step: int = 0) -> torch.Tensor:
        return self.steps[step](x, *args)


def conjugate_gradient(apply: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor,
                       x0: torch.Tensor, iterations: int, image_dims: int = 2) -> torch.Tensor:
    """``iterations`` CG steps for ``apply(x) = b`` (Hermitian positive definite), batched:
    every image of ``b`` (its last ``image_dims`` axes: ``[y, x]``, or ``[set, y, x]`` for
    soft SENSE) is its own system."""
    dims = tuple(range(-image_dims, 0))

    def dot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (u.conj() * v).real.sum(dim=dims, keepdim=True)

    x = x0
    r = b - apply(x)
    p, rr = r, dot(r, r)
    for _ in range(iterations):
        ap = apply(p)
        step = rr / dot(p, ap).clamp_min(1e-30)
        x, r = x + step * p, r - step * ap
        rr_next = dot(r, r)
        p, rr = r + rr_next / rr.clamp_min(1e-30) * p, rr_next
    return x


class NeuralPGD(nn.Module):
    """Unrolled proximal gradient descent with one shared proximal network.

    Args:
        iterations: T, number of unrolled iterations (T=1, K=10 is the deep-ResNet baseline).
        blocks: K, residual blocks in the ResNet proximal.
        features: F, feature maps in the proximal.
        data_consistency: ``"gradient"`` (learned alpha, the paper), ``"hard"`` (alpha = 1) or
            ``"cg"`` (the implicit step with learned alpha, solved by conjugate gradients).
        global_skip: add the proximal's input to its output.
        alpha_init: initial step size.
        proximal: ``"resnet"`` or ``"linear-swish"`` (see the module docstring).
        layers, kernel: convolutions and their size in the ``"linear-swish"`` proximal.
        cg_iterations: conjugate-gradient steps per implicit step (``"cg"``, ``final_dc``).
        final_dc: end with an implicit data-consistency step on ``x_T``.
        final_noise: that step's alpha follows the noise level (see the module docstring);
            ``alpha_init`` is then ``alpha_0`` and ``sigma_init`` is ``sigma_0``.
        sigma_init: initial ``sigma_0`` (normalised units).
        unshuffle: the ResNet proximal on ``r x r`` pixel blocks (:class:`ProximalResNet`).
        noise_input: the ResNet proximal also sees the noise level (see the module docstring).
        untied: one ResNet proximal per iteration (see the module docstring).
    """

    def __init__(self, iterations: int = 10, blocks: int = 1, features: int = 128,
                 data_consistency: str = "gradient", global_skip: bool = True,
                 alpha_init: float = 1.0, proximal: str = "resnet", layers: int = 5,
                 kernel: int = 8, cg_iterations: int = 8, final_dc: bool = False,
                 final_noise: bool = False, sigma_init: float = 0.01,
                 unshuffle: int = 1, noise_input: bool = False, untied: bool = False) -> None:
        super().__init__()
        if data_consistency not in DATA_CONSISTENCY:
            raise ValueError(f"data_consistency must be one of {', '.join(DATA_CONSISTENCY)}, "
                             f"got {data_consistency!r}")
        if cg_iterations < 1:
            raise ValueError(f"cg_iterations must be at least 1, got {cg_iterations}")
        if proximal not in PROXIMALS:
            raise ValueError(f"proximal must be one of {', '.join(PROXIMALS)}, got {proximal!r}")
        if iterations < 1 or blocks < 0 or features < 1:
            raise ValueError("iterations >= 1, blocks >= 0 and features >= 1 are required")
        if final_noise and not final_dc:
            raise ValueError("final_noise needs final_dc: it sets the final step's alpha")
        if not sigma_init > 0:
            raise ValueError(f"sigma_init must be > 0, got {sigma_init}")
        if unshuffle != 1 and proximal != "resnet":
            raise ValueError("unshuffle is an option of the resnet proximal")
        if noise_input and proximal != "resnet":
            raise ValueError("noise_input is an option of the resnet proximal")
        if untied and proximal != "resnet":
            raise ValueError("untied is an option of the resnet proximal")
        self.iterations = iterations
        self.untied = bool(untied)  # one proximal per iteration
        self.data_consistency = data_consistency
        self.cg_iterations = cg_iterations
        self.final_dc = bool(final_dc)
        if self.final_dc:  # the final step's own alpha, also through a softplus
            self.final_alpha_raw = nn.Parameter(torch.tensor(float(alpha_init)).expm1().log())
        self.final_noise = bool(final_noise)
        if self.final_noise:  # log sigma_0: the scale of a noise level spans decades
            self.final_log_sigma = nn.Parameter(torch.tensor(float(sigma_init)).log())
        # softplus(raw) = alpha keeps the step positive
        self.alpha_raw = nn.Parameter(torch.tensor(float(alpha_init)).expm1().log())
        if proximal == "resnet" and untied:
            self.prox = UntiedProximal([
                ProximalResNet(blocks, features, global_skip, unshuffle, noise_input)
                for _ in range(iterations)])
        elif proximal == "resnet":
            self.prox = ProximalResNet(blocks, features, global_skip, unshuffle, noise_input)
        elif proximal == "unet":
            self.prox = ProximalUNet(blocks, features, global_skip)
        else:
            self.prox = LinearSwishProximal(features, layers, kernel, global_skip)

    @property
    def alpha(self) -> torch.Tensor:
        """The step size: learned and positive, or 1 with hard data consistency."""
        if self.data_consistency == "hard":
            return torch.ones((), device=self.alpha_raw.device)
        return F.softplus(self.alpha_raw)

    @property
    def noise_input(self) -> bool:
        """Whether the proximal takes the noise level (``noise_input``)."""
        return getattr(self.prox, "noise_input", False)

    def proximal(self, s: torch.Tensor, noise: torch.Tensor | None = None,
                 step: int = 0) -> torch.Tensor:
        """P applied to complex images ``[batch, y, x]`` (``noise``: the problems' noise
        levels ``[batch]``, seen by a ``noise_input`` proximal only; ``step``: the iteration,
        0-based, whose proximal an ``untied`` model runs)."""
        channels = complex_to_channels(s)
        args = (noise,) if self.noise_input else ()
        kwargs = {"step": step} if self.untied else {}
        return channels_to_complex(self.prox(channels, *args, **kwargs))

    def iterate(self, y: torch.Tensor, op: Operator, *, x0: torch.Tensor | None = None,
                iterations: int | None = None,
                proximal: Callable[[torch.Tensor], torch.Tensor] | None = None,
                noise: torch.Tensor | None = None,
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The recursion (eq. 3-4), one ``(s_{t+1}, x_{t+1})`` pair per iteration.

        Args:
            y: measurement (already normalised).
            op: the forward operator Phi.
            x0: starting image (``None``: ``x_0 = 0``, so ``s_1 = alpha Phi^H y``).
            iterations: how many (default T; an ``untied`` model has no more than T).
            proximal: a map on complex images replacing ``P`` (default the network's).
            noise: the problems' noise levels for a ``noise_input`` proximal (``None``: 0).
        """
        iterations = self.iterations if iterations is None else iterations
        if self.untied and proximal is None and iterations > self.iterations:
            raise ValueError(f"an untied model has {self.iterations} proximals, "
                             f"not {iterations}")
        alpha = self.alpha
        step = alpha * op.adjoint(y)
        level = set_levels(noise, op) if isinstance(op, SoftSenseOp) else noise
        x = x0
        for t in range(iterations):
            if self.data_consistency == "cg":
                s = self.implicit_step(x, step, op)
            else:
                s = step if x is None else step + x - alpha * op.normal(x)
            own = proximal if proximal is not None else (
                lambda s, t=t: self.proximal(s, level, t))
            x = set_proximal(own, op)(s)
            yield s, x

    def implicit_step(self, x: torch.Tensor | None, step: torch.Tensor, op: Operator,
                      alpha: torch.Tensor | None = None) -> torch.Tensor:
        """``(I + alpha Phi^H Phi)^-1 (x + step)`` with ``step = alpha Phi^H y`` (``x = None``:
        zero; ``alpha`` default :attr:`alpha`), by conjugate gradients started at ``x``."""
        alpha = self.alpha if alpha is None else alpha
        start = torch.zeros_like(step) if x is None else x
        return conjugate_gradient(lambda v: v + alpha * op.normal(v), start + step, start,
                                  self.cg_iterations, len(op.ishape) - 1)

    def forward(self, y: torch.Tensor, op: Operator, return_iterates: bool = False,
                noise: torch.Tensor | None = None):
        """Reconstruct from measurement ``y`` (already normalised).

        Args:
            y: measurement, the shape ``op.forward`` produces (e.g. ``[batch, y, x]`` k-space).
            op: the forward operator Phi.
            return_iterates: also return ``[x_1, ..., x_T]``.
            noise: the noise std per k-space sample of each problem ``[batch]`` in the units of
                ``y`` (used by ``final_noise`` and ``noise_input`` models only; ``None``:
                noiseless).

        Returns:
            ``x_T`` complex ``[batch, y, x]`` (:meth:`finish`), or the list of all iterates.
        """
        iterates = [x for _, x in self.iterate(y, op, noise=noise)]
        iterates[-1] = self.finish(iterates[-1], y, op, noise)
        return iterates if return_iterates else iterates[-1]

    def final_alpha(self, noise: torch.Tensor | None = None) -> torch.Tensor:
        """The final step's alpha: a scalar, or ``[batch, 1, 1]`` for a ``final_noise`` model
        given per-problem noise levels."""
        alpha = F.softplus(self.final_alpha_raw)
        if not self.final_noise or noise is None:
            return alpha
        ratio = torch.as_tensor(noise, dtype=alpha.dtype, device=alpha.device).reshape(
            -1, 1, 1) / self.final_log_sigma.exp()
        return alpha / (1 + ratio * ratio)

    def finish(self, x: torch.Tensor, y: torch.Tensor, op: Operator,
               noise: torch.Tensor | None = None) -> torch.Tensor:
        """The output from the last iterate: with ``final_dc`` its implicit data-consistency
        step (its own alpha, following ``noise`` with ``final_noise``), else ``x`` itself; 0
        outside the operator's support (:attr:`~npgd_recon.core.operators.Operator.support`:
        pixels no coil sees, where the proximal would leave what it painted and no data step
        removes it)."""
        if self.final_dc:
            alpha = self.final_alpha(noise)
            if alpha.ndim and isinstance(op, SoftSenseOp):  # images [batch, set, y, x]
                alpha = alpha.unsqueeze(1)
            x = self.implicit_step(x, alpha * op.adjoint(y), op, alpha)
        support = op.support
        return x if support is None else x * support


def set_proximal(prox: Callable[[torch.Tensor], torch.Tensor], op: Operator,
                 ) -> Callable[[torch.Tensor], torch.Tensor]:
    """``prox`` for ``op``'s images: itself, or for soft SENSE (:class:`~npgd_recon.core.
    operators.SoftSenseOp`, images ``[batch, set, y, x]``) applied to each set's image as an
    image of its own (``prox`` sees ``[batch * set, y, x]``). The second set holds what the
    first set's maps cannot explain (e.g. an object across the field of view's edge); a
    proximal on the first set only, leaving the others to the data steps, scored 0.13-0.38 dB
    lower on the selection set (MODEL_CARD.md, "Soft SENSE on the selection set"). The output
    is the first set's image."""
    if not isinstance(op, SoftSenseOp):
        return prox
    return lambda s: prox(s.flatten(0, 1)).unflatten(0, s.shape[:2])


def set_levels(noise: torch.Tensor | None, op: SoftSenseOp) -> torch.Tensor | None:
    """Each problem's noise level once per set, ``[batch * set]``: the levels of the images
    the proximal sees (:func:`set_proximal`)."""
    if noise is None:
        return None
    return torch.as_tensor(noise).reshape(-1).repeat_interleave(op.ishape[1])


def architecture(model: NeuralPGD) -> dict:
    """The constructor arguments that rebuild ``model`` (stored in checkpoints).

    A ResNet proximal writes no ``proximal`` key (files from before it existed mean ResNet);
    ``cg_iterations`` is written only when a step uses it, ``final_dc``, ``final_noise`` and
    ``noise_input`` and ``untied`` only when on, ``unshuffle`` only when above 1.
    """
    extra = {"cg_iterations": model.cg_iterations} if (
        model.data_consistency == "cg" or model.final_dc) else {}
    if model.final_dc:
        extra["final_dc"] = True
    if model.final_noise:
        extra["final_noise"] = True
    prox = model.prox.steps[0] if isinstance(model.prox, UntiedProximal) else model.prox
    if isinstance(prox, ProximalResNet):
        if prox.unshuffle > 1:
            extra["unshuffle"] = prox.unshuffle
        if prox.noise_input:
            extra["noise_input"] = True
        if model.untied:
            extra["untied"] = True
        return {"iterations": model.iterations, "blocks": len(prox.blocks),
                "features": prox.head.out_channels,
                "data_consistency": model.data_consistency,
                "global_skip": prox.global_skip, **extra}
    if isinstance(model.prox, ProximalUNet):
        return {"iterations": model.iterations, "blocks": model.prox.levels,
                "features": model.prox.head[0].out_channels,
                "data_consistency": model.data_consistency,
                "global_skip": model.prox.global_skip, "proximal": "unet", **extra}
    first = model.prox.convs[0]
    return {"iterations": model.iterations, "features": first.out_channels,
            "data_consistency": model.data_consistency, "global_skip": model.prox.global_skip,
            "proximal": "linear-swish", "layers": len(model.prox.convs),
            "kernel": first.kernel_size[0], **extra}

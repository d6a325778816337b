"""The networks: neural proximal gradient descent (NPGD) and the deep-ResNet baseline.

Pure ``nn.Module``s: they take a measurement and an :class:`~npgd_recon.operators.Operator` and
never read files. The state-space recursion (paper eq. 3-4), with ``x_0 = 0``::

    s_{t+1} = alpha Phi^H y + (I - alpha Phi^H Phi) x_t      (gradient step, alpha > 0 learned)
    x_{t+1} = P(s_{t+1})                                     (one proximal ResNet, shared)

``data_consistency="hard"`` fixes alpha = 1: for a Cartesian ``M F`` that step replaces the
sampled k-space of ``x_t`` by the measurement, which is what the authors' public code ran.

The proximal ``P``: 3x3 conv 2->F, K residual blocks (two 3x3 conv, each with BN and ReLU,
identity skip), then three 1x1 convs (ReLU after the first two) back to 2 channels. With
``global_skip=True`` (our default, a deviation the paper does not mention) ``P(s) = s + net(s)``,
so an untrained network is plain gradient descent and training converges faster.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from npgd_recon.operators import Operator
from npgd_recon.transforms import channels_to_complex, complex_to_channels


class ResidualBlock(nn.Module):
    """Two 3x3 conv + BN + ReLU, with an identity skip around them."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(features)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return x + F.relu(self.bn2(self.conv2(h)))


class ProximalResNet(nn.Module):
    """The proximal map P on 2-channel images ``[batch, 2, y, x]``."""

    def __init__(self, blocks: int = 1, features: int = 128, global_skip: bool = True) -> None:
        super().__init__()
        self.global_skip = global_skip
        self.head = nn.Conv2d(2, features, 3, padding=1)
        self.blocks = nn.Sequential(*(ResidualBlock(features) for _ in range(blocks)))
        self.tail = nn.Sequential(
            nn.Conv2d(features, features, 1), nn.ReLU(),
            nn.Conv2d(features, features, 1), nn.ReLU(),
            nn.Conv2d(features, 2, 1),
        )
        if global_skip:  # start as the identity: the untrained network is gradient descent
            nn.init.zeros_(self.tail[-1].weight)
            nn.init.zeros_(self.tail[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.tail(self.blocks(self.head(x)))
        return x + out if self.global_skip else out


class NeuralPGD(nn.Module):
    """Unrolled proximal gradient descent with one shared proximal ResNet.

    Args:
        iterations: T, number of unrolled iterations (T=1, K=10 is the deep-ResNet baseline).
        blocks: K, residual blocks in the proximal.
        features: F, feature maps in the proximal.
        data_consistency: ``"gradient"`` (learned alpha, the paper) or ``"hard"`` (alpha = 1).
        global_skip: add the proximal's input to its output.
        alpha_init: initial step size.
    """

    def __init__(self, iterations: int = 10, blocks: int = 1, features: int = 128,
                 data_consistency: str = "gradient", global_skip: bool = True,
                 alpha_init: float = 1.0) -> None:
        super().__init__()
        if data_consistency not in ("gradient", "hard"):
            raise ValueError(f"data_consistency must be 'gradient' or 'hard', got "
                             f"{data_consistency!r}")
        if iterations < 1 or blocks < 0 or features < 1:
            raise ValueError("iterations >= 1, blocks >= 0 and features >= 1 are required")
        self.iterations = iterations
        self.data_consistency = data_consistency
        # softplus(raw) = alpha keeps the step positive
        self.alpha_raw = nn.Parameter(torch.tensor(float(alpha_init)).expm1().log())
        self.prox = ProximalResNet(blocks, features, global_skip)

    @property
    def alpha(self) -> torch.Tensor:
        """The step size: learned and positive, or 1 with hard data consistency."""
        if self.data_consistency == "hard":
            return torch.ones((), device=self.alpha_raw.device)
        return F.softplus(self.alpha_raw)

    def proximal(self, s: torch.Tensor) -> torch.Tensor:
        """P applied to complex images ``[batch, y, x]``."""
        return channels_to_complex(self.prox(complex_to_channels(s)))

    def forward(self, y: torch.Tensor, op: Operator, return_iterates: bool = False):
        """Reconstruct from measurement ``y`` (already normalised).

        Args:
            y: measurement, the shape ``op.forward`` produces (e.g. ``[batch, y, x]`` k-space).
            op: the forward operator Phi.
            return_iterates: also return ``[x_1, ..., x_T]``.

        Returns:
            ``x_T`` complex ``[batch, y, x]``, or the list of all iterates.
        """
        alpha = self.alpha
        step = alpha * op.adjoint(y)
        x = self.proximal(step)
        iterates = [x]
        for _ in range(self.iterations - 1):
            x = self.proximal(step + x - alpha * op.normal(x))
            iterates.append(x)
        return iterates if return_iterates else x


def architecture(model: NeuralPGD) -> dict:
    """The constructor arguments that rebuild ``model`` (stored in checkpoints)."""
    return {
        "iterations": model.iterations,
        "blocks": len(model.prox.blocks),
        "features": model.prox.head.out_channels,
        "data_consistency": model.data_consistency,
        "global_skip": model.prox.global_skip,
    }

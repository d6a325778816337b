"""De-biasing (paper, Remark 1): iterate again with the proximal replaced by its linear map.

After the T trained iterations, every activation mask is frozen where the network took its last
step (at ``s_T``, the input of the proximal step that produced ``x_T``) and the proximal is
replaced by the linear part ``M_T`` of the frozen network (:mod:`npgd_recon.models.linearise`); the
offsets ``b_T`` (biases, batch-norm shifts), which play the role of the LASSO's shrinkage, are
dropped. The recursion then runs on from ``x_T``::

    x <- M_T (x + alpha Phi^H (y - Phi x))

until the relative change of every image is below ``tol`` or ``iterations`` are done. This is
de-biased LASSO's "keep the support, refit without shrinkage" for a network; whether it helps
is measured in ``docs/analysis.md``. If ``M_T (I - alpha Phi^H Phi)`` has a spectral radius
above 1 the iteration grows instead of converging: ``iterations`` bounds the damage. For the
shipped NPGD model the radius is about 1.004 (no fixed point; SSIM peaks after about 5
iterations, hence the default), for the one-pass deep ResNet about 3 (de-biasing ruins it).
"""

from __future__ import annotations

import torch

from npgd_recon.core.choices import DEFAULT_DEBIAS_ITERATIONS as DEFAULT_ITERATIONS
from npgd_recon.core.errors import NpgdError
from npgd_recon.core.operators import Operator, SoftSenseOp
from npgd_recon.models.linearise import LinearisedProximal
from npgd_recon.models.npgd import NeuralPGD, set_levels

DEFAULT_TOL = 1e-4


@torch.no_grad()
def debiased(model: NeuralPGD, y: torch.Tensor, op: Operator,
             iterations: int = DEFAULT_ITERATIONS, tol: float = DEFAULT_TOL,
             noise: torch.Tensor | None = None) -> torch.Tensor:
    """The model's reconstruction ``x_T`` de-biased by at most ``iterations`` linear steps.

    Args:
        model: the network (eval mode).
        y: measurement, normalised as the model expects.
        op: the forward operator.
        iterations: de-biasing iterations (0 returns the network's own output).
        tol: stop when ``||x_{k+1} - x_k|| / ||x_{k+1}|| < tol`` for every image.
        noise: per-problem noise levels for the model's final step and a ``noise_input``
            proximal (``NeuralPGD.forward``).

    Returns:
        complex ``[batch, y, x]`` (``[batch, set, y, x]`` for soft SENSE).
    """
    if iterations < 0:
        raise NpgdError(f"de-biasing iterations must be >= 0, got {iterations}")
    *_, (s_last, x) = model.iterate(y, op, noise=noise)
    if iterations == 0:
        return model.finish(x, y, op, noise)
    seen, level = s_last, noise  # what the proximal saw: for soft SENSE each set's image
    if isinstance(op, SoftSenseOp):
        seen, level = s_last.flatten(0, 1), set_levels(noise, op)
    linear = LinearisedProximal(model, seen, level).linear
    for _, x_next in model.iterate(y, op, x0=x, iterations=iterations, proximal=linear):
        change = (x_next - x).flatten(1).norm(dim=1) / x_next.flatten(1).norm(dim=1)
        x = x_next
        if bool((change < tol).all()):
            break
    return model.finish(x, y, op, noise)

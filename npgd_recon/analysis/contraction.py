"""Contraction analysis of the recursion (paper section 4): nRMSE, eta1, eta2 per iteration.

With ``A = I - alpha Phi^H Phi``, ``delta_t = x_t - x*`` and the proximal linearised by its
activation masks (:mod:`npgd_recon.models.linearise`):

- ``M*``: masks at the gradient step from the truth, ``g(x*; y) = x* + alpha Phi^H (y - Phi x*)``
  (where the fixed point of the recursion sits);
- ``M_t``: masks at ``s_{t+1}``, the input of the proximal step that produces ``x_{t+1}``;
- ``eta1_t = ||M* A delta_t|| / ||delta_t||``,
  ``eta2_t = ||(M_t - M*)(x* + A delta_t)|| / ||delta_t||``;
- ``remainder_t = x_{t+1} - x* - M* A delta_t - (M_t - M*)(x* + A delta_t)``, so that
  ``||x_{t+1} - x*|| <= (eta1_t + eta2_t) ||delta_t|| + ||remainder_t||`` (triangle inequality).
  It equals ``M* x* + b_t - x* + alpha M_t Phi^H (y - Phi x*)``: the offsets ``b_t`` of the frozen
  network (biases, batch-norm shifts), the gap between ``x*`` and the network's fixed point, and
  the measurement noise.
- ``eps_t = ||x_{t+1} - x*|| - (eta1_t + eta2_t) ||delta_t||``: the slack of the linear part alone
  (negative where the linear terms over-estimate the error).

Iterations are counted from ``x_0 = 0``: ``nrmse`` has ``T + 1`` entries (``t = 0..T``, the first
is 1), the per-step quantities ``T`` (step ``t -> t+1``). Everything is computed in the model's
normalised units (ratios, so the scale does not matter, but the network is not homogeneous).
"""

from __future__ import annotations

import numpy as np
import torch

from npgd_recon.core.errors import NpgdError
from npgd_recon.core.operators import Operator
from npgd_recon.models.linearise import LinearisedProximal
from npgd_recon.models.npgd import NeuralPGD

PER_STEP = ("eta1", "eta2", "eps", "remainder")


def _norm(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1).clamp_min(torch.finfo(torch.float32).tiny)


@torch.no_grad()
def contraction_curves(model: NeuralPGD, op: Operator, y: torch.Tensor,
                       x_star: torch.Tensor) -> dict[str, np.ndarray]:
    """The contraction quantities of one batch of problems.

    Args:
        model: the network (eval mode).
        op: the forward operator of the batch.
        y: measurements (normalised as the model expects).
        x_star: the true images ``[batch, y, x]`` in the same units.

    Returns:
        ``nrmse`` ``[batch, T + 1]``; ``eta1``, ``eta2``, ``eps`` (slack, relative to ``||x*||``),
        ``remainder`` (``||remainder_t|| / ||x*||``) and ``bound_holds`` ``[batch, T]``.
    """
    if model.data_consistency == "cg":
        raise NpgdError("the contraction analysis is defined for the explicit gradient step; "
                         "this model uses data_consistency = 'cg'")
    if model.untied:
        raise NpgdError("the contraction analysis is defined for one shared proximal; this "
                        "model's proximals are untied (one per iteration)")
    alpha = model.alpha

    def a(v: torch.Tensor) -> torch.Tensor:
        return v - alpha * op.normal(v)

    fixed = LinearisedProximal(model, x_star + alpha * op.adjoint(y - op.forward(x_star)))
    truth = _norm(x_star)
    x = torch.zeros_like(x_star)
    out: dict[str, list] = {"nrmse": [_norm(x - x_star) / truth], "eta1": [], "eta2": [],
                            "eps": [], "remainder": [], "bound_holds": []}
    for s, x_next in model.iterate(y, op):
        delta = x - x_star
        size = _norm(delta)
        m_star_a = fixed.linear(a(delta))
        u = x_star + a(delta)
        change = LinearisedProximal(model, s).linear(u) - fixed.linear(u)
        eta1, eta2 = _norm(m_star_a) / size, _norm(change) / size
        error = _norm(x_next - x_star)
        remainder = _norm(x_next - x_star - m_star_a - change)
        out["eta1"].append(eta1)
        out["eta2"].append(eta2)
        out["eps"].append((error - (eta1 + eta2) * size) / truth)
        out["remainder"].append(remainder / truth)
        out["bound_holds"].append(error <= (eta1 + eta2) * size + remainder * (1 + 1e-4) + 1e-7)
        out["nrmse"].append(error / truth)
        x = x_next
    return {k: torch.stack(v, dim=1).cpu().numpy() for k, v in out.items()}


def concatenate(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Curves of several batches as one batch."""
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def summarise(curves: dict[str, np.ndarray]) -> dict:
    """Mean and standard deviation over the problems, as JSON-ready lists.

    Keys ``nrmse``, ``eta1``, ``eta2``, ``eps``, ``remainder`` (means), the same with ``_std``,
    ``eta_sum_max`` (largest mean ``eta1 + eta2``), ``contractive`` (per step: mean
    ``eta1 + eta2 < 1``), ``bound_holds`` (per step: for every problem) and ``problems``.
    """
    summary: dict = {"problems": int(curves["nrmse"].shape[0])}
    for key in ("nrmse", *PER_STEP):
        summary[key] = curves[key].mean(0).tolist()
        summary[key + "_std"] = curves[key].std(0).tolist()
    total = curves["eta1"].mean(0) + curves["eta2"].mean(0)
    summary["eta_sum_max"] = float(total.max())
    summary["contractive"] = (total < 1).tolist()
    summary["bound_holds"] = curves["bound_holds"].all(0).tolist()
    return summary

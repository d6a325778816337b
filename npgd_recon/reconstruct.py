"""Reconstructors: one interface for every method, on the same problems and operators.

A batch of 2-D problems is ``kspace [n, coil, y, x]`` (centred, zeros where unsampled),
``mask [n, y, x]`` and optional coil maps ``maps [n, coil, y, x]`` (``None``: single coil, then
``coil == 1``). Every reconstructor returns complex64 images ``[n, y, x]`` in the scale and
orientation of the zero-filled adjoint ``Phi^H y``.

- ``zerofill``: ``Phi^H y``.
- ``npgd`` / ``resnet``: a trained :class:`~npgd_recon.model.NeuralPGD` with its batch norm
  folded into the convolutions and its proximal in the chosen precision
  (:mod:`npgd_recon.inference`), normalised per problem by the rule stored with its weights,
  batched on the chosen device.
- ``cswv`` / ``cstv``: ``bart pics`` through :mod:`bart_baselines` (one BART call per batch).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from bart_baselines.cs import cs_tv, cs_wavelet
from npgd_recon.checkpoint import load_checkpoint
from npgd_recon.debias import debiased
from npgd_recon.device import pick_device
from npgd_recon.inference import prepare_for_inference, resolve_precision
from npgd_recon.operators import operator_for
from npgd_recon.registry import default_weights, resolve_weights
from npgd_recon.transforms import normalise

METHODS = ("npgd", "resnet", "cswv", "cstv", "zerofill")


def _check(kspace: np.ndarray, mask: np.ndarray, maps: np.ndarray | None) -> None:
    if kspace.ndim != 4 or mask.shape != (kspace.shape[0], *kspace.shape[2:]):
        raise ValueError(f"expected kspace [n, coil, y, x] and mask [n, y, x], got "
                         f"{kspace.shape} and {mask.shape}")
    if maps is None and kspace.shape[1] != 1:
        raise ValueError("multi-coil k-space needs coil maps")


@dataclass
class Reconstructor:
    """A named method with its model (if any); call it on a batch of problems."""

    method: str
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    model: torch.nn.Module | None = None
    meta: dict = field(default_factory=dict)
    model_name: str = ""
    batch: int = 8
    lam: float | None = None
    precision: str = "fp32"
    seconds: float = 0.0
    debias: int = 0

    def __call__(self, kspace: np.ndarray, mask: np.ndarray,
                 maps: np.ndarray | None = None) -> np.ndarray:
        """Reconstruct ``[n, y, x]`` images; adds the compute time to ``self.seconds``."""
        _check(kspace, mask, maps)
        start = time.perf_counter()
        if self.method == "zerofill":
            out = operator_for(torch.from_numpy(mask), None if maps is None
                               else torch.from_numpy(maps)).adjoint(
                torch.from_numpy(self._measurement(kspace, maps))).numpy()
        elif self.method in ("cswv", "cstv"):
            solver = cs_wavelet if self.method == "cswv" else cs_tv
            out = solver(self._measurement(kspace, maps), mask.astype(np.float32), maps,
                         lam=self.lam, stack=True)
        else:
            out = np.concatenate([self._network(kspace[i:i + self.batch], mask[i:i + self.batch],
                                                None if maps is None else maps[i:i + self.batch])
                                  for i in range(0, len(kspace), self.batch)])
        self.seconds += time.perf_counter() - start
        return out.astype(np.complex64)

    @staticmethod
    def _measurement(kspace: np.ndarray, maps: np.ndarray | None) -> np.ndarray:
        return kspace[:, 0] if maps is None else kspace

    @torch.inference_mode()
    def _network(self, kspace, mask, maps) -> np.ndarray:
        y = torch.from_numpy(self._measurement(kspace, maps)).to(self.device)
        op = operator_for(torch.from_numpy(mask).to(self.device),
                          None if maps is None else torch.from_numpy(maps).to(self.device))
        y, scale = normalise(y, op, self.meta["normalisation"])
        out = (debiased(self.model, y, op, self.debias) if self.debias
               else self.model(y, op)) * scale
        return out.cpu().numpy()


def make_reconstructor(method: str, weights: str | None = None, device: str = "auto",
                       batch: int = 8, lam: float | None = None,
                       precision: str = "auto", debias: int = 0,
                       compile: bool = False) -> Reconstructor:
    """Build a reconstructor; the model (if any) is loaded once here.

    ``lam`` is the CS regularisation weight (normalised units, bart_baselines' default when
    None); ``weights`` a shipped model name or a file (the method's default when None);
    ``precision`` the networks' proximal precision (:data:`npgd_recon.inference.PRECISIONS`,
    ``"auto"``: bf16 where the device computes it natively, fp32 otherwise); ``debias`` the
    de-biasing iterations of a network method (0: none; paper Remark 1); ``compile`` runs the
    proximal through ``torch.compile`` (worth its seconds of start-up in long-lived processes
    such as ``npgd-serve``; not with de-biasing, which re-runs the network with frozen masks).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if batch < 1:
        raise ValueError(f"--batch must be at least 1, got {batch}")
    if debias < 0 or (debias and method not in ("npgd", "resnet")):
        raise ValueError(f"de-biasing needs --method npgd or resnet and iterations >= 0 "
                         f"(got {method}, {debias})")
    if compile and debias:
        raise ValueError("--compile and --debias cannot be combined")
    dev = pick_device(device)
    if method not in ("npgd", "resnet"):
        return Reconstructor(method, dev, batch=batch, lam=lam)
    name = weights or default_weights(method, dev.type)
    model, meta = load_checkpoint(resolve_weights(name), dev)
    if meta.get("operator") == "block-average-2x2":
        raise ValueError(f"model {name} is a super-resolution model; MRI needs an MRI model")
    precision = resolve_precision(precision, dev)
    return Reconstructor(method, dev, prepare_for_inference(model, precision, compile), meta,
                         name, batch, precision=precision, debias=debias)

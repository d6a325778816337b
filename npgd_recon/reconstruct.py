"""Reconstructors: one interface for every method, on the same problems and operators.

A batch of 2-D problems is ``kspace [n, coil, y, x]`` (centred, zeros where unsampled),
``mask [n, y, x]`` and optional coil maps ``maps [n, coil, y, x]`` (``None``: single coil, then
``coil == 1``). Every reconstructor returns complex64 images ``[n, y, x]`` in the scale and
orientation of the zero-filled adjoint ``Phi^H y``.

- ``zerofill``: ``Phi^H y``.
- ``npgd`` / ``resnet``: a trained :class:`~npgd_recon.model.NeuralPGD` with its batch norm
  folded into the convolutions (:mod:`npgd_recon.inference`), normalised per problem by the
  rule stored with its weights, batched on the chosen device.
- ``cswv`` / ``cstv``: ``bart pics`` through :mod:`bart_baselines` (one BART call per batch).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from bart_baselines.cs import cs_tv, cs_wavelet
from npgd_recon.checkpoint import load_checkpoint
from npgd_recon.device import pick_device
from npgd_recon.inference import prepare_for_inference
from npgd_recon.operators import operator_for
from npgd_recon.registry import default_weights, resolve_weights
from npgd_recon.transforms import normalisation_scale

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
    seconds: float = 0.0

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
        scale = normalisation_scale(op.adjoint(y), self.meta["normalisation"])
        shape = (-1,) + (1,) * (y.ndim - 1)
        out = self.model(y / scale.reshape(shape), op) * scale[:, None, None]
        return out.cpu().numpy()


def make_reconstructor(method: str, weights: str | None = None, device: str = "auto",
                       batch: int = 8, lam: float | None = None) -> Reconstructor:
    """Build a reconstructor; the model (if any) is loaded once here.

    ``lam`` is the CS regularisation weight (normalised units, bart_baselines' default when
    None); ``weights`` a shipped model name or a file (the method's default when None).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if batch < 1:
        raise ValueError(f"--batch must be at least 1, got {batch}")
    dev = pick_device(device)
    if method not in ("npgd", "resnet"):
        return Reconstructor(method, dev, batch=batch, lam=lam)
    name = weights or default_weights(method, dev.type)
    model, meta = load_checkpoint(resolve_weights(name), dev)
    return Reconstructor(method, dev, prepare_for_inference(model), meta, name, batch)

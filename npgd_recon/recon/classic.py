"""Reconstructors without a trained model: zero filling and BART's compressed sensing.

- ``zerofill``: ``Phi^H y`` through the project's operator.
- ``cswv`` / ``cstv``: ``bart pics`` with an l1-wavelet or total-variation prior through
  :mod:`bart_baselines` (one BART call per volume), ``lam`` in its normalised units; without a
  ``lam`` it follows the data's noise level (:func:`bart_baselines.cs.auto_lambda`).
"""

from __future__ import annotations

import numpy as np
import torch

from bart_baselines.cs import cs_tv, cs_wavelet
from npgd_recon.core.choices import DEFAULT_BATCH
from npgd_recon.core.device import pick_device
from npgd_recon.core.errors import NpgdError
from npgd_recon.core.operators import operator_for
from npgd_recon.recon.base import ReconOptions, Reconstructor, measurement, register

__all__ = ["ZeroFilled", "CSWavelet", "CSTotalVariation", "CompressedSensing"]


@register
class ZeroFilled(Reconstructor):
    """The zero-filled adjoint ``Phi^H y`` (coil-combined by the maps for multi-coil data)."""

    method = "zerofill"
    label = "zero-filled"

    @classmethod
    def build(cls, options: ReconOptions) -> ZeroFilled:
        return cls(pick_device(options.device), options.batch)

    def reconstruct(self, kspace, mask, maps, noise_std=None) -> np.ndarray:
        op = operator_for(torch.from_numpy(mask), None if maps is None else torch.from_numpy(maps))
        return op.output_image(op.adjoint(torch.from_numpy(measurement(kspace, maps)))).numpy()


class CompressedSensing(Reconstructor):
    """``bart pics`` with the regulariser named by ``regulariser`` (a subclass sets it)."""

    regulariser: str
    whole_volume = True

    def __init__(self, device: torch.device | None = None, batch: int = DEFAULT_BATCH,
                 lam: float | None = None) -> None:
        super().__init__(device, batch)
        if lam is not None and not lam > 0:
            raise NpgdError(f"the CS weight lambda must be positive, got {lam:g}")
        self.lam = lam

    @classmethod
    def build(cls, options: ReconOptions) -> CompressedSensing:
        return cls(pick_device(options.device), options.batch, options.lam)

    def reconstruct(self, kspace, mask, maps, noise_std=None) -> np.ndarray:
        solver = cs_wavelet if self.regulariser == "wavelet" else cs_tv
        return solver(measurement(kspace, maps), mask.astype(np.float32), maps, lam=self.lam,
                      stack=True, noise_std=noise_std)


@register
class CSWavelet(CompressedSensing):
    """CS-WV: l1 of the Daubechies-2 wavelet, FISTA (``bart pics -R W``)."""

    method = "cswv"
    label = "CS-WV"
    regulariser = "wavelet"


@register
class CSTotalVariation(CompressedSensing):
    """CS-TV: isotropic total variation, ADMM (``bart pics -R T``)."""

    method = "cstv"
    label = "CS-TV"
    regulariser = "tv"

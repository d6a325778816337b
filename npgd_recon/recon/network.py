"""Reconstructors that run a trained :class:`~npgd_recon.models.npgd.NeuralPGD`.

``npgd`` (the unrolled network) and ``resnet`` (the one-pass deep ResNet baseline) differ in
their default model, and each refuses the other's: the model's stored architecture says which
it is (:func:`~npgd_recon.models.registry.network_method`: one iteration is a deep ResNet, more
are NPGD), so that a result is never labelled with the wrong method. The model's batch norm is
folded into the convolutions and its proximal runs in the chosen precision
(:mod:`npgd_recon.models.inference`); each problem is normalised by the rule stored with the
weights and the output scaled back; problems are batched on the device: ``batch`` per call on
a GPU, and on the CPU at most as many as keep a call's largest tensor within
:data:`~npgd_recon.core.choices.CPU_CALL_BYTES` (:meth:`NetworkReconstructor.network_batch`).
De-biasing is chosen when the reconstructor is built (``ReconOptions.debias``); to compare
several iteration counts, build one reconstructor per count. With coil maps the noise level the
network is told counts the maps' model error too (``ReconOptions.map_error``;
:mod:`npgd_recon.core.map_error`), per slice.
"""

from __future__ import annotations

import numpy as np
import torch

from npgd_recon.core.choices import CPU_CALL_BYTES, DEFAULT_BATCH, MAP_ERROR_WEIGHT
from npgd_recon.core.device import pick_device
from npgd_recon.core.errors import NpgdError
from npgd_recon.core.map_error import effective_noise_std
from npgd_recon.core.operators import operator_for
from npgd_recon.core.transforms import normalise, normalised_noise
from npgd_recon.models.checkpoint import load_checkpoint, read_metadata
from npgd_recon.models.inference import prepare_for_inference, resolve_precision
from npgd_recon.models.registry import default_weights, network_method, resolve_weights
from npgd_recon.recon.base import ReconOptions, Reconstructor, measurement, register
from npgd_recon.recon.debias import debiased

__all__ = ["NetworkReconstructor", "NPGDReconstructor", "ResNetReconstructor", "weights_method"]

_KINDS = {"npgd": "an unrolled NPGD network (T > 1)", "resnet": "a one-pass deep ResNet (T = 1)"}


def weights_method(spec: str) -> str:
    """The network method (``npgd`` or ``resnet``) a shipped model name or file runs as."""
    return network_method(read_metadata(resolve_weights(spec))["architecture"])


class NetworkReconstructor(Reconstructor):
    """A trained network on batches of problems (optionally de-biased, paper Remark 1)."""

    uses_weights = True

    def __init__(self, device: torch.device, model: torch.nn.Module, meta: dict,
                 model_name: str = "", batch: int = DEFAULT_BATCH, precision: str = "fp32",
                 debias: int = 0, map_error: float = MAP_ERROR_WEIGHT) -> None:
        super().__init__(device, batch)
        if debias < 0:
            raise NpgdError(f"de-biasing iterations must be >= 0, got {debias}")
        if not map_error >= 0:
            raise NpgdError(f"the maps' error weight must be >= 0, got {map_error}")
        self.model, self.meta = model, meta
        self.model_name, self.precision, self.debias = model_name, precision, debias
        self.map_error = map_error

    @classmethod
    def build(cls, options: ReconOptions) -> NetworkReconstructor:
        if options.compile and options.debias:
            raise NpgdError("compiling the network and de-biasing cannot be combined")
        device = pick_device(options.device)
        name = options.weights or default_weights(cls.method, device.type, options.plane,
                                                  options.coils, options.map_sets)
        model, meta = load_checkpoint(resolve_weights(name), device)
        if meta.get("operator") == "block-average-2x2":
            raise NpgdError(f"model {name} is a super-resolution model; MRI needs an MRI model")
        kind = network_method(meta["architecture"])
        if kind != cls.method:
            raise NpgdError(f"model {name} is {_KINDS[kind]}, not "
                            f"{_KINDS[cls.method]} as method {cls.method} needs; run it as "
                            f"method {kind}")
        try:
            precision = resolve_precision(options.precision, device)
        except ValueError as error:  # a name or device the user chose
            raise NpgdError(str(error)) from None
        return cls(device, prepare_for_inference(model, precision, options.compile), meta, name,
                   options.batch, precision, options.debias, options.map_error)

    def reconstruct(self, kspace, mask, maps, noise_std=None) -> np.ndarray:
        levels = None
        if self.model.final_noise or self.model.noise_input:
            if noise_std is None:
                from bart_baselines.noise import estimate_noise_std
                noise_std = estimate_noise_std(kspace, mask)
            levels = effective_noise_std(kspace, mask, maps, noise_std, self.map_error)
        step = self.network_batch(kspace.shape[-2:], kspace.shape[1])
        return np.concatenate([
            self._batch(kspace[i:i + step], mask[i:i + step],
                        None if maps is None else maps[i:i + step],
                        None if levels is None else levels[i:i + step])
            for i in range(0, len(kspace), step)])

    def network_batch(self, plane: tuple[int, int], coils: int = 1) -> int:
        """Problems per network call for planes of ``plane`` pixels and ``coils`` coils:
        :attr:`batch` on a GPU; on the CPU at most as many as keep the largest tensor of a call
        (the widest proximal activation in its precision, or the complex64 coil images) within
        :data:`~npgd_recon.core.choices.CPU_CALL_BYTES`, and at least one."""
        if self.device.type != "cpu":
            return self.batch
        width = max((m.out_channels for m in self.model.modules()
                     if isinstance(m, torch.nn.Conv2d)), default=2)
        per_pixel = max(width * (4 if self.precision == "fp32" else 2), 8 * coils)
        return max(1, min(self.batch, CPU_CALL_BYTES // (plane[0] * plane[1] * per_pixel)))

    @torch.inference_mode()
    def _batch(self, kspace, mask, maps, noise_std) -> np.ndarray:
        y = torch.from_numpy(measurement(kspace, maps)).to(self.device)
        op = operator_for(torch.from_numpy(mask).to(self.device),
                          None if maps is None else torch.from_numpy(maps).to(self.device))
        y, scale = normalise(y, op, self.meta["normalisation"])
        noise = None if noise_std is None else normalised_noise(
            torch.from_numpy(noise_std).to(scale), scale)
        out = (debiased(self.model, y, op, self.debias, noise=noise) if self.debias
               else self.model(y, op, noise=noise))
        return (op.output_image(out) * scale).cpu().numpy()


@register
class NPGDReconstructor(NetworkReconstructor):
    """The unrolled proximal gradient network (default: the shipped NPGD model)."""

    method = "npgd"
    label = "NPGD"


@register
class ResNetReconstructor(NetworkReconstructor):
    """The non-recurrent deep ResNet baseline (T = 1, K = 10)."""

    method = "resnet"
    label = "deep ResNet"

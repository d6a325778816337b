"""The reconstructor interface and the registry of method names.

A batch of 2-D problems is ``kspace [n, coil, y, x]`` (centred, zeros where unsampled),
``mask [n, y, x]`` and optional coil maps ``maps [n, coil, y, x]`` (``None``: single coil, then
``coil == 1``; ``[n, set, coil, y, x]``: several sets, soft SENSE, and the first set's image is
returned). Every reconstructor returns complex64 images ``[n, y, x]`` in the scale and
orientation of the zero-filled adjoint ``Phi^H y``, in a :class:`ReconResult` that also holds
the call's compute time.

Reconstructors hold no per-call state: what a method does (device, batch, model, precision,
de-biasing, CS weight) is fixed when it is built, and every call returns its own timing, so one
object can serve several callers (the server shares one between connections) and each caller sums
its own times.

One class per method (sigpy's ``App`` pattern), registered under its name with
:func:`register`; :func:`npgd_recon.recon.methods.make_reconstructor` builds one from a name, so
no caller branches on method strings. Implementations: :mod:`npgd_recon.recon.network`
(``npgd``, ``resnet``), :mod:`npgd_recon.recon.classic` (``zerofill``, ``cswv``, ``cstv``).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from npgd_recon.core.choices import DEFAULT_BATCH, MAP_ERROR_WEIGHT, MAX_COIL_PLANES
from npgd_recon.core.errors import NpgdError

__all__ = ["Reconstructor", "ReconOptions", "ReconResult", "RECONSTRUCTORS", "register"]


@dataclass(frozen=True)
class ReconOptions:
    """What a caller may choose when building a reconstructor; each class uses what it needs.

    Attributes:
        weights: a shipped model name or a ``.safetensors`` file (network methods; None: the
            method's default model for the device).
        device: ``auto``, ``cpu`` or ``cuda``.
        batch: at most this many 2-D problems per network call (default
            :data:`~npgd_recon.core.choices.DEFAULT_BATCH`; on the CPU fewer for large planes,
            :meth:`~npgd_recon.recon.network.NetworkReconstructor.network_batch`).
        lam: CS regularisation weight in normalised units (None: the data-driven default).
        precision: network proximal precision (``auto``, ``fp32``, ``bf16``).
        debias: de-biasing iterations after the network (0: none; paper Remark 1).
        compile: run the proximal through ``torch.compile``.
        plane: the matrix ``(y, x)`` of the 2-D problems when it is known before they come (a
            read file, a stream's header): without ``weights`` the default model may depend on
            it (:func:`~npgd_recon.models.registry.default_weights`).
        coils: the problems' coil count when it is known before they come; the default model
            may depend on it too.
        map_sets: the sets of coil maps the problems will have (2: soft SENSE); the default
            model may depend on it too.
        map_error: how much of the coil maps' model error the network is told as noise
            (:mod:`npgd_recon.core.map_error`; 0: the thermal noise alone).
    """

    weights: str | None = None
    device: str = "auto"
    batch: int = DEFAULT_BATCH
    lam: float | None = None
    precision: str = "auto"
    debias: int = 0
    compile: bool = False
    plane: tuple[int, int] | None = None
    coils: int | None = None
    map_sets: int = 1
    map_error: float = MAP_ERROR_WEIGHT


@dataclass(frozen=True)
class ReconResult:
    """What one call of a :class:`Reconstructor` returns.

    Attributes:
        images: complex64 ``[n, y, x]``.
        seconds: compute time of this call (no input checks, no conversions).
    """

    images: np.ndarray
    seconds: float


class Reconstructor(ABC):
    """A named method; call it on a batch of problems.

    Class attributes say what the method is: ``method`` (registry name), ``label`` (for tables),
    ``uses_weights`` (a trained model is loaded), ``whole_volume`` (one call per volume is
    cheapest, e.g. one BART process). Instances carry ``device``, ``batch``, ``model_name`` and
    ``precision`` (empty / ``fp32`` for methods without a model), all fixed when built.
    """

    method: ClassVar[str]
    label: ClassVar[str]
    uses_weights: ClassVar[bool] = False
    whole_volume: ClassVar[bool] = False

    def __init__(self, device: torch.device | None = None, batch: int = DEFAULT_BATCH) -> None:
        if batch < 1:
            raise NpgdError(f"batch must be at least 1, got {batch}")
        self.device = device or torch.device("cpu")
        self.batch = batch
        self.model_name = ""
        self.precision = "fp32"

    @classmethod
    @abstractmethod
    def build(cls, options: ReconOptions) -> Reconstructor:
        """A ready reconstructor for ``options`` (models are loaded here, once)."""

    def __call__(self, kspace: np.ndarray, mask: np.ndarray, maps: np.ndarray | None = None,
                 noise_std: float | None = None) -> ReconResult:
        """Reconstruct ``[n, y, x]`` images, returned with the call's compute time.

        ``noise_std`` is the complex noise std per k-space sample when known (1 for prewhitened
        data); methods whose regularisation follows the noise use it, the others ignore it.
        Array-likes (a 3-D :class:`~npgd_recon.io.hybrid.HybridStack`, lazily interpolated
        maps) are made dense here: pass a batch of planes, not a whole large volume.
        """
        kspace, mask = np.asarray(kspace), np.asarray(mask)
        maps = None if maps is None else np.asarray(maps)
        _check(kspace, mask, maps)
        start = time.perf_counter()
        out = self.reconstruct(kspace, mask, maps, noise_std)
        seconds = time.perf_counter() - start
        return ReconResult(out.astype(np.complex64), seconds)

    @abstractmethod
    def reconstruct(self, kspace: np.ndarray, mask: np.ndarray, maps: np.ndarray | None,
                    noise_std: float | None = None) -> np.ndarray:
        """The method itself, on checked input (see the module docstring for shapes)."""

    def chunk(self, problems: int, coils: int = 1) -> int:
        """How many of a volume's ``problems`` (of ``coils`` coils) to pass per call: all for
        a whole-volume method, else ``batch``, and at most :data:`MAX_COIL_PLANES` coil images
        (a call's dense k-space, maps and operator temporaries scale with planes x coils)."""
        if self.whole_volume:
            return problems
        return max(1, min(self.batch, MAX_COIL_PLANES // coils))


RECONSTRUCTORS: dict[str, type[Reconstructor]] = {}


def register(cls: type[Reconstructor]) -> type[Reconstructor]:
    """Class decorator: make ``cls`` available under ``cls.method``."""
    RECONSTRUCTORS[cls.method] = cls
    return cls


def measurement(kspace: np.ndarray, maps: np.ndarray | None) -> np.ndarray:
    """The operator's measurement: ``[n, y, x]`` for a single coil, ``[n, coil, y, x]`` else."""
    return kspace[:, 0] if maps is None else kspace


def _check(kspace: np.ndarray, mask: np.ndarray, maps: np.ndarray | None) -> None:
    if kspace.ndim != 4 or mask.shape != (kspace.shape[0], *kspace.shape[2:]):
        raise NpgdError(f"expected kspace [n, coil, y, x] and mask [n, y, x], got "
                        f"{kspace.shape} and {mask.shape}")
    if maps is None and kspace.shape[1] != 1:
        raise NpgdError("multi-coil k-space needs coil maps")

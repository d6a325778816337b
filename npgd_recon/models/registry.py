"""Shipped model files (``npgd_recon/models/weights/*.safetensors``), how a model name or
file resolves to one, and which network method a model is (:func:`network_method`)."""

from __future__ import annotations

from pathlib import Path

from npgd_recon.core.errors import NpgdError

WEIGHTS_DIR = Path(__file__).parent / "weights"
GPU_DEFAULT = "npgd-t10k1"
CPU_DEFAULT = "npgd-t16k1-f32-untied"  # the CPU default; its arms below serve parts (MODEL_CARD.md)
UNTIED_T20 = "npgd-t20k1-f32-untied"  # the CPU default at 20 iterations, its starting point
SHARED_DEFAULT = "npgd-t20k1-f32-ni"  # the CPU default with the paper's one shared proximal
SMALL_DEFAULT = "npgd-t25k1-f32-small"  # the CPU default's arm for small matrices
SMALL_SINGLE = "npgd-t16k1-f32-small-untied"  # the small-matrix arm for one coil (untied)
SMALL_SINGLE_T20 = "npgd-t20k1-f32-small-untied"  # that arm at 20 iterations, its starting point
SMALL_MATRIX = 64  # the small-matrix arms serve planes whose larger side is at most this
MULTI_DEFAULT = "npgd-t20k1-f32-multi-large"  # the CPU default's arm for multi-coil larger planes
SOFT_SMALL = "npgd-t25k1-f32-soft"  # the small-matrix arm for soft SENSE (two sets of maps)
SMALL_MULTI = "npgd-t25k1-f32-small-multi-untied"  # the small-matrix arm for multi-coil, one set
RESNET_DEFAULT = "resnet-k10"
RESNET_CPU = "resnet-k10-f32"
SR_DEFAULT = "npgd-sr-faces"


def shipped_models() -> list[str]:
    """Names of the models shipped with the package."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors"))


def resolve_weights(spec: str) -> Path:
    """A shipped model name, or a path to a ``.safetensors`` file, as a path."""
    if spec in shipped_models():
        return WEIGHTS_DIR / f"{spec}.safetensors"
    path = Path(spec)
    if path.is_file():
        return path
    names = ", ".join(shipped_models()) or "none"
    raise NpgdError(f"unknown model {spec!r}: not a file and not a shipped model ({names})")


def default_weights(method: str, device_type: str, plane: tuple[int, int] | None = None,
                    coils: int | None = None, map_sets: int = 1) -> str:
    """The shipped model a network method uses when no model is named.

    ``npgd`` runs the paper-size model on CUDA when it is shipped, the CPU-fast one otherwise;
    for problems of ``plane`` pixels (when known) whose larger side is at most
    :data:`SMALL_MATRIX` the CPU-fast one is its small-matrix arm :data:`SMALL_DEFAULT`,
    fine-tuned on such matrices with coil maps estimated as at inference; with ``coils == 1``
    its single-coil small arm :data:`SMALL_SINGLE` (16 untied proximals:
    36 % fewer operations, better on its selection set); with ``coils > 1``
    its multi-coil small arm :data:`SMALL_MULTI`, fine-tuned on such problems told the maps'
    error as noise as ``npgd-recon`` tells it, or with ``map_sets = 2`` its soft-SENSE arm
    :data:`SOFT_SMALL`, fine-tuned on such problems with two sets of maps; for larger ones
    with ``coils > 1`` (when known) its multi-coil arm :data:`MULTI_DEFAULT`, fine-tuned on
    2-16 coil problems of larger planes (MODEL_CARD.md).
    ``resnet`` likewise prefers the paper-size deep ResNet on CUDA.
    """
    names = shipped_models()
    full, fast = (GPU_DEFAULT, CPU_DEFAULT) if method == "npgd" else (RESNET_DEFAULT, RESNET_CPU)
    if device_type == "cuda" and full in names:
        return full
    small = method == "npgd" and plane is not None and max(plane) <= SMALL_MATRIX
    if small and map_sets > 1 and coils is not None and coils > 1 and SOFT_SMALL in names:
        return SOFT_SMALL
    if small and map_sets == 1 and coils is not None and coils > 1 and SMALL_MULTI in names:
        return SMALL_MULTI
    if small and coils == 1 and SMALL_SINGLE in names:
        return SMALL_SINGLE
    if small and SMALL_DEFAULT in names:
        return SMALL_DEFAULT
    if method == "npgd" and coils is not None and coils > 1 and MULTI_DEFAULT in names:
        return MULTI_DEFAULT
    if fast in names:
        return fast
    if full in names:
        return full
    raise NpgdError(f"no shipped model for method {method}; name a model file")


def network_method(architecture: dict) -> str:
    """The network method a model's stored architecture (checkpoint metadata) makes:
    ``resnet`` for one pass (``iterations == 1``, the deep-ResNet baseline), ``npgd`` for an
    unrolled network (``iterations > 1``)."""
    return "resnet" if architecture.get("iterations") == 1 else "npgd"

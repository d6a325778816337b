"""Every reconstruction method by name: :data:`METHODS` and :func:`make_reconstructor`."""

from __future__ import annotations

from npgd_recon.core.errors import NpgdError
from npgd_recon.recon import classic, network  # noqa: F401  (they register their classes)
from npgd_recon.recon.base import RECONSTRUCTORS, ReconOptions, Reconstructor

__all__ = ["METHODS", "make_reconstructor", "reconstructor_class"]

METHODS: tuple[str, ...] = ("npgd", "resnet", "cswv", "cstv", "zerofill")
assert set(METHODS) == set(RECONSTRUCTORS), "METHODS must list every registered reconstructor"


def reconstructor_class(method: str) -> type[Reconstructor]:
    """The class registered under ``method``."""
    if method not in RECONSTRUCTORS:
        raise NpgdError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return RECONSTRUCTORS[method]


def make_reconstructor(method: str, weights: str | None = None, device: str = "auto",
                       batch: int = 8, lam: float | None = None, precision: str = "auto",
                       debias: int = 0, compile: bool = False) -> Reconstructor:
    """Build the reconstructor for ``method``; its model (if any) is loaded once here.

    Arguments are those of :class:`~npgd_recon.recon.base.ReconOptions`. Options a method has no
    use for are ignored, except de-biasing, which only network methods can do.
    """
    cls = reconstructor_class(method)
    if debias and not cls.uses_weights:
        raise NpgdError(f"de-biasing needs a network method (npgd or resnet), not {method}")
    return cls.build(ReconOptions(weights, device, batch, lam, precision, debias, compile))

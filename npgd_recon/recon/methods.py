"""Every reconstruction method by name: :data:`METHODS` and :func:`make_reconstructor`.

This module imports the implementations (and with them torch and BART's wrapper) only when a
reconstructor is asked for, so that command-line parsers can list the methods at no cost.
What a caller chooses travels as one :class:`~npgd_recon.recon.base.ReconOptions`::

    make_reconstructor("npgd", ReconOptions(weights="npgd-t10k1-f32", device="cpu"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from npgd_recon.core.errors import NpgdError

if TYPE_CHECKING:
    from npgd_recon.recon.base import ReconOptions, Reconstructor

__all__ = ["METHODS", "make_reconstructor", "reconstructor_class"]

METHODS: tuple[str, ...] = ("zerofill", "cswv", "cstv", "resnet", "npgd")  # comparison order


def reconstructor_class(method: str) -> type[Reconstructor]:
    """The class registered under ``method``."""
    from npgd_recon.recon import classic, network  # noqa: F401  (they register their classes)
    from npgd_recon.recon.base import RECONSTRUCTORS

    if method not in METHODS:
        raise NpgdError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return RECONSTRUCTORS[method]


def make_reconstructor(method: str, options: ReconOptions | None = None) -> Reconstructor:
    """Build the reconstructor for ``method``; its model (if any) is loaded once here.

    ``options`` (default: every default of :class:`~npgd_recon.recon.base.ReconOptions`) says
    what the caller chose; options a method has no use for are ignored, except de-biasing,
    which only network methods can do.
    """
    from npgd_recon.recon.base import ReconOptions

    cls = reconstructor_class(method)
    options = options or ReconOptions()
    if options.debias and not cls.uses_weights:
        raise NpgdError(f"de-biasing needs a network method (npgd or resnet), not {method}")
    return cls.build(options)

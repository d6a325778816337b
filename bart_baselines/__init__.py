"""Compressed-sensing baselines through the real BART binary, and BART's cfl file format."""

from bart_baselines.cfl import readcfl, writecfl

__all__ = ["readcfl", "writecfl"]

"""Smooth random phase maps, which make magnitude images into plausible complex MR images."""

from __future__ import annotations

import numpy as np

__all__ = ["random_phase", "smooth_phase"]


def smooth_phase(shape: tuple[int, ...], seed: int = 0, strength: float = np.pi) -> np.ndarray:
    """A smooth random phase map (radians) over the last two axes: a few low-frequency cosines."""
    rng = np.random.default_rng(seed)
    y, x = np.meshgrid(np.linspace(-1, 1, shape[-2]), np.linspace(-1, 1, shape[-1]),
                       indexing="ij")
    phase = np.zeros(shape[-2:])
    for _ in range(4):
        fy, fx = rng.uniform(-1.0, 1.0, 2)
        phase += rng.normal() * np.cos(np.pi * (fy * y + fx * x) + rng.uniform(0, 2 * np.pi))
    phase *= strength / max(np.abs(phase).max(), 1e-12)
    return np.broadcast_to(phase, shape).astype(np.float32)


def random_phase(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """``exp(i phi)`` of a random smooth phase map, up to +-pi
    (:func:`smooth_phase`)."""
    seed = int(rng.integers(2**31))
    return np.exp(1j * smooth_phase(shape, seed=seed, strength=rng.uniform(0.2, 1.0) * np.pi))

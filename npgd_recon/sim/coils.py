"""Synthetic receive coils: smooth birdcage-like sensitivities and a correlated noise covariance.

Not to be confused with :func:`npgd_recon.recon.pipeline.espirit_coil_maps`, which estimates
sensitivities from measured data with BART's ESPIRiT.
"""

from __future__ import annotations

import numpy as np

__all__ = ["synthetic_coil_maps", "coil_noise_covariance"]


def synthetic_coil_maps(coils: int, shape: tuple[int, ...], oversampling: int = 1,
                        select: range | None = None) -> np.ndarray:
    """Birdcage-like smooth sensitivities ``[coil, *shape[:-1], nx * oversampling]``.

    Coils sit on a ring around the object in the y-x plane (3-D: alternately above and below
    the centre in z), Gaussian magnitude, each with its own linear phase; normalised so
    ``sum_c |S_c|^2 = 1`` everywhere. The object spans ``[-1, 1]`` along every axis; along x
    the maps continue over the oversampled field of view. ``select``: only these coils (still
    normalised over all ``coils``), so that a large array can be built a few coils at a time.
    """
    nx = shape[-1] * oversampling
    axes = [(np.arange(n) - n // 2) / (n / 2) for n in shape[:-1]]
    axes.append((np.arange(nx) - nx // 2) / (shape[-1] / 2))
    grid = np.meshgrid(*axes, indexing="ij", sparse=True)  # broadcast, never full-size copies
    full = tuple(len(a) for a in axes)
    picked = range(coils) if select is None else select
    if coils == 1:
        return np.ones((len(picked),) + full, dtype=np.complex64)

    def exponent(c: int) -> np.ndarray:
        """``log S_c`` before normalisation: a Gaussian in magnitude, a linear phase."""
        angle = 2 * np.pi * c / coils
        y, x = grid[-2], grid[-1]
        distance = (y - 1.3 * np.sin(angle)) ** 2 + (x - 1.3 * np.cos(angle)) ** 2
        if len(shape) == 3:
            distance = distance + (grid[0] - (0.5 if c % 2 else -0.5)) ** 2
        phase = angle + 0.6 * (np.cos(angle) * y - np.sin(angle) * x)
        return -distance / 2.0 + 1j * phase

    power = np.zeros(full)
    for c in range(coils):
        power += np.exp(2 * exponent(c).real)  # |S_c|^2
    maps = np.empty((len(picked),) + full, dtype=np.complex64)
    for i, c in enumerate(picked):
        maps[i] = np.exp(exponent(c)) / np.sqrt(power)
    return maps

def coil_noise_covariance(coils: int, seed: int = 0) -> np.ndarray:
    """Correlated coil-noise covariance ``Psi = D C D``: gains 0.7-1.3, correlation 0.5^|i-j|."""
    gains = np.random.default_rng(seed).uniform(0.7, 1.3, coils)
    index = np.arange(coils)
    correlation = 0.5 ** np.abs(index[:, None] - index[None, :])
    return (gains[:, None] * correlation * gains[None, :]).astype(np.complex128)

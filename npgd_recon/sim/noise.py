"""Complex Gaussian measurement noise, the one way every simulation and dataset makes it.

``complex_noise(rng, shape, std)`` draws circularly symmetric noise with ``E|n|^2 = std^2`` per
sample (real and imaginary parts each of variance ``std^2 / 2``; real parts drawn first, then
imaginary). With ``covariance`` (``[coil, coil]``, Hermitian positive definite) the noise is
correlated over the first axis: ``n = std * L w`` with ``L L^H = covariance``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["complex_noise"]


def complex_noise(rng: np.random.Generator, shape: tuple[int, ...], std: float | np.ndarray,
                  covariance: np.ndarray | None = None) -> np.ndarray:
    """Complex128 noise of ``shape``; ``std`` may broadcast against ``shape``."""
    white = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2)
    if covariance is not None:
        white = np.tensordot(np.linalg.cholesky(covariance), white, axes=(1, 0))
    return std * white

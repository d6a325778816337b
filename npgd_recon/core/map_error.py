"""The coil maps' model error, told to the network as noise.

SENSE with one set of ESPIRiT maps assumes every coil image is its map times one image. Where
the object fills or overfills the field of view that fails (the coils' images wrap, no smooth
map follows them: MODEL_CARD.md, "Why the 8-coil MR_small loses"), and data consistency then
pushes into the image what the maps cannot hold. CS with lambda tuned on the truth answers with
a larger lambda; the network, whose noise input and final data-consistency step follow the noise
level it is told, answers the same way if that level counts the maps' error as noise.

The error is measured on the fully sampled calibration centre (the box of
:func:`bart_baselines.noise.centre_box`), per slice: its coil images minus their projection on
the maps' span at every pixel (``sum_m S_m S_m^H c / |S_m|^2``: ESPIRiT's sets are orthogonal),
back in k-space on the box. The images are taken on a grid twice the box's size (the box's
k-space zero-padded; the smooth maps sampled at that grid's pixels), which holds the products
of the box's band with the maps' and costs a few milliseconds per slice whatever the matrix.
What is left is the error plus the noise's share outside the span, about ``(coils - sets) /
coils`` of the box's noise energy, which is subtracted. Its fraction ``rho`` of the box's
signal energy, spread over every sampled value the way the signal is, gives the effective level

    sigma_eff^2 = sigma^2 + weight * rho * (||y||^2 - m sigma^2) / m

(``y`` the slice's ``m`` sampled values). One coil, no maps, or no fully sampled centre:
``rho = 0`` and ``sigma`` is unchanged. ``weight``
(:data:`~npgd_recon.core.choices.MAP_ERROR_WEIGHT`) was chosen on the selection volumes
(``benchmarks/map_error.py``; MODEL_CARD.md, "The maps' error as noise").
"""

from __future__ import annotations

import numpy as np

from bart_baselines.noise import centre_box
from npgd_recon.core.choices import MAP_ERROR_WEIGHT
from npgd_recon.core.fft import fft2c, ifft2c

__all__ = ["map_error_fraction", "effective_noise_std"]


def map_error_fraction(kspace: np.ndarray, mask: np.ndarray, maps: np.ndarray,
                       noise_std: float) -> np.ndarray:
    """``rho`` per slice ``[n]``: the calibration centre's energy outside the maps' span,
    less the noise's share there, over its signal energy (0 where there is no centre).

    Args:
        kspace: ``[n, coil, y, x]``, zeros where unsampled.
        mask: ``[n, y, x]``.
        maps: ``[n, coil, y, x]`` or ``[n, set, coil, y, x]``.
        noise_std: complex noise std per k-space sample.
    """
    maps = maps[:, None] if maps.ndim == 4 else maps
    rho = np.zeros(len(kspace))
    for i, (k, m, s) in enumerate(zip(kspace, mask, maps)):
        coils, (ny, nx) = k.shape[0], m.shape
        hy, hx = centre_box(m > 0)
        if coils <= s.shape[0] or hy == 0:
            continue
        gy, gx = min(ny, 4 * hy), min(nx, 4 * hx)
        box = (slice(gy // 2 - hy, gy // 2 + hy), slice(gx // 2 - hx, gx // 2 + hx))
        centre = np.zeros((coils, gy, gx), np.complex64)
        centre[:, box[0], box[1]] = k[:, ny // 2 - hy:ny // 2 + hy, nx // 2 - hx:nx // 2 + hx]
        images = ifft2c(centre)
        s = s[:, :, _grid(ny, gy)[:, None], _grid(nx, gx)]
        power = np.maximum((np.abs(s) ** 2).sum(axis=1, keepdims=True), 1e-12)
        span = (s * ((s.conj() * images[None]).sum(axis=1, keepdims=True) / power)).sum(axis=0)
        outside = (np.abs(fft2c(images - span)[:, box[0], box[1]]) ** 2).sum()
        count = 4 * hy * hx
        error = outside - count * (coils - s.shape[0]) * noise_std ** 2
        signal = (np.abs(centre) ** 2).sum() - count * coils * noise_std ** 2
        rho[i] = max(error, 0.0) / signal if signal > 0 else 0.0
    return rho


def _grid(full: int, coarse: int) -> np.ndarray:
    """The pixels of a ``full``-pixel axis nearest those of the same field of view on
    ``coarse`` pixels (centred FFT convention: pixel ``n // 2`` is the centre)."""
    return (np.round((np.arange(coarse) - coarse // 2) * full / coarse).astype(int)
            + full // 2) % full


def effective_noise_std(kspace: np.ndarray, mask: np.ndarray, maps: np.ndarray | None,
                        noise_std: float, weight: float = MAP_ERROR_WEIGHT) -> np.ndarray:
    """The noise std per slice ``[n]`` with the maps' error counted (module docstring);
    ``noise_std`` for every slice where ``maps`` is None or ``weight`` is 0."""
    levels = np.full(len(kspace), float(noise_std))
    if maps is None or weight == 0:
        return levels
    rho = map_error_fraction(kspace, mask, maps, noise_std)
    sampled = mask.reshape(len(mask), -1).sum(axis=1) * kspace.shape[1]
    energy = (np.abs(kspace.reshape(len(kspace), -1)) ** 2).sum(axis=1)
    signal = np.maximum(energy - sampled * noise_std ** 2, 0.0) / np.maximum(sampled, 1)
    return np.sqrt(levels ** 2 + weight * rho * signal)

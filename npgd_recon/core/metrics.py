"""Image-quality metrics, with the definitions quoted next to every published table.

Let ``x*`` be the reference and ``x`` the estimate (one image ``[y, x]``, or a stack
``[..., y, x]``, in which case every metric returns one value per image).

- SNR (dB)  = 20 log10(||x*|| / ||x* - x||)
- PSNR (dB) = 20 log10(max|x*| / RMSE),  RMSE = sqrt(mean |x* - x|^2)
- NRMSE     = ||x* - x|| / ||x*||
- SSIM      = skimage ``structural_similarity`` on magnitudes, 7x7 window,
              ``data_range = max|x*|``

``*_complex`` variants (SNR, NRMSE) compare the complex images themselves; ``*_magnitude``
variants compare ``|x*|`` and ``|x|`` (phase ignored); PSNR and SSIM exist for magnitudes only.
Torch tensors are accepted and moved to the CPU.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity


def _pair(reference, estimate, magnitude: bool) -> tuple[np.ndarray, np.ndarray]:
    ref, est = (np.asarray(a.detach().cpu() if hasattr(a, "detach") else a)
                for a in (reference, estimate))
    if ref.shape != est.shape:
        raise ValueError(f"reference {ref.shape} and estimate {est.shape} differ in shape")
    if ref.ndim < 2:
        raise ValueError(f"metrics need images [..., y, x], got shape {ref.shape}")
    if magnitude:
        ref, est = np.abs(ref), np.abs(est)
    return ref.astype(np.complex128 if np.iscomplexobj(ref) else np.float64), est


def _per_image(values: np.ndarray):
    return float(values) if values.ndim == 0 else values


def _norms(reference, estimate, magnitude: bool) -> tuple[np.ndarray, np.ndarray]:
    ref, est = _pair(reference, estimate, magnitude)
    signal = np.sqrt(np.sum(np.abs(ref) ** 2, axis=(-2, -1)))
    error = np.sqrt(np.sum(np.abs(ref - est) ** 2, axis=(-2, -1)))
    return signal, error


def _snr(reference, estimate, magnitude: bool):
    signal, error = _norms(reference, estimate, magnitude)
    with np.errstate(divide="ignore"):
        return _per_image(20 * np.log10(signal / error))


def _nrmse(reference, estimate, magnitude: bool):
    signal, error = _norms(reference, estimate, magnitude)
    return _per_image(error / signal)


def snr_db_complex(reference, estimate):
    """SNR in dB between complex images."""
    return _snr(reference, estimate, magnitude=False)


def snr_db_magnitude(reference, estimate):
    """SNR in dB between magnitude images."""
    return _snr(reference, estimate, magnitude=True)


def psnr_db_magnitude(reference, estimate):
    """PSNR in dB between magnitude images, peak ``max|x*|``."""
    ref, est = _pair(reference, estimate, magnitude=True)
    peak = ref.max(axis=(-2, -1))
    rmse = np.sqrt(np.mean((ref - est) ** 2, axis=(-2, -1)))
    with np.errstate(divide="ignore"):
        return _per_image(20 * np.log10(peak / rmse))


def nrmse_complex(reference, estimate):
    """Normalised RMSE between complex images."""
    return _nrmse(reference, estimate, magnitude=False)


def nrmse_magnitude(reference, estimate):
    """Normalised RMSE between magnitude images."""
    return _nrmse(reference, estimate, magnitude=True)


def ssim_magnitude(reference, estimate):
    """SSIM of magnitude images (7x7 window, data_range = max|x*|)."""
    ref, est = _pair(reference, estimate, magnitude=True)
    ref2 = ref.reshape(-1, *ref.shape[-2:])
    est2 = est.reshape(-1, *est.shape[-2:])
    values = np.array([
        structural_similarity(r, e, data_range=float(r.max()) or 1.0)
        for r, e in zip(ref2, est2)
    ]).reshape(ref.shape[:-2])
    return _per_image(values)


def all_metrics(reference, estimate) -> dict[str, float]:
    """The headline numbers for one image, all on magnitudes (what DICOM stores and readers
    see): SNR, PSNR, SSIM and NRMSE."""
    return {
        "snr_db": float(snr_db_magnitude(reference, estimate)),
        "psnr_db": float(psnr_db_magnitude(reference, estimate)),
        "ssim": float(ssim_magnitude(reference, estimate)),
        "nrmse": float(nrmse_magnitude(reference, estimate)),
    }

"""The k-space noise level of undersampled data, from the data alone (no noise readouts).

:func:`estimate_noise_std` is what the automatic CS lambda (:func:`bart_baselines.cs.auto_lambda`)
is given when a scan has no noise-calibration readouts: the smaller of two estimates, one from
the null space of the fully sampled centre's calibration matrix (multi-coil), one from the
outermost sampled k-space (what single-coil data get). Calibrated and checked in
``benchmarks/cs_lambda.py`` (``docs/bart_baselines.md``).
"""

from __future__ import annotations

import numpy as np

OUTER_RADIUS = 0.8
MIN_NOISE_SAMPLES = 64
CALIB_KERNEL = 5
CALIB_MAX_HALF = 16
CALIB_TAIL = 0.25
CALIB_DRAWS = 2
CALIB_MAX_SLICES = 8
MIN_CALIB_VALUES = 16


def _outer_noise_std(kspace: np.ndarray, mask: np.ndarray) -> float:
    """Median magnitude of the outermost sampled k-space over ``sqrt(ln 2)`` (see
    :func:`estimate_noise_std`); signal there biases it up."""
    ny, nx = mask.shape[-2:]
    y, x = np.meshgrid((np.arange(ny) - ny // 2) / (ny / 2), (np.arange(nx) - nx // 2) / (nx / 2),
                       indexing="ij")
    radius = np.broadcast_to(np.hypot(y, x), mask.shape)
    sampled = mask > 0
    outer = sampled & (radius > OUTER_RADIUS)
    if outer.sum() * kspace.shape[1] < MIN_NOISE_SAMPLES:
        outer = sampled & (radius >= np.quantile(radius[sampled], 0.9))
    values = np.abs(np.moveaxis(kspace, 1, -1)[outer])
    return float(np.median(values) / np.sqrt(np.log(2.0))) if values.size else np.inf


def centre_box(mask: np.ndarray) -> tuple[int, int]:
    """Half sizes ``(hy, hx)`` of the largest fully sampled box centred on k-space's centre in
    a ``[y, x]`` mask (each at most ``CALIB_MAX_HALF``)."""
    ny, nx = mask.shape
    cy, cx = ny // 2, nx // 2
    best = (0, 0)
    for hy in range(1, min(cy, CALIB_MAX_HALF) + 1):
        hx = 0
        while hx < min(cx, CALIB_MAX_HALF) and mask[cy - hy:cy + hy, cx - hx - 1:cx + hx + 1].all():
            hx += 1
        if hx == 0:
            break
        if hy * hx > best[0] * best[1]:
            best = (hy, hx)
    return best


def _hankel(box: np.ndarray, kernel: int) -> np.ndarray:
    """Calibration matrix of ``[coil, y, x]`` (complex128): one row per ``kernel`` square
    patch, columns coil-major (coil, then the patch's samples)."""
    patches = np.lib.stride_tricks.sliding_window_view(box, (kernel, kernel), axis=(1, 2))
    return patches.transpose(1, 2, 0, 3, 4).reshape(-1, box.shape[0] * kernel ** 2).astype(
        np.complex128)


def _kernel_size(box_shape: tuple[int, int, int]) -> int | None:
    """The largest patch size up to ``CALIB_KERNEL`` (at least 3) whose calibration matrix has
    at least as many rows as columns and ``MIN_CALIB_VALUES`` columns; None if there is none."""
    coils, ny, nx = box_shape
    for kernel in range(CALIB_KERNEL, 2, -1):
        rows, columns = (ny - kernel + 1) * (nx - kernel + 1), coils * kernel ** 2
        if ny > kernel and nx > kernel and rows >= columns >= MIN_CALIB_VALUES:
            return kernel
    return None


def _singular_values(matrix: np.ndarray) -> np.ndarray:
    """Singular values (descending) of a matrix with at least as many rows as columns, from the
    eigenvalues of its Gram matrix (complex128 keeps the small ones): on a busy machine
    multi-threaded OpenBLAS takes seconds for LAPACK's SVD of a 400x200 matrix, milliseconds
    for this."""
    return np.sqrt(np.clip(np.linalg.eigvalsh(matrix.conj().T @ matrix)[::-1], 0.0, None))


def _null_space_noise(data: np.ndarray, noises: list[np.ndarray]) -> tuple[float, np.ndarray]:
    """``sigma`` of white noise in ``data`` (rows >= columns) whose signal part is nearly low
    rank, and the signal subspace (right singular vectors, columns) it was found with.

    ``noises`` is the same matrix built from unit white noise. The smallest ``CALIB_TAIL`` of
    the singular values over the same of unit noise give a first estimate; then, twice, the
    signal rank ``r`` (singular values above the unit-noise spectrum's top times the estimate)
    is projected out of the noise matrices (data's top ``r`` left and right singular vectors)
    and the smaller half of the remaining ``n - r`` data singular values over theirs gives the
    estimate (without it, the estimate rises with the rank: 1.3x on a 4-coil phantom)."""
    values, right = np.linalg.eigh(data.conj().T @ data)
    values, right = np.sqrt(np.clip(values[::-1], 0.0, None)), right[:, ::-1]
    reference = np.mean([_singular_values(n) for n in noises], axis=0)
    n = values.size
    tail = max(1, int(n * CALIB_TAIL))
    sigma = float(np.median(values[-tail:] / reference[-tail:]))
    rank = 0
    for _ in range(2):
        new_rank = int(np.sum(values > sigma * reference[0]))
        if new_rank == rank or new_rank > n - MIN_CALIB_VALUES // 2:
            break
        rank = new_rank
        v = right[:, :rank]
        u = data @ v / values[:rank]
        projected = []
        for noise in noises:
            rest = noise - u @ (u.conj().T @ noise)
            projected.append(_singular_values(rest - (rest @ v) @ v.conj().T)[:n - rank])
        remaining = values[rank:] / np.mean(projected, axis=0)
        sigma = float(np.median(remaining[remaining.size // 2:]))
    return sigma, right[:, :rank]


def _coil_whitening(data: np.ndarray, signal: np.ndarray, coils: int) -> np.ndarray:
    """A coil mixing ``W`` ``[coil, coil]`` that whitens the noise of calibration matrix
    ``data`` and keeps its mean variance (``W Psi W^H = tr(Psi) / coils I``).

    The coil noise covariance ``Psi`` is the least-squares fit of ``P (Psi kron I) P`` to the
    covariance of ``data P``, ``P`` the projection off the ``signal`` subspace."""
    n = data.shape[1]
    block = n // coils
    projection = np.eye(n) - signal @ signal.conj().T
    residual = data @ projection
    covariance = (residual.conj().T @ residual / residual.shape[0]).reshape(coils, block, coils,
                                                                          block)
    blocks = projection.reshape(coils, block, coils, block)
    # <P (E_ab kron I) P, P (E_cd kron I) P> = tr(P_ac P_db); <P (E_ab kron I) P, S> = tr(S_ab)
    gram = np.einsum("aicj,djbi->abcd", blocks, blocks).reshape(coils ** 2, coils ** 2)
    psi = np.linalg.lstsq(gram, np.einsum("aibi->ab", covariance).reshape(-1), rcond=None)[0]
    psi = psi.reshape(coils, coils)
    values, vectors = np.linalg.eigh((psi + psi.conj().T) / 2)
    values = np.clip(values, values.max() * 1e-3, None) if values.max() > 0 else np.ones(coils)
    return (vectors / np.sqrt(values / values.mean())) @ vectors.conj().T


def _calibration_noise_std(kspace: np.ndarray, mask: np.ndarray) -> float:
    """Noise std from the null space of the calibration matrix (see :func:`estimate_noise_std`);
    inf where no slice has a large enough fully sampled centre."""
    estimates = []
    chosen = np.unique(np.linspace(0, len(kspace) - 1, min(len(kspace), CALIB_MAX_SLICES))
                       .round().astype(int))
    for k, m in zip(kspace[chosen], mask[chosen]):
        hy, hx = centre_box(m > 0)
        ny, nx = m.shape
        box = k[:, ny // 2 - hy:ny // 2 + hy, nx // 2 - hx:nx // 2 + hx]
        kernel = _kernel_size(box.shape)
        if kernel is None:
            continue
        rng = np.random.default_rng(0)
        noises = [_hankel((rng.standard_normal(box.shape) + 1j * rng.standard_normal(box.shape))
                          / np.sqrt(2), kernel) for _ in range(CALIB_DRAWS)]
        data = _hankel(box, kernel)
        sigma, signal = _null_space_noise(data, noises)
        coils = box.shape[0]
        if coils > 1 and sigma > 0 and signal.shape[1] < data.shape[1] - MIN_CALIB_VALUES // 2:
            mixing = _coil_whitening(data, signal, coils)
            sigma, _ = _null_space_noise(_hankel(np.einsum("ab,byx->ayx", mixing, box), kernel),
                                         noises)
        estimates.append(sigma)
    return float(np.median(estimates)) if estimates else np.inf


def estimate_noise_std(kspace: np.ndarray, mask: np.ndarray) -> float:
    """Complex noise standard deviation per k-space sample, from the data alone.

    Two estimates, each biased up by signal it takes for noise; the smaller is returned.

    - Calibration null space (separates noise from signal with several coils): the largest
      fully sampled box centred in k-space (per slice, at most ``2 CALIB_MAX_HALF`` a side, up
      to ``CALIB_MAX_SLICES`` slices spread over a stack) gives the calibration matrix of
      ESPIRiT / GRAPPA, every ``CALIB_KERNEL`` square patch of every coil as a row (a smaller
      patch while there would be fewer rows than columns). Smooth coil maps and a finite
      object make its signal part nearly low rank, so its small singular values hold noise
      alone; :func:`_null_space_noise` compares them with the same matrix built from white
      noise, the signal subspace projected out of both. Correlated coil noise would read low
      (0.65-0.75 of the coils' mean std in ``benchmarks/cs_lambda.py``: the null space sees the
      quieter coil combinations), so the coil noise covariance is fitted on the null space
      (:func:`_coil_whitening`), the box's coils whitened and the estimate repeated: the mean
      coil std within 6 % there (0.1-5 % noise), 0.87-0.92 of it on a 4-coil test phantom
      with strongly correlated coils. Noiseless data read next to nothing: below 1e-3 of the
      1 % noise level on the test phantom, 0 in the benchmark. Median over slices.
    - Outer k-space: the median magnitude of the outermost sampled k-space (radius above
      ``OUTER_RADIUS`` of the inscribed ellipse, every coil and slice), divided by
      ``sqrt(ln 2)`` (the median of a complex Gaussian's magnitude is ``sigma sqrt(ln 2)``).
      When fewer than ``MIN_NOISE_SAMPLES`` samples lie there, the outer tenth of the sampled
      radii is used. Sharp edges and texture put signal there: 1.3-11x the noise of the 1 %
      noisy phantoms and brain slices of the benchmark. With a single coil the calibration
      matrix has next to no null space, so this one is returned there.

    Args:
        kspace: ``[slice, coil, y, x]``, zeros where unsampled.
        mask: ``[slice, y, x]``, 1 where sampled.
    """
    estimate = min(_outer_noise_std(kspace, mask), _calibration_noise_std(kspace, mask))
    return estimate if np.isfinite(estimate) else 0.0

"""Volumetric ESPIRiT coil maps: one ``bart ecalib`` for a whole 3-D scan (issue 28).

A 3-D scan reaches the reconstruction as a hybrid-space stack ``[n, coil, y, x]``: its fully
sampled readout already inverse-FFT'd (``n`` readout positions), ``y`` and ``x`` the two
phase-encode directions in centred k-space, one mask for every plane. Per-plane maps
(:func:`bart_baselines.cs.espirit_maps` with ``stack=True``, one ``ecalib`` per plane) cost
most of a 3-D reconstruction; :func:`espirit_maps_volume` calibrates once, in 3-D:

1. Readout back to k-space: zero-pad the stack to ``READOUT_PADDING * n`` positions along
   ``n`` (centred; at least four readout kernels), then the centred orthonormal FFT along ``n``,
   ``fftshift(fft(ifftshift(h), norm="ortho"))`` (the inverse of the reader's transform).
   ESPIRiT's kernels are convolutions, so its field of view is periodic; an object that fills
   the readout field of view (no readout oversampling) would wrap, and the maps would be
   wrong (subspace agreement with per-plane maps 0.41-0.96 on the test's planes instead of
   0.999). The padding is a 2x readout oversampling that keeps the object off the edges.
2. Only the k-space centre, at most ``grid`` samples per axis (never fewer than the
   calibration region), goes to BART: maps on a coarse grid over the same field of view.
   ESPIRiT's maps are smooth by construction (kernels of a few k-space samples), while
   ``ecalib`` spends its time on the calibration matrix (rows x columns^2, columns =
   kernel volume x coils) and on one eigen-decomposition per voxel.
3. ``bart ecalib -m 1 -c 0 -k kernel -r calib`` with its eigenvalue maps. BART dims 0, 1, 2 =
   readout, ``y``, ``x``; coils dim 3. ``-c 0`` keeps the maps everywhere so that they can be
   interpolated without a hard edge; the eigenvalue (about 1 where the object is) says where
   they hold.
4. Linear interpolation along each axis (periodic, as the grid is) of maps and eigenvalues to
   the full grid, the central ``n`` readout positions kept, maps renormalised to unit norm
   over coils and set to zero where the interpolated eigenvalue is below ``crop``. This step
   runs when planes are asked for: :func:`calibrate_volume` returns a :class:`VolumeMaps` that
   keeps the coarse grid and interpolates the planes it is indexed with, so a reconstruction
   walking the planes in batches never holds the full maps (5.4 GB for 32 coils at
   320x256x256); :func:`espirit_maps_volume` returns them all as one array.

Defaults, from ``benchmarks/coil_maps.py`` (docs/bart_baselines.md): kernel ``(2, 6, 6)``, BART's
in-plane 6 and the shortest readout kernel (2 samples of the padded readout), calibration at
most ``(8, 20, 20)``, grid 32, crop 0.9. In-plane kernels of 5 or 6 matter (4x4x4 lost 1 dB of
CS-WV SNR); BART's 6x6x6 costs a minute in the calibration matrix alone. The crop is above
BART's 0.8 because the 3-D eigenvalue falls off more slowly at the object's edge: at 0.8 the
support is 0.94 of the volume against 0.77 per plane, at 0.9 it is 0.87 and still holds the
whole object.

Conventions as the per-plane maps: ``[n, coil, y, x]`` complex64, ``sum_c |S_c|^2 = 1`` inside
the support and 0 outside, phase relative to BART's first principal component (one rotation for
the volume instead of one per plane; ESPIRiT maps are defined up to a phase per voxel, which
the SENSE-combined image's magnitude does not see). Plane ``i`` of the maps belongs to plane
``i`` of the stack.
"""

from __future__ import annotations

import numpy as np

from bart_baselines.runner import BartInputError, run_bart

READOUT_PADDING = 2
KERNEL = (2, 6, 6)
CALIB = (8, 20, 20)
GRID = 32
CROP = 0.9


def _calibration_box(sampled: np.ndarray) -> tuple[int, int]:
    """Side lengths of a fully sampled box around k-space's centre in a ``[y, x]`` mask, grown
    one row or column at a time, on any side, while it stays fully sampled."""
    box = [[n // 2, n // 2 + 1] for n in sampled.shape]  # [start, stop) per axis
    if not sampled[box[0][0], box[1][0]]:
        return 0, 0
    grown = True
    while grown:
        grown = False
        for axis in (0, 1):
            for end, step in ((0, -1), (1, 1)):
                trial = [list(bounds) for bounds in box]
                trial[axis][end] += step
                (y0, y1), (x0, x1) = trial
                inside = min(y0, x0) >= 0 and y1 <= sampled.shape[0] and x1 <= sampled.shape[1]
                if inside and sampled[y0:y1, x0:x1].all():
                    box, grown = trial, True
    return box[0][1] - box[0][0], box[1][1] - box[1][0]


def ifft2c(kspace: np.ndarray) -> np.ndarray:
    """Centred orthonormal inverse FFT over the last two axes (the project's convention)."""
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=axes), axes=axes,
                                        norm="ortho"), axes=axes)


def espirit_kernel(sampled: np.ndarray) -> int:
    """The largest in-plane ESPIRiT kernel (``ecalib -k``) to try for a ``[y, x]`` sampling
    pattern: BART's 6, or half the fully sampled centre's shorter side when that is smaller
    (at least 3). :func:`~bart_baselines.cs.espirit_maps` steps down from it while the maps lose
    part of the object (:func:`object_kept`)."""
    return int(np.clip(min(_calibration_box(sampled)) // 2, 3, 6))


OBJECT_KEPT = 0.999  # the share of the calibration image's energy that maps must support


def object_kept(kspace: np.ndarray, maps: np.ndarray) -> float:
    """The share of the low-resolution image's energy (root sum of squares of the fully
    sampled centre of ``kspace [coil, y, x]``) inside the support of ``maps [coil, y, x]``.

    ESPIRiT with a kernel too large for its calibration rows zeroes maps inside the object:
    on a 101x101 ankle with a 13-line centre and 8 coils, kernels of 6, 5, 4 and 3 kept 47, 66,
    98 and 100 % of its energy (CS-WV -3.1, -2.0, 8.0 and 13.0 dB SNR; docs/bart_baselines.md);
    this measure gave 0.651, 0.831, 0.993 and 1.000."""
    cy, cx = _calibration_box((kspace != 0).any(axis=0))
    ny, nx = kspace.shape[-2:]
    centre = np.zeros_like(kspace)
    box = (slice(None), slice(ny // 2 - cy // 2, ny // 2 - cy // 2 + cy),
           slice(nx // 2 - cx // 2, nx // 2 - cx // 2 + cx))
    centre[box] = kspace[box]
    energy = (np.abs(ifft2c(centre)) ** 2).sum(axis=0)
    total = energy.sum()
    return float(energy[(maps != 0).any(axis=0)].sum() / total) if total > 0 else 1.0


def _padded_length(n: int, kernel: int) -> int:
    """Readout positions after padding: ``READOUT_PADDING * n``, and at least four kernels (on a
    4-sample axis, ``n`` = 2, ecalib's eigenvalues never pass 0.25)."""
    return max(READOUT_PADDING * n, 4 * kernel)


def _readout_kspace(hybrid: np.ndarray, wide: int) -> np.ndarray:
    """``[n, coil, y, x]`` hybrid space -> BART k-space ``[wide, y, x, coil]``, the stack
    zero-padded to ``wide`` readout positions (centred) first."""
    n = hybrid.shape[0]
    padded = np.zeros((wide,) + hybrid.shape[1:], np.complex64)
    padded[wide // 2 - n // 2:wide // 2 - n // 2 + n] = hybrid
    kspace = np.fft.fftshift(np.fft.fft(np.fft.ifftshift(padded, axes=0), axis=0, norm="ortho"),
                             axes=0)
    return np.ascontiguousarray(kspace.transpose(0, 2, 3, 1), dtype=np.complex64)


def _centre_crop(kspace: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The centred ``shape`` block of the leading axes of ``kspace`` (DC stays at ``s // 2``)."""
    index = tuple(slice(s // 2 - c // 2, s // 2 - c // 2 + c) for s, c in zip(kspace.shape, shape))
    return np.ascontiguousarray(kspace[index])


def _interpolate(coarse: np.ndarray, axis: int, size: int, keep: slice) -> np.ndarray:
    """Periodic linear interpolation of ``coarse`` along ``axis`` from its grid to ``size``
    points over the same field of view (centres at ``size // 2``), at the points ``keep``."""
    g = coarse.shape[axis]
    where = (np.arange(size)[keep] - size // 2) * g / size + g // 2
    below = np.floor(where)
    first = np.take(coarse, below.astype(int) % g, axis=axis)
    if g == size:
        return first
    weight = (where - below).astype(np.float32).reshape((-1,) + (1,) * (coarse.ndim - axis - 1))
    result = np.take(coarse, (below.astype(int) + 1) % g, axis=axis)
    result -= first
    result *= weight
    result += first
    return result


class VolumeMaps:
    """ESPIRiT maps of one 3-D volume on their coarse grid, interpolated plane by plane.

    Indexing the readout axis (an integer or a slice; ``maps[a:b]``) returns dense maps
    ``[k, coil, y, x]`` of those planes (module docstring, step 4); ``np.asarray(maps)`` all of
    them. A reconstruction that walks the planes in batches so holds the coarse grid and one
    batch, never the full ``[n, coil, y, x]`` array (5.4 GB for a 32-coil 320x256x256 volume).
    """

    def __init__(self, coarse: np.ndarray, eigen: np.ndarray, n: int, wide: int,
                 plane: tuple[int, int], crop: float) -> None:
        self.coarse, self.eigen = coarse, eigen
        self.n, self.wide, self.plane, self.crop = n, wide, plane, crop

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(n, coil, y, x)``, as the dense maps."""
        return (self.n, self.coarse.shape[1], *self.plane)

    def __len__(self) -> int:
        return self.n

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        maps = self[:]
        return maps if dtype is None else maps.astype(dtype, copy=False)

    def supported(self) -> bool:
        """Whether the maps are non-zero anywhere (some eigenvalue reaches the crop)."""
        return bool((self.eigen >= self.crop).any())

    def __getitem__(self, key: int | slice) -> np.ndarray:
        if isinstance(key, slice):
            planes = range(self.n)[key]
        elif isinstance(key, (int, np.integer)):
            index = range(self.n)[key]
            planes = range(index, index + 1)
        else:
            raise TypeError(f"VolumeMaps takes an integer or a slice, got {key!r}")
        first = self.wide // 2 - self.n // 2
        readout = slice(first + planes.start, first + planes.stop, planes.step)
        maps, eigen = self.coarse, self.eigen
        for axis, size, keep in ((0, self.wide, readout), (2, self.plane[0], slice(None)),
                                 (3, self.plane[1], slice(None))):
            maps = _interpolate(maps, axis, size, keep)
            eigen = _interpolate(eigen, axis, size, keep)
        norm = np.sqrt((maps.real ** 2 + maps.imag ** 2).sum(axis=1, keepdims=True))
        scale = np.divide(1, norm, out=np.zeros_like(norm),
                          where=(eigen >= self.crop) & (norm > 0))
        maps *= scale
        return maps[0] if isinstance(key, (int, np.integer)) else maps


def calibrate_volume(
    kspace,
    *,
    kernel: tuple[int, int, int] = KERNEL,
    calib: tuple[int, int, int] = CALIB,
    grid: int | None = GRID,
    crop: float = CROP,
    threads: int | None = None,
) -> VolumeMaps:
    """ESPIRiT maps of one 3-D volume from a single ``bart ecalib -m 1`` (module docstring),
    kept on their coarse grid (:class:`VolumeMaps`).

    Args:
        kspace: hybrid-space stack ``[n, coil, y, x]`` of one volume: readout inverse-FFT'd
            (``n`` >= 2 positions), ``y``, ``x`` centred k-space with a fully sampled centred
            calibration region shared by all planes (unsampled samples are 0). An array, or
            any object with ``shape`` that gives a dense array for basic slicing (only the
            k-space centre is read).
        kernel: ESPIRiT kernel size (readout, ``y``, ``x``) in samples of the padded k-space
            (``ecalib -k``).
        calib: largest calibration region used (``ecalib -r``), same axes.
        grid: most samples per axis of the coarse grid the maps are computed on, at least the
            calibration region; None computes them at full resolution (no interpolation).
        crop: maps are zero where ESPIRiT's eigenvalue is below this (BART's ``-c``).
        threads: ``OMP_NUM_THREADS`` for BART.

    Raises:
        BartInputError: (a ValueError) not a ``[n, coil, y, x]`` volume with ``n`` >= 2, or
            no fully sampled calibration region larger than the kernel in ``y`` and ``x``.
        BartError: BART failed.
    """
    shape = tuple(getattr(kspace, "shape", ()))
    if len(shape) != 4 or shape[0] < 2:
        raise BartInputError(f"kspace must be a 3-D volume's hybrid-space stack [n, coil, y, x] "
                             f"with n >= 2 readout positions, got shape {shape}; for 2-D "
                             f"slices use espirit_maps(kspace, stack=True)")
    n, coils, ny, nx = shape
    wide = _padded_length(n, kernel[0])
    grid_shape = (wide, ny, nx)
    if grid is not None:
        grid_shape = tuple(min(s, max(grid, c)) for s, c in zip(grid_shape, calib))
    centre = np.asarray(_centre_crop(kspace, (n, coils, *grid_shape[1:])))
    box = _calibration_box((centre != 0).any(axis=(0, 1)))
    if min(b - k for b, k in zip(box, kernel[1:])) < 1:
        raise BartInputError(f"no calibration region for ESPIRiT: the fully sampled centre of "
                             f"k-space is {box[0]}x{box[1]}, the {kernel[1]}x{kernel[2]} kernel "
                             f"needs at least {kernel[1] + 1}x{kernel[2] + 1}")
    coarse = _readout_kspace(centre, wide)
    args = ["ecalib", "-m", "1", "-c", "0", "-k", ":".join(map(str, kernel)),
            "-r", ":".join(map(str, calib)), "kspace", "maps", "eigen"]
    found = run_bart(args, {"kspace": _centre_crop(coarse, grid_shape)}, ["maps", "eigen"],
                     threads)
    maps = found["maps"].reshape(*grid_shape, coils).transpose(0, 3, 1, 2)  # [r, coil, y, x]
    eigen = found["eigen"].real.reshape(grid_shape)[:, None]
    return VolumeMaps(np.ascontiguousarray(maps, dtype=np.complex64), eigen.astype(np.float32),
                      n, wide, (ny, nx), crop)


def espirit_maps_volume(kspace, **options) -> np.ndarray:
    """The maps of :func:`calibrate_volume` (same arguments) for every plane, as one array
    ``[n, coil, y, x]``: complex64, unit norm over coils inside the support, 0 outside."""
    return calibrate_volume(kspace, **options)[:]

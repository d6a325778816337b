"""Source objects for simulated scans: NIfTI and ``.npy`` files as image stacks, and resampling.

Every source is a stack ``[n, y, x]`` (2-D slices, or a 3-D object ``[z, y, x]``) with, when the
file says, its voxel size in mm along those three axes (:data:`Voxel`).

- NIfTI (:func:`load_nifti`): a 3-D magnitude volume (the first frame of a 4-D one) with axes
  ``(i, j, k)``; the ``(i, j)`` plane is turned by 90 degrees (``np.rot90``, so that anterior is
  on top of an axial slice) and ``k`` becomes the stack axis. The magnitude gets a smooth random
  phase (:func:`~npgd_recon.sim.phase.smooth_phase`, seeded) so the object is a plausible complex
  MR image. The voxel comes from the header's zooms.
- ``.npy`` (:func:`load_npy`): an image ``[y, x]`` or a stack ``[n, y, x]``, taken as it is
  (complex or real); the file carries no voxel size.
- :func:`resample` interpolates real and imaginary parts linearly to a new shape; the voxel
  scales so that the field of view stays the source's.
- :func:`peak_normalised`: the object as complex64 with peak magnitude 1 (so a simulated noise
  level is relative to the peak).

Slices are chosen by :func:`slice_range`: all, the central ``N``, or a range ``A:B``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from npgd_recon.core.errors import NpgdError
from npgd_recon.sim.phase import smooth_phase

__all__ = ["Voxel", "load_nifti", "load_npy", "peak_normalised", "resample", "slice_range"]

Voxel = tuple[float, float, float]
"""Voxel size in mm along the stack axes ``[n, y, x]``."""


def slice_range(spec: str | None, available: int) -> slice:
    """The slices of a stack of ``available`` that ``spec`` names.

    Args:
        spec: ``None`` (all), a count ``"N"`` (the central N) or a range ``"A:B"`` (A to B - 1).
        available: the number of slices in the source.

    Raises:
        NpgdError: a spec that is neither form, or a range outside the source.
    """
    if spec is None:
        return slice(0, available)
    try:
        if ":" in spec:
            start, stop = (int(v) for v in spec.split(":"))
        else:
            count = int(spec)
            start = available // 2 - count // 2
            stop = start + count
    except ValueError:
        raise NpgdError(f"slices must be a count N or a range A:B, got {spec!r}") from None
    if not 0 <= start < stop <= available:
        raise NpgdError(f"slices {spec} is outside the {available} slices of the source")
    return slice(start, stop)


def load_nifti(path: str | Path, *, slices: str | None = None,
               seed: int = 0) -> tuple[np.ndarray, Voxel]:
    """A NIfTI magnitude volume as a complex stack ``[z, y, x]`` with a smooth random phase.

    Args:
        path: the ``.nii`` / ``.nii.gz`` file.
        slices: which slices to keep (:func:`slice_range`).
        seed: seeds the phase map.

    Returns:
        The complex128 stack and its voxel ``(dz, dy, dx)`` in mm.

    Raises:
        NpgdError: not a NIfTI file, or not a 3-D (or 4-D) volume.
    """
    import nibabel
    from nibabel.filebasedimages import ImageFileError

    try:
        image = nibabel.load(path)
    except ImageFileError as error:
        raise NpgdError(f"{path}: not a NIfTI volume ({error})") from None
    data = np.asarray(image.get_fdata(dtype=np.float32))
    if data.ndim == 4:
        data = data[..., 0]
    if data.ndim != 3:
        raise NpgdError(f"{path}: expected a 3-D volume, got shape {data.shape}")
    stack = np.rot90(data, axes=(0, 1)).transpose(2, 0, 1)  # [k, j, i]: anterior on top
    stack = stack[slice_range(slices, stack.shape[0])]
    zoom_i, zoom_j, zoom_k = (float(v) for v in image.header.get_zooms()[:3])
    voxel = (zoom_k, zoom_j, zoom_i)  # after rot90, rows run along j and columns along i
    return np.abs(stack) * np.exp(1j * smooth_phase(stack.shape, seed=seed)), voxel


def load_npy(path: str | Path, *, slices: str | None = None) -> np.ndarray:
    """A ``.npy`` image ``[y, x]`` or stack ``[n, y, x]`` as a stack ``[n, y, x]``.

    Raises:
        NpgdError: an array of another dimensionality.
    """
    data = np.load(path, allow_pickle=False)
    data = data[None] if data.ndim == 2 else data
    if data.ndim != 3:
        raise NpgdError(f"{path}: expected [y, x] or [n, y, x], got shape {data.shape}")
    return data[slice_range(slices, data.shape[0])]


def resample(stack: np.ndarray, shape: tuple[int, int, int],
             voxel: Voxel | None = None) -> tuple[np.ndarray, Voxel | None]:
    """``stack`` ``[n, y, x]`` linearly interpolated to ``shape``, and its new voxel.

    The voxel scales by ``old size / new size`` along each axis, so the field of view is kept
    (``None`` stays ``None``).
    """
    from scipy import ndimage  # slow to import: only when a source is resampled

    zoom = [t / s for t, s in zip(shape, stack.shape)]
    resampled = (ndimage.zoom(stack.real, zoom, order=1)
                 + 1j * ndimage.zoom(stack.imag, zoom, order=1))
    if voxel is not None:
        voxel = tuple(v * s / n for v, s, n in zip(voxel, stack.shape, resampled.shape))
    return resampled, voxel


def peak_normalised(stack: np.ndarray) -> np.ndarray:
    """``stack`` divided by its peak magnitude, as complex64.

    Raises:
        NpgdError: an empty (all-zero) source or one holding NaN/Inf.
    """
    peak = float(np.abs(stack).max())
    if not np.isfinite(stack).all() or peak == 0:
        raise NpgdError("the source image is empty or holds NaN/Inf")
    return (stack / peak).astype(np.complex64)

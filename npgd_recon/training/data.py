"""Training data: image sources behind one interface, and the undersampling transform.

A *source* yields complex ground-truth images ``[y, x]`` by index; :class:`UndersampledSet`
turns them into training triples (x*, y, mask): augmentation, a new mask per sample (VDRad 20 %
by default, random seed, so the network never learns one mask), k-space through the project's
operator conventions (``fft2c``, centred), and optional complex Gaussian noise.

Sources:
- :class:`VolumeSlices`: NIfTI (``.nii``/``.nii.gz``) or ``.npy`` volumes; slices along all three
  axes; magnitudes are given a random smooth phase. Splits go by volume (one source per volume).
- :class:`PhantomSource`: random ellipse phantoms with smooth phase.
- :class:`FastMRISource`: fastMRI-style HDF5 (``kspace`` ``[slice, (coil,) ky, kx]``); the image
  is the inverse FFT (coil-combined by root-sum-of-squares with the phase of the first coil).
- :class:`IsmrmrdSource`: fully sampled ISMRMRD raw data (read by
  :func:`~npgd_recon.io.ismrmrd_file.read_raw`: prewhitened, oversampling removed), one image
  per 2-D problem, coil-combined like fastMRI. Undersampled volumes are refused.
- :class:`DicomImages`: magnitude DICOM images (files or folders, multi-frame too), shrunk to at
  most ``max_size`` pixels a side, with a random smooth phase.

Nothing is downloaded; every path is local.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from scipy import ndimage

from npgd_recon.core.fft import fft2c, ifft2c
from npgd_recon.sim.coils import synthetic_coil_maps
from npgd_recon.sim.phase import smooth_phase
from sampling import make_mask


def random_phase(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """``exp(i phi)`` of a random smooth phase map, up to +-pi
    (:func:`npgd_recon.sim.phase.smooth_phase`)."""
    seed = int(rng.integers(2**31))
    return np.exp(1j * smooth_phase(shape, seed=seed, strength=rng.uniform(0.2, 1.0) * np.pi))


class VolumeSlices:
    """2-D slices of one 3-D magnitude volume (NIfTI or .npy), along all three axes.

    Slices whose mean is under ``min_fill`` of the volume's brightest slice mean are skipped.
    """

    def __init__(self, path: str | Path, axes: tuple[int, ...] = (0, 1, 2),
                 min_fill: float = 0.3) -> None:
        path = Path(path)
        if path.suffix == ".npy":
            volume = np.load(path, allow_pickle=False)
        else:
            import nibabel

            volume = np.asarray(nibabel.load(str(path)).dataobj, dtype=np.float32)
        if volume.ndim != 3:
            raise ValueError(f"{path}: expected a 3-D volume, got shape {volume.shape}")
        self.name = path.name
        self.volume = np.abs(volume).astype(np.float32) / max(float(np.abs(volume).max()), 1e-12)
        self.index: list[tuple[int, int]] = []
        for axis in axes:
            means = np.moveaxis(self.volume, axis, 0).mean(axis=(1, 2))
            keep = np.flatnonzero(means >= min_fill * means.max())
            self.index += [(axis, int(i)) for i in keep]

    def __len__(self) -> int:
        return len(self.index)

    def image(self, i: int, rng: np.random.Generator) -> np.ndarray:
        axis, position = self.index[i]
        magnitude = np.take(self.volume, position, axis=axis)
        return (magnitude * random_phase(magnitude.shape, rng)).astype(np.complex64)


class PhantomSource:
    """Random ellipse phantoms (``count`` distinct seeds) with a smooth phase."""

    def __init__(self, count: int = 1000, size: int = 192, seed: int = 0) -> None:
        self.count, self.size, self.seed = count, size, seed

    def __len__(self) -> int:
        return self.count

    def image(self, i: int, rng: np.random.Generator) -> np.ndarray:
        local = np.random.default_rng((self.seed, i))
        n = self.size
        yy, xx = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")
        image = np.zeros((n, n))
        for k in range(local.integers(4, 14)):
            cy, cx = local.uniform(-0.5, 0.5, 2) * (0.3 if k == 0 else 1)
            ay, ax = local.uniform(0.05, 0.9 if k == 0 else 0.35, 2)
            theta = local.uniform(0, np.pi)
            u = (yy - cy) * np.cos(theta) + (xx - cx) * np.sin(theta)
            v = -(yy - cy) * np.sin(theta) + (xx - cx) * np.cos(theta)
            image[(u / ay) ** 2 + (v / ax) ** 2 <= 1] += local.uniform(0.2, 1.0) * (
                1 if k == 0 else local.choice([-0.5, 1]))
        image = ndimage.gaussian_filter(np.clip(image, 0, None), 0.7)
        image /= max(image.max(), 1e-6)
        return (image * random_phase(image.shape, rng)).astype(np.complex64)


class FastMRISource:
    """Slices of fastMRI-style HDF5 files (``kspace``: ``[slice, ky, kx]`` or with coils)."""

    def __init__(self, paths: list[str | Path]) -> None:
        self.index = []
        for path in paths:
            with h5py.File(path, "r") as f:
                if "kspace" not in f:
                    raise ValueError(f"{path}: no 'kspace' dataset (fastMRI layout)")
                self.index += [(Path(path), s) for s in range(f["kspace"].shape[0])]

    def __len__(self) -> int:
        return len(self.index)

    def image(self, i: int, rng: np.random.Generator) -> np.ndarray:
        path, s = self.index[i]
        with h5py.File(path, "r") as f:
            kspace = np.asarray(f["kspace"][s], dtype=np.complex64)
        return coil_combine(ifft2c(kspace if kspace.ndim == 3 else kspace[None]))


def coil_combine(coils: np.ndarray) -> np.ndarray:
    """Root-sum-of-squares magnitude with the phase of the first coil, ``[coil, y, x]``."""
    rss = np.sqrt((np.abs(coils) ** 2).sum(0))
    return (rss * np.exp(1j * np.angle(coils[0]))).astype(np.complex64)


class IsmrmrdSource:
    """2-D images of fully sampled ISMRMRD raw data (every volume of every file)."""

    def __init__(self, paths: list[str | Path]) -> None:
        from npgd_recon.io.ismrmrd_file import read_raw

        self.images: list[np.ndarray] = []
        for path in paths:
            for volume in read_raw(path).volumes:
                if not volume.fully_sampled:
                    raise ValueError(f"{path}: undersampled data cannot be a training target")
                self.images += [coil_combine(ifft2c(k)) for k in volume.kspace]

    def __len__(self) -> int:
        return len(self.images)

    def image(self, i: int, rng: np.random.Generator) -> np.ndarray:
        return self.images[i]


class DicomImages:
    """Magnitude DICOM images from files and folders (``*.dcm``), one per frame."""

    def __init__(self, paths: list[str | Path], max_size: int = 320) -> None:
        import pydicom

        files: list[Path] = []
        for path in map(Path, paths):
            files += sorted(path.glob("*.dcm")) if path.is_dir() else [path]
        self.images: list[np.ndarray] = []
        for file in files:
            try:
                frames = np.asarray(pydicom.dcmread(file).pixel_array, dtype=np.float32)
            except Exception as error:  # pydicom raises many types for unreadable files
                raise ValueError(f"{file}: not a readable DICOM image ({error})") from None
            for frame in frames.reshape(-1, *frames.shape[-2:]):
                factor = min(1.0, max_size / max(frame.shape))
                if factor < 1:
                    frame = ndimage.zoom(frame, factor, order=1)
                frame = frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2]
                self.images.append(np.abs(frame) / max(float(np.abs(frame).max()), 1e-12))
        if not self.images:
            raise ValueError(f"no DICOM images in {', '.join(map(str, paths))}")

    def __len__(self) -> int:
        return len(self.images)

    def image(self, i: int, rng: np.random.Generator) -> np.ndarray:
        magnitude = self.images[i]
        return (magnitude * random_phase(magnitude.shape, rng)).astype(np.complex64)


@dataclass
class Augment:
    """Random geometric and intensity augmentation, then a crop/pad to ``shape``."""

    shape: tuple[int, int] = (128, 128)
    zoom: tuple[float, float] = (0.55, 1.0)
    intensity: tuple[float, float] = (0.5, 2.0)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        image = np.rot90(image, rng.integers(4))
        if rng.uniform() < 0.5:
            image = image[::-1]
        factor = rng.uniform(*self.zoom)
        image = (ndimage.zoom(image.real, factor, order=1)
                 + 1j * ndimage.zoom(image.imag, factor, order=1))
        out = np.zeros(self.shape, dtype=np.complex64)
        src, dst = [], []
        for n, m in zip(image.shape, self.shape):
            if n >= m:
                start = rng.integers(0, n - m + 1)
                src.append(slice(start, start + m))
                dst.append(slice(0, m))
            else:
                start = rng.integers(0, m - n + 1)
                src.append(slice(0, n))
                dst.append(slice(start, start + n))
        out[tuple(dst)] = image[tuple(src)]
        return out * rng.uniform(*self.intensity)


class UndersampledSet(torch.utils.data.Dataset):
    """Training/validation triples from a mixture of sources.

    Item ``i`` is drawn deterministically from ``(seed, i)``: with ``augment`` a random source
    image, a fresh mask and noise; without (validation) a fixed image, mask and noise.

    Returns dicts of tensors: ``target`` complex ``[y, x]``, ``kspace`` complex ``[y, x]``
    (zeros where unsampled), ``mask`` float ``[y, x]``. With ``coils > 1`` the k-space is
    multi-coil ``[coil, y, x]`` through smooth birdcage-like sensitivities
    (:func:`~npgd_recon.sim.coils.synthetic_coil_maps`, flipped and phase-shifted at random per
    sample) and the item also holds those ``maps`` ``[coil, y, x]`` for the SENSE operator.
    """

    def __init__(self, sources: list, length: int, *, mask: str = "vdrad", accel: float = 5.0,
                 noise: tuple[float, float] = (0.0, 0.02), augment: Augment | None = None,
                 seed: int = 0, coils: int = 1) -> None:
        if not sources or not sum(len(s) for s in sources):
            raise ValueError("no training images: every data source is empty")
        if coils < 1:
            raise ValueError(f"coils must be at least 1, got {coils}")
        self.sources, self.length, self.augment, self.seed = sources, length, augment, seed
        self.mask, self.accel, self.noise, self.coils = mask, accel, noise, coils
        self.offsets = np.cumsum([0] + [len(s) for s in sources])

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, i))
        pick = rng.integers(self.offsets[-1]) if self.augment else (
            (i * 7919) % self.offsets[-1])
        which = int(np.searchsorted(self.offsets, pick, side="right") - 1)
        image = self.sources[which].image(int(pick - self.offsets[which]), rng)
        if self.augment is not None:
            image = self.augment(image, rng)
        else:
            image = image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2]
        mask = make_mask(self.mask, image.shape, self.accel,
                         seed=int(rng.integers(2**31))).mask
        maps = None
        if self.coils > 1:  # the coil ring flipped at random, each coil a random phase
            maps = synthetic_coil_maps(self.coils, image.shape)[:, :: rng.choice([-1, 1]),
                                                       :: rng.choice([-1, 1])]
            maps = maps * np.exp(2j * np.pi * rng.uniform(size=(self.coils, 1, 1)))
        coils = image[None] if maps is None else maps * image
        sigma = rng.uniform(*self.noise) * np.abs(image).max()
        noise = sigma / np.sqrt(2) * (rng.standard_normal(coils.shape)
                                      + 1j * rng.standard_normal(coils.shape))
        kspace = (fft2c(coils) + noise) * mask
        item = {
            "target": torch.from_numpy(np.ascontiguousarray(image, dtype=np.complex64)),
            "kspace": torch.from_numpy(kspace[0] if maps is None else kspace).to(torch.complex64),
            "mask": torch.from_numpy(mask.astype(np.float32)),
        }
        if maps is not None:
            item["maps"] = torch.from_numpy(maps.astype(np.complex64))
        return item


def build_source(spec: dict):
    """A source from its config table:
    ``{kind = "nifti"|"npy"|"phantom"|"fastmri"|"ismrmrd"|"dicom", ...}``."""
    kind = spec.get("kind")
    if kind in ("nifti", "npy"):
        return VolumeSlices(spec["path"], tuple(spec.get("axes", (0, 1, 2))),
                            spec.get("min_fill", 0.3))
    if kind == "phantom":
        return PhantomSource(spec.get("count", 1000), spec.get("size", 192), spec.get("seed", 0))
    if kind == "fastmri":
        return FastMRISource(spec["paths"])
    if kind == "ismrmrd":
        return IsmrmrdSource(spec["paths"])
    if kind == "dicom":
        return DicomImages(spec["paths"], spec.get("max_size", 320))
    raise ValueError(f"unknown data source kind {kind!r}; use nifti, npy, phantom, fastmri, "
                     "ismrmrd or dicom")

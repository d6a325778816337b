"""Training data: image sources behind one interface, and the undersampling transform.

A *source* yields complex ground-truth images ``[y, x]`` by index; :class:`UndersampledSet`
turns them into training triples (x*, y, mask): augmentation, a new mask per sample (VDRad 20 %
by default, random seed, so the network never learns one mask), k-space through the project's
operator conventions (``fft2c``, centred), and optional complex Gaussian noise.

Sources:
- :class:`VolumeSlices`: NIfTI (``.nii``/``.nii.gz``), NRRD (``.nrrd``/``.nhdr``, read with
  ``pynrrd``) or ``.npy`` volumes; slices along all three axes (or those given); magnitudes are
  given a random smooth phase. Splits go by volume (one source per volume). NRRD and cache
  volumes with negative values (CT in Hounsfield units) are shifted to start at 0.
- :class:`PhantomSource`: random ellipse phantoms with smooth phase.
- :class:`FastMRISource`: fastMRI-style HDF5 (``kspace`` ``[slice, (coil,) ky, kx]``); the image
  is the inverse FFT (coil-combined by root-sum-of-squares with the phase of the first coil).
- :class:`IsmrmrdSource`: fully sampled ISMRMRD raw data (read by
  :func:`~npgd_recon.io.ismrmrd_file.read_raw`: prewhitened, oversampling removed), one image
  per 2-D problem, coil-combined like fastMRI. Undersampled volumes are refused.
- :class:`DicomImages`: magnitude DICOM images (files or folders, multi-frame too, Siemens
  mosaics split into their slices), shrunk to at most ``max_size`` pixels a side, with a random
  smooth phase.
- ``kind = "cache"``: an entry of the training-image cache by name
  (:mod:`npgd_recon.training.fetch`; filled by ``npgd-data fetch``), read as its format says.

Nothing is downloaded here; every path is local.
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
from npgd_recon.training.fetch import find_entry
from sampling import make_mask


def random_phase(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """``exp(i phi)`` of a random smooth phase map, up to +-pi
    (:func:`npgd_recon.sim.phase.smooth_phase`)."""
    seed = int(rng.integers(2**31))
    return np.exp(1j * smooth_phase(shape, seed=seed, strength=rng.uniform(0.2, 1.0) * np.pi))


def read_volume(path: str | Path) -> np.ndarray:
    """A 3-D volume from ``.npy``, NRRD (``.nrrd``/``.nhdr``) or NIfTI, as float32."""
    path = Path(path)
    try:
        if path.suffix == ".npy":
            volume = np.load(path, allow_pickle=False)
        elif path.suffix in (".nrrd", ".nhdr"):
            import nrrd

            volume, _ = nrrd.read(str(path))
        else:
            import nibabel

            volume = np.asarray(nibabel.load(str(path)).dataobj, dtype=np.float32)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except OSError:
        raise
    except Exception as error:  # the readers raise many types for damaged files
        raise ValueError(f"{path}: not a readable volume ({error})") from None
    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim != 3:
        raise ValueError(f"{path}: expected a 3-D volume, got shape {volume.shape}")
    return volume


class VolumeSlices:
    """2-D slices of one 3-D magnitude volume (NIfTI, NRRD or .npy), along ``axes``.

    Slices whose mean is under ``min_fill`` of the volume's brightest slice mean are skipped.
    With ``shift`` a volume with negative values (CT) is shifted to start at 0 first; without,
    its magnitude is taken.
    """

    def __init__(self, path: str | Path, axes: tuple[int, ...] = (0, 1, 2),
                 min_fill: float = 0.3, shift: bool = False) -> None:
        path = Path(path)
        volume = read_volume(path)
        if any(a not in (0, 1, 2) for a in axes) or not axes:
            raise ValueError(f"{path}: slice axes must be among 0, 1, 2, got {list(axes)}")
        if shift and volume.min() < 0:
            volume = volume - volume.min()
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
        magnitude = self.volume[(slice(None),) * axis + (position,)]  # a view, not np.take's copy
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
        grid = np.linspace(-1, 1, n)
        image = np.zeros((n, n))
        for k in range(local.integers(4, 14)):
            cy, cx = local.uniform(-0.5, 0.5, 2) * (0.3 if k == 0 else 1)
            ay, ax = local.uniform(0.05, 0.9 if k == 0 else 0.35, 2)
            theta = local.uniform(0, np.pi)
            c, s = np.cos(theta), np.sin(theta)
            # only the ellipse's bounding box (plus a pixel) is evaluated: same pixels, less work
            hy, hx = np.hypot(ay * c, ax * s), np.hypot(ay * s, ax * c)
            ys = slice(*np.searchsorted(grid, [cy - hy - 0.01, cy + hy + 0.01]))
            xs = slice(*np.searchsorted(grid, [cx - hx - 0.01, cx + hx + 0.01]))
            yy, xx = np.meshgrid(grid[ys], grid[xs], indexing="ij")
            u = (yy - cy) * c + (xx - cx) * s
            v = -(yy - cy) * s + (xx - cx) * c
            image[ys, xs][(u / ay) ** 2 + (v / ax) ** 2 <= 1] += local.uniform(0.2, 1.0) * (
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


def mosaic_tiles(dataset, pixels: np.ndarray, min_fill: float = 0.3) -> np.ndarray:
    """The slices ``[n, y, x]`` of a Siemens mosaic image, dim ones dropped.

    The slice count comes from the CSA image header (``NumberOfImagesInMosaic``); the tiles
    fill a square grid of ``ceil(sqrt(n))`` a side. Tiles whose mean is under ``min_fill`` of
    the brightest tile's mean (empty grid cells, slices outside the body) are left out.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nibabel.nicom warns that it is experimental on import
        from nibabel.nicom import csareader

        try:
            count = csareader.get_n_mosaic(csareader.get_csa_header(dataset, "image"))
        except Exception:  # a missing or damaged CSA header: many exception types
            count = None
    if not count:
        raise ValueError("a mosaic without a readable NumberOfImagesInMosaic (CSA header)")
    side = int(np.ceil(np.sqrt(count)))
    rows, cols = pixels.shape[0] // side, pixels.shape[1] // side
    tiles = (pixels[: side * rows, : side * cols].reshape(side, rows, side, cols)
             .swapaxes(1, 2).reshape(side * side, rows, cols)[:count])
    means = tiles.mean(axis=(1, 2))
    return tiles[means >= min_fill * max(float(means.max()), 1e-12)]


class DicomImages:
    """Magnitude DICOM images from files and folders (``*.dcm``), one per frame.

    Siemens mosaics (``MOSAIC`` in ImageType) are split into their slices
    (:func:`mosaic_tiles`).
    """

    def __init__(self, paths: list[str | Path], max_size: int = 320) -> None:
        import pydicom

        files: list[Path] = []
        for path in map(Path, paths):
            files += sorted(path.glob("*.dcm")) if path.is_dir() else [path]
        self.images: list[np.ndarray] = []
        for file in files:
            try:
                dataset = pydicom.dcmread(file)
                frames = np.asarray(dataset.pixel_array, dtype=np.float32)
            except Exception as error:  # pydicom raises many types for unreadable files
                raise ValueError(f"{file}: not a readable DICOM image ({error})") from None
            if "MOSAIC" in [str(v).upper() for v in dataset.get("ImageType", [])]:
                try:
                    frames = mosaic_tiles(dataset, frames.reshape(frames.shape[-2:]))
                except ValueError as error:
                    raise ValueError(f"{file}: {error}") from None
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
    """Random geometric and intensity augmentation, then a crop/pad to ``shape``.

    Contrast options, all off by default (then no random number is drawn for them, so the
    samples stay those of a config without them), applied to the magnitude after the crop,
    keeping the phase:

    - ``gamma = (low, high)``: ``|x| -> |x|^g`` (on ``|x| / max``), ``g`` log-uniform in the range;
    - ``invert``: probability of a contrast inversion, ``|x| -> (1 - |x|)`` inside the object's
      smoothed support (background stays dark);
    - ``bias``: strength of a smooth multiplicative bias field ``exp(b)``, ``|b| <= bias``.
    """

    shape: tuple[int, int] = (128, 128)
    zoom: tuple[float, float] = (0.55, 1.0)
    intensity: tuple[float, float] = (0.5, 2.0)
    gamma: tuple[float, float] = (1.0, 1.0)
    invert: float = 0.0
    bias: float = 0.0

    def __post_init__(self) -> None:
        self.shape, self.zoom = tuple(self.shape), tuple(self.zoom)
        self.intensity, self.gamma = tuple(self.intensity), tuple(self.gamma)
        for name in ("shape", "zoom", "intensity", "gamma"):
            value = getattr(self, name)
            if (len(value) != 2 or not all(isinstance(v, (int, float)) and v > 0 for v in value)
                    or value[0] > value[1] and name != "shape"):
                raise ValueError(f"augmentation {name} must be two positive numbers "
                                 f"[low, high], got {list(value)}")
        if not 0 <= self.invert <= 1:
            raise ValueError(f"augmentation invert is a probability in [0, 1], got {self.invert}")
        if not 0 <= self.bias <= 5:
            raise ValueError(f"augmentation bias must be in [0, 5], got {self.bias}")

    @property
    def contrast(self) -> bool:
        """Whether any contrast option is on."""
        return self.gamma != (1.0, 1.0) or self.invert > 0 or self.bias > 0

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        image = np.rot90(image, rng.integers(4))
        if rng.uniform() < 0.5:
            image = image[::-1]
        factor = rng.uniform(*self.zoom)
        sizes = [round(n * factor) for n in image.shape]  # what ndimage.zoom gives
        dst, region = [], []
        for n, m in zip(sizes, self.shape):
            if n >= m:
                start = rng.integers(0, n - m + 1)
                region.append((start, m))
                dst.append(slice(0, m))
            else:
                start = rng.integers(0, m - n + 1)
                region.append((0, n))
                dst.append(slice(start, start + n))
        image = _zoom_region(image, sizes, region)
        out = np.zeros(self.shape, dtype=np.complex64)
        out[tuple(dst)] = image
        if self.contrast:
            out = self._contrast(out, rng)
        return out * rng.uniform(*self.intensity)

    def _contrast(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        magnitude = np.abs(image)
        peak = float(magnitude.max())
        if peak <= 0:
            return image
        unit = np.where(magnitude > 0, image / np.maximum(magnitude, 1e-30), 0)
        m = magnitude / peak
        if self.gamma != (1.0, 1.0):
            m = m ** np.exp(rng.uniform(np.log(self.gamma[0]), np.log(self.gamma[1])))
        if self.invert > 0 and rng.uniform() < self.invert:
            support = ndimage.gaussian_filter((m > 0.1).astype(np.float32), 2.0)
            m = (1 - m) * support
        if self.bias > 0:
            m = m * np.exp(smooth_phase(m.shape, seed=int(rng.integers(2**31)),
                                        strength=self.bias))
        return (m * peak * unit).astype(np.complex64)


def _zoom_region(image: np.ndarray, sizes: list[int], region: list[tuple[int, int]]
                 ) -> np.ndarray:
    """``ndimage.zoom(image, factor, order=1)`` (complex) to ``sizes``, computed only on
    ``region`` (``(start, length)`` per axis): the same interpolation grid, a fraction of the
    work when the crop is smaller than the zoomed image."""
    coordinates = []
    for n_in, n_out, (start, length) in zip(image.shape, sizes, region):
        step = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        coordinates.append(np.arange(start, start + length) * step)
    (y0, y1), (x0, x1) = [(int(np.floor(c[0])), min(int(np.floor(c[-1])) + 2, n))
                          for c, n in zip(coordinates, image.shape)]
    part = image[y0:y1, x0:x1]
    grid = np.meshgrid(coordinates[0] - y0, coordinates[1] - x0, indexing="ij")
    return (ndimage.map_coordinates(np.ascontiguousarray(part.real), grid, order=1)
            + 1j * ndimage.map_coordinates(np.ascontiguousarray(part.imag), grid, order=1))


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
    """A source from its config table: ``{kind = "nifti"|"npy"|"nrrd"|"phantom"|"fastmri"|
    "ismrmrd"|"dicom"|"cache", ...}``.

    ``cache``: ``{kind = "cache", name = "pyradiomics-brain1"}`` reads the named entry of the
    training-image cache (``npgd-data fetch``; optional ``cache`` folder, default
    ``$NPGD_DATA_CACHE`` or ``~/.cache/npgd-recon``); ``axes`` (default: the entry's),
    ``min_fill`` and ``max_size`` as for the other kinds.
    """
    if not isinstance(spec, dict):
        raise ValueError(f"a data source must be a table, got {spec!r}")
    kind = spec.get("kind")
    try:
        if kind in ("nifti", "npy", "nrrd"):
            return VolumeSlices(spec["path"], tuple(spec.get("axes", (0, 1, 2))),
                                spec.get("min_fill", 0.3), shift=kind == "nrrd")
        if kind == "phantom":
            return PhantomSource(spec.get("count", 1000), spec.get("size", 192),
                                 spec.get("seed", 0))
        if kind == "fastmri":
            return FastMRISource(spec["paths"])
        if kind == "ismrmrd":
            return IsmrmrdSource(spec["paths"])
        if kind == "dicom":
            return DicomImages(spec["paths"], spec.get("max_size", 320))
        if kind == "cache":
            record, files = find_entry(spec["name"], spec.get("cache"))
            if record["format"] == "dicom":
                return DicomImages(files, spec.get("max_size", 320))
            if len(files) != 1:
                raise ValueError(f"data cache entry {spec['name']!r}: a volume needs one file, "
                                 f"the manifest lists {len(files)}")
            return VolumeSlices(files[0], tuple(spec.get("axes", record.get("axes", (0, 1, 2)))),
                                spec.get("min_fill", 0.3), shift=True)
    except KeyError as error:
        raise ValueError(f"data source kind {kind!r} needs {error.args[0]!r}") from None
    raise ValueError(f"unknown data source kind {kind!r}; use nifti, npy, nrrd, phantom, "
                     "fastmri, ismrmrd, dicom or cache")

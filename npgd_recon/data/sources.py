"""Training images: sources behind one interface, each yielding complex ground-truth images
``[y, x]`` by index (``len(source)``, ``source.image(i, rng)``), and :func:`build_source`, which
makes one from its config table.

Sources:
- :class:`VolumeSlices`: NIfTI (``.nii``/``.nii.gz``), NRRD (``.nrrd``/``.nhdr``, read with
  ``pynrrd``), ``.npy`` or InVesalius ``.inv3`` (:func:`read_inv3`) volumes (a 4-D series gives
  its first volume, or, with ``echo_axis``, every echo as a volume; a 2-D image is a volume of
  one slice); slices along all three axes (or those given); magnitudes are given a random
  smooth phase, a complex ``.npy`` keeps its own. Splits go by volume (one source per volume).
  NRRD and cache volumes with negative values (CT in Hounsfield units) are shifted to start
  at 0. With ``max_size`` the planes are shrunk to at most that many pixels a side (a coarser
  matrix of the same field of view, e.g. a small-matrix selection set).
- :class:`PhantomSource`: random ellipse phantoms with smooth phase.
- :class:`FastMRISource`: fastMRI-style HDF5 (``kspace`` ``[slice, (coil,) ky, kx]``); the image
  is the inverse FFT (coil-combined by root-sum-of-squares with the phase of the first coil).
- :class:`IsmrmrdSource`: fully sampled ISMRMRD raw data (read by
  :func:`~npgd_recon.io.ismrmrd_file.read_raw`: prewhitened, oversampling removed), one image
  per 2-D problem, coil-combined like fastMRI. Undersampled volumes are refused.
- :class:`DicomImages`: magnitude DICOM images (files or folders, multi-frame too: enhanced
  MR with its per-frame rescale; Siemens mosaics split into their slices), shrunk to at most
  ``max_size`` pixels a side, with a random smooth phase.
- ``kind = "cache"``: an entry of the training-image cache by name
  (:mod:`npgd_recon.data.fetch`; filled by ``npgd-data fetch``), read as its format says.
- ``kind = "photos"``: greyscale photos and textures that installed packages ship
  (:class:`npgd_recon.data.photos.PhotoSource`), a generic natural-image prior.

Nothing is downloaded here; every path is local.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from scipy import ndimage

from npgd_recon.core.errors import NpgdError
from npgd_recon.core.fft import ifft2c
from npgd_recon.data.fetch import find_entry
from npgd_recon.data.photos import PhotoSource
from npgd_recon.data.resample import check_max_size, shrink
from npgd_recon.sim.phase import random_phase


def read_inv3(path: str | Path) -> np.ndarray:
    """The volume ``[z, y, x]`` of an InVesalius project (``.inv3``).

    The project is a (gzipped) tar; its ``main.plist`` names the image matrix file, its dtype
    (``int16`` for CT, Hounsfield units) and shape; the file holds the raw little-endian values
    in C order.
    """
    import plistlib
    import tarfile

    with tarfile.open(path) as tar:
        files = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        if "main.plist" not in files:
            raise NpgdError("no main.plist in the project")
        with tar.extractfile(files["main.plist"]) as f:
            matrix = plistlib.load(f)["matrix"]
        dtype = np.dtype(str(matrix["dtype"])).newbyteorder("<")
        shape = tuple(int(n) for n in matrix["shape"])
        if dtype.kind not in "iuf" or len(shape) != 3:
            raise NpgdError(f"a {matrix['dtype']} matrix of shape {list(shape)} is no volume")
        name = Path(str(matrix["filename"])).name
        if name not in files:
            raise NpgdError(f"the matrix file {name} is not in the project")
        with tar.extractfile(files[name]) as f:
            data = f.read()
    if len(data) != int(np.prod(shape)) * dtype.itemsize:
        raise NpgdError(f"{name} holds {len(data)} bytes, not a {dtype.name} "
                         f"{'x'.join(map(str, shape))} matrix")
    return np.frombuffer(data, dtype).reshape(shape)


def read_volume(path: str | Path, echo_axis: int | None = None) -> np.ndarray:
    """A 3-D volume from ``.npy``, NRRD (``.nrrd``/``.nhdr``), InVesalius ``.inv3`` or NIfTI, as
    float32 (complex64 for a complex ``.npy``): the first volume of a 4-D series, a 2-D image
    as a volume of one slice (``[y, x, 1]``).

    With ``echo_axis`` a 4-D series is kept whole, its echoes first: ``[echo, a, b, c]`` (axis
    ``echo_axis`` moved to the front); a 3-D volume is then one echo, ``[1, a, b, c]``.
    """
    path = Path(path)
    try:
        if path.suffix == ".npy":
            volume = np.load(path, allow_pickle=False)
        elif path.suffix == ".inv3":
            volume = read_inv3(path)
        elif path.suffix in (".nrrd", ".nhdr"):
            import nrrd

            volume, _ = nrrd.read(str(path))
        else:
            import nibabel

            volume = np.asarray(nibabel.load(str(path)).dataobj, dtype=np.float32)
    except FileNotFoundError:
        raise NpgdError(f"{path}: no such file") from None
    except OSError:
        raise
    except Exception as error:  # the readers raise many types for damaged files
        raise NpgdError(f"{path}: not a readable volume ({error})") from None
    if echo_axis is not None:
        if volume.ndim == 3:
            volume = volume[None]
        elif volume.ndim == 4 and -4 <= echo_axis < 4:
            volume = np.moveaxis(volume, echo_axis, 0)
        else:
            raise NpgdError(f"{path}: echo axis {echo_axis} of a volume of shape "
                            f"{volume.shape}: expected a 3-D or 4-D volume and an axis of it")
    elif volume.ndim == 4:  # a series (NIfTI's fourth axis is time): its first volume
        volume = volume[..., 0]
    elif volume.ndim == 2:  # one image: a volume of one slice along axis 2
        volume = volume[..., None]
    volume = np.asarray(volume, dtype=np.complex64 if np.iscomplexobj(volume) else np.float32)
    if volume.ndim != (3 if echo_axis is None else 4):
        raise NpgdError(f"{path}: expected a 3-D volume, got shape {volume.shape}")
    return volume


class VolumeSlices:
    """2-D slices of one 3-D volume (NIfTI, NRRD, .npy or .inv3), along ``axes``.

    Slices whose mean is under ``min_fill`` of the volume's brightest slice mean are skipped.
    A real volume is a magnitude: with ``shift`` a volume with negative values (CT) is shifted
    to start at 0 first, without, its magnitude is taken; each image gets a random smooth phase.
    A complex volume (a complex ``.npy``) keeps its own phase: its images are its slices,
    whatever ``rng``. Either is scaled to a peak magnitude of 1 over the whole volume.

    ``echo_axis``: the volume is 4-D with echoes along that axis (:func:`read_volume`); each
    echo is sliced the same way (``axes`` number the other three axes, slices kept by their
    mean over the echoes) and the images run echo by echo: image ``i`` is slice
    ``index[i % len(index)]`` of echo ``i // len(index)``.

    ``max_size``: planes larger than this on their larger side are shrunk to it
    (:func:`~npgd_recon.data.resample.shrink`): the same field of view on a coarser matrix.
    """

    def __init__(self, path: str | Path, axes: tuple[int, ...] = (0, 1, 2),
                 min_fill: float = 0.3, shift: bool = False,
                 echo_axis: int | None = None, max_size: int | None = None) -> None:
        path = Path(path)
        volume = read_volume(path, echo_axis)
        if any(a not in (0, 1, 2) for a in axes) or not axes:
            raise NpgdError(f"{path}: slice axes must be among 0, 1, 2, got {list(axes)}")
        if max_size is not None:
            check_max_size(max_size, str(path))
        self.name, self.max_size = path.name, max_size
        self.complex = np.iscomplexobj(volume)
        if self.complex:
            self.volume = (volume / max(float(np.abs(volume).max()), 1e-12)).astype(np.complex64)
        else:
            if shift and volume.min() < 0:
                volume = volume - volume.min()
            self.volume = (np.abs(volume).astype(np.float32)
                           / max(float(np.abs(volume).max()), 1e-12))
        self.echoes = self.volume.shape[0] if echo_axis is not None else 1
        fill = np.abs(self.volume) if self.complex else self.volume
        fill = fill.mean(axis=0) if echo_axis is not None else fill
        self.index: list[tuple[int, int]] = []
        for axis in axes:
            means = np.moveaxis(fill, axis, 0).mean(axis=(1, 2))
            keep = np.flatnonzero(means >= min_fill * means.max())
            self.index += [(axis, int(i)) for i in keep]

    def __len__(self) -> int:
        return len(self.index) * self.echoes

    def image(self, i: int, rng: np.random.Generator) -> np.ndarray:
        echo, k = divmod(i, len(self.index))
        if not 0 <= echo < self.echoes:
            raise IndexError(f"image {i} of {len(self)}")
        axis, position = self.index[k]
        volume = self.volume[echo] if self.volume.ndim == 4 else self.volume
        plane = volume[(slice(None),) * axis + (position,)]  # a view, not np.take's copy
        if self.max_size is not None:
            plane = shrink(plane, self.max_size)
        if self.complex:
            return plane.astype(np.complex64)  # a copy: callers may write into it
        return (plane * random_phase(plane.shape, rng)).astype(np.complex64)


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
                    raise NpgdError(f"{path}: no 'kspace' dataset (fastMRI layout)")
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
                    raise NpgdError(f"{path}: undersampled data cannot be a training target")
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
        raise NpgdError("a mosaic without a readable NumberOfImagesInMosaic (CSA header)")
    side = int(np.ceil(np.sqrt(count)))
    rows, cols = pixels.shape[0] // side, pixels.shape[1] // side
    tiles = (pixels[: side * rows, : side * cols].reshape(side, rows, side, cols)
             .swapaxes(1, 2).reshape(side * side, rows, cols)[:count])
    means = tiles.mean(axis=(1, 2))
    return tiles[means >= min_fill * max(float(means.max()), 1e-12)]


def rescale_frames(dataset, frames: np.ndarray) -> np.ndarray:
    """``frames`` ``[n, y, x]`` (or one ``[y, x]``) in real values: each frame's stored values
    times its Rescale Slope plus its Rescale Intercept.

    An enhanced (multi-frame) image gives them per frame (the Per-frame Functional Groups'
    Pixel Value Transformation), for all frames (the Shared Functional Groups'), or, like a
    single-frame image, at the top level; none means slope 1, intercept 0.
    """
    frames = np.asarray(frames, dtype=np.float32)
    stack = frames.reshape(-1, *frames.shape[-2:])

    def transform(group):
        if group is not None and "PixelValueTransformationSequence" in group:
            item = group.PixelValueTransformationSequence[0]
            return float(item.get("RescaleSlope", 1) or 1), float(item.get("RescaleIntercept", 0))
        return None

    shared = dataset.get("SharedFunctionalGroupsSequence")
    default = (transform(shared[0] if shared else None)
               or (float(dataset.get("RescaleSlope", 1) or 1),
                   float(dataset.get("RescaleIntercept", 0))))
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence") or []
    if len(per_frame) not in (0, len(stack)):
        raise NpgdError(f"{len(per_frame)} per-frame functional groups for {len(stack)} frames")
    out = np.empty_like(stack)
    for k, frame in enumerate(stack):
        slope, intercept = (transform(per_frame[k]) if per_frame else None) or default
        out[k] = frame * slope + intercept if (slope, intercept) != (1.0, 0.0) else frame
    return out.reshape(frames.shape)


class DicomImages:
    """Magnitude DICOM images from files and folders (``*.dcm``), one per frame.

    Frames come in each file's order (an enhanced MR series of one file per echo: the file's
    in-stack order), in real values (:func:`rescale_frames`); a file whose values go below 0
    (CT in Hounsfield units) is shifted to start at 0. Siemens mosaics (``MOSAIC`` in
    ImageType) are split into their slices (:func:`mosaic_tiles`).
    """

    def __init__(self, paths: list[str | Path], max_size: int = 320) -> None:
        import pydicom

        more = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
        check_max_size(max_size, f"{paths[0]}{more}" if paths else "dicom")

        files: list[Path] = []
        for path in map(Path, paths):
            files += sorted(path.glob("*.dcm")) if path.is_dir() else [path]
        self.images: list[np.ndarray] = []
        for file in files:
            try:
                dataset = pydicom.dcmread(file)
                frames = np.asarray(dataset.pixel_array, dtype=np.float32)
            except Exception as error:  # pydicom raises many types for unreadable files
                raise NpgdError(f"{file}: not a readable DICOM image ({error})") from None
            try:
                frames = rescale_frames(dataset, frames)
            except (NpgdError, ValueError, TypeError) as error:
                raise NpgdError(f"{file}: {error}") from None
            if frames.min() < 0:
                frames = frames - frames.min()
            if "MOSAIC" in [str(v).upper() for v in dataset.get("ImageType", [])]:
                try:
                    frames = mosaic_tiles(dataset, frames.reshape(frames.shape[-2:]))
                except ValueError as error:
                    raise NpgdError(f"{file}: {error}") from None
            for frame in frames.reshape(-1, *frames.shape[-2:]):
                frame = shrink(frame, max_size)
                self.images.append(np.abs(frame) / max(float(np.abs(frame).max()), 1e-12))
        if not self.images:
            raise NpgdError(f"no DICOM images in {', '.join(map(str, paths))}")

    def __len__(self) -> int:
        return len(self.images)

    def image(self, i: int, rng: np.random.Generator) -> np.ndarray:
        magnitude = self.images[i]
        return (magnitude * random_phase(magnitude.shape, rng)).astype(np.complex64)


def build_source(spec: dict):
    """A source from its config table: ``{kind = "nifti"|"npy"|"nrrd"|"phantom"|"fastmri"|
    "ismrmrd"|"dicom"|"cache"|"photos", ...}``.

    ``cache``: ``{kind = "cache", name = "pyradiomics-brain1"}`` reads the named entry of the
    training-image cache (``npgd-data fetch``; optional ``cache`` folder, default
    ``$NPGD_DATA_CACHE`` or ``~/.cache/npgd-recon``); ``axes`` and ``echo_axis`` (default: the
    entry's), ``min_fill`` and ``max_size`` as for the other kinds (``echo_axis`` as for
    ``nifti``/``npy``/``nrrd``: :class:`VolumeSlices`). ``photos``: ``{kind = "photos",
    package = "skimage"|"pywt"|"sklearn"|"all"}`` (optional ``max_size``, default 256), the
    photos those installed packages ship (:mod:`npgd_recon.data.photos`).
    """
    if not isinstance(spec, dict):
        raise NpgdError(f"a data source must be a table, got {spec!r}")
    kind = spec.get("kind")
    try:
        if kind in ("nifti", "npy", "nrrd"):
            return VolumeSlices(spec["path"], tuple(spec.get("axes", (0, 1, 2))),
                                spec.get("min_fill", 0.3), shift=kind == "nrrd",
                                echo_axis=spec.get("echo_axis"),
                                max_size=spec.get("max_size"))
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
                raise NpgdError(f"data cache entry {spec['name']!r}: a volume needs one file, "
                                 f"the manifest lists {len(files)}")
            return VolumeSlices(files[0], tuple(spec.get("axes", record.get("axes", (0, 1, 2)))),
                                spec.get("min_fill", 0.3), shift=True,
                                echo_axis=spec.get("echo_axis", record.get("echo_axis")),
                                max_size=spec.get("max_size"))
        if kind == "photos":
            return PhotoSource(spec.get("package", "all"), spec.get("max_size", 256))
    except KeyError as error:
        raise NpgdError(f"data source kind {kind!r} needs {error.args[0]!r}") from None
    raise NpgdError(f"unknown data source kind {kind!r}; use nifti, npy, nrrd, phantom, "
                     "fastmri, ismrmrd, dicom, cache or photos")

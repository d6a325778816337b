"""Natural images as a training source: the photos and textures installed packages ship.

A generic image prior, meant as a minority of the training mixture beside the MR and CT
sources: ``{kind = "photos", package = "skimage" | "pywt" | "sklearn" | "all"}``
(:func:`npgd_recon.data.sources.build_source`). Only what the installed package holds on disk
is read (nothing is downloaded); colour photos are turned to grey (ITU-R BT.709 luminance),
each image shrunk to at most ``max_size`` pixels a side and scaled to a peak of 1, then given the
same random smooth phase as the other sources (:func:`~npgd_recon.sim.phase.random_phase`).

- ``skimage``: ``skimage.data``'s camera, brick, grass, gravel, moon, text, coins, page, cell,
  clock and, turned to grey, astronaut, chelsea, coffee, rocket (the files bundled with the
  package; the datasets that ``skimage.data`` would download are not used).
- ``pywt``: ``pywt.data``'s ascent, aero and camera.
- ``sklearn``: ``sklearn.datasets.load_sample_images``' china and flower, turned to grey.
- ``all``: every one of those packages that is installed (at least one must be); an image two
  packages ship (the camera man of skimage and pywt) is taken once.

The MR example images of pydicom and pydicom-data are never read here: they are kept for
evaluation.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util

import numpy as np

from npgd_recon.core.errors import NpgdError
from npgd_recon.data.resample import check_max_size, shrink
from npgd_recon.sim.phase import random_phase

__all__ = ["PACKAGES", "PhotoSource"]

#: Package name in a config -> (module to import, pip name, image loaders' names).
PACKAGES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "skimage": ("skimage.data", "scikit-image", (
        "camera", "brick", "grass", "gravel", "moon", "text", "coins", "page", "cell", "clock",
        "astronaut", "chelsea", "coffee", "rocket")),
    "pywt": ("pywt.data", "PyWavelets", ("ascent", "aero", "camera")),
    "sklearn": ("sklearn.datasets", "scikit-learn", ("china", "flower")),
}

_LUMA = np.array([0.2126, 0.7152, 0.0722])


def _installed(package: str) -> bool:
    """Whether the top-level module of ``package`` (a :data:`PACKAGES` key) can be imported."""
    return importlib.util.find_spec(package) is not None


def _load(package: str) -> list[tuple[str, np.ndarray]]:
    """``(name, image)`` of each photo that ``package`` ships, as they are stored."""
    module_name, _, names = PACKAGES[package]
    module = importlib.import_module(module_name)
    if package == "sklearn":
        import os

        bunch = module.load_sample_images()
        found = {os.path.splitext(os.path.basename(f))[0]: image
                 for f, image in zip(bunch.filenames, bunch.images)}
        return [(name, found[name]) for name in names if name in found]
    return [(name, np.asarray(getattr(module, name)())) for name in names]


def _grey(image: np.ndarray) -> np.ndarray:
    """A float64 greyscale image ``[y, x]`` from a grey, RGB or RGBA one."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        image = image[..., :3] @ _LUMA
    if image.ndim != 2:
        raise NpgdError(f"a photo of shape {image.shape} is not an image")
    return image


class PhotoSource:
    """The greyscale photos that ``package`` (``skimage``, ``pywt``, ``sklearn`` or ``all``)
    ships, each at most ``max_size`` pixels a side with even sizes and a peak of 1.

    ``names`` lists ``package:image`` in order. A package that is not installed (or, for
    ``all``, none installed) is a one-line :class:`~npgd_recon.core.errors.NpgdError` naming it.
    """

    def __init__(self, package: str = "all", max_size: int = 256) -> None:
        if package != "all" and package not in PACKAGES:
            raise NpgdError(f"photos: unknown package {package!r}; use "
                             f"{', '.join(PACKAGES)} or all")
        check_max_size(max_size, "photos")
        wanted = list(PACKAGES) if package == "all" else [package]
        present = [p for p in wanted if _installed(p)]
        if not present:
            pip = " / ".join(PACKAGES[p][1] for p in wanted)
            raise NpgdError(f"photos: package {package!r} is not installed (pip install {pip})"
                             if package != "all" else
                             f"photos: none of {', '.join(PACKAGES)} is installed ({pip})")
        self.names: list[str] = []
        self.images: list[np.ndarray] = []
        seen: set[str] = set()
        for name in present:
            for image_name, raw in _load(name):
                digest = hashlib.sha256(np.ascontiguousarray(raw).tobytes()).hexdigest()
                if digest in seen:  # the same photo from two packages: once
                    continue
                seen.add(digest)
                image = np.clip(shrink(_grey(raw), max_size), 0, None)
                self.images.append((image / max(float(image.max()), 1e-12)).astype(np.float32))
                self.names.append(f"{name}:{image_name}")

    def __len__(self) -> int:
        return len(self.images)

    def image(self, i: int, rng: np.random.Generator) -> np.ndarray:
        magnitude = self.images[i]
        return (magnitude * random_phase(magnitude.shape, rng)).astype(np.complex64)

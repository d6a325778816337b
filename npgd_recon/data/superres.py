"""Super-resolution data (paper 5.3): small grayscale images and their 2x2 block averages.

The paper used CelebA faces (128x128). Offline we use what installed packages ship, or a folder
the user names; nothing is downloaded:

- ``{kind = "lfw-faces", split = "train" | "test"}``: the 100 face crops of scikit-image's
  bundled ``lfw_subset`` (25x25, cropped to 24x24); ``train`` is the first 80, ``test`` the last
  20, never trained on.
- ``{kind = "folder", path = "DIR", split = "train" | "test" | "all"}``: every ``.png``,
  ``.jpg``, ``.jpeg``, ``.tif`` or ``.bmp`` in ``DIR`` (sorted), as grayscale, resized to the
  configured shape; ``test`` is every fifth file, ``train`` the rest.

Images are real (zero phase), stored as complex64 ``[y, x]`` in ``[0, 1]``; the measurement is
:class:`~npgd_recon.core.operators.BlockAverageOp` of the image plus optional real Gaussian noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from npgd_recon.core.errors import NpgdError
from npgd_recon.core.operators import BlockAverageOp
from npgd_recon.data.samples import SuperResSample

FACES_TRAIN = 80
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


def _split(items: list, split: str, test_every: int = 5) -> list:
    if split == "all":
        return items
    if split == "test":
        return items[test_every - 1::test_every]
    if split == "train":
        return [x for i, x in enumerate(items) if i % test_every != test_every - 1]
    raise NpgdError(f"split must be 'train', 'test' or 'all', got {split!r}")


def lfw_faces(split: str) -> np.ndarray:
    """scikit-image's bundled face crops ``[n, 24, 24]`` in [0, 1] (80 train / 20 test)."""
    from skimage.data import lfw_subset

    faces = lfw_subset()[:100, :24, :24].astype(np.float32)
    if split not in ("train", "test", "all"):
        raise NpgdError(f"split must be 'train', 'test' or 'all', got {split!r}")
    return {"train": faces[:FACES_TRAIN], "test": faces[FACES_TRAIN:], "all": faces}[split]


def folder_images(path: str | Path, shape: tuple[int, int], split: str = "all") -> np.ndarray:
    """Grayscale images of a folder resized to ``shape``: ``[n, y, x]`` in [0, 1]."""
    from skimage.color import rgb2gray, rgba2rgb
    from skimage.io import imread
    from skimage.transform import resize

    folder = Path(path)
    if not folder.is_dir():
        raise NpgdError(f"image folder not found: {folder}")
    files = _split(sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                   split)
    images = []
    for file in files:
        try:
            image = np.asarray(imread(file), dtype=np.float64)
        except (OSError, ValueError) as error:
            raise NpgdError(f"{file}: not a readable image ({error})") from None
        if image.ndim == 3:
            image = rgb2gray(rgba2rgb(image) if image.shape[-1] == 4 else image[..., :3])
        image = resize(image, shape, anti_aliasing=True)
        images.append((image - image.min()) / max(float(np.ptp(image)), 1e-12))
    if not images:
        raise NpgdError(f"{folder}: no {split} images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return np.stack(images).astype(np.float32)


def image_source(spec: dict, shape: tuple[int, int]) -> np.ndarray:
    """The images ``[n, y, x]`` a config table names (see the module docstring)."""
    kind = spec.get("kind")
    if kind == "lfw-faces":
        images = lfw_faces(spec.get("split", "train"))
    elif kind == "folder" and "path" in spec:
        images = folder_images(spec["path"], shape, spec.get("split", "all"))
    elif kind == "folder":
        raise NpgdError("super-resolution image source folder needs 'path'")
    else:
        raise NpgdError(f"unknown super-resolution image source {kind!r}; use lfw-faces or "
                         f"folder")
    if images.shape[1:] != tuple(shape):
        raise NpgdError(f"{kind} images are {images.shape[1]}x{images.shape[2]}, the config's "
                         f"shape is {shape[0]}x{shape[1]}")
    return images


class BlockAveragedSet(torch.utils.data.Dataset):
    """Super-resolution pairs from stacks of images.

    Item ``i`` is drawn deterministically from ``(seed, i)``: with ``augment`` a random image,
    randomly mirrored left-right, and noise of a random level in ``noise``; without, image
    ``i mod n`` and noise ``noise[0]``. Noise is real Gaussian of standard deviation
    ``level * max(x*)`` added to the low-resolution image.

    Items are :class:`~npgd_recon.data.samples.SuperResSample`: ``target`` complex ``[y, x]``,
    ``lowres`` complex ``[y/2, x/2]``.
    """

    def __init__(self, images: list[np.ndarray], length: int, *,
                 noise: tuple[float, float] = (0.0, 0.0), augment: bool = False,
                 seed: int = 0) -> None:
        self.images = np.concatenate(images) if images else np.zeros((0, 2, 2), np.float32)
        if not len(self.images):
            raise NpgdError("no super-resolution images: every source is empty")
        self.length, self.noise, self.augment, self.seed = length, noise, augment, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> SuperResSample:
        rng = np.random.default_rng((self.seed, i))
        if self.augment:
            image = self.images[rng.integers(len(self.images))]
            image = image[:, ::-1] if rng.uniform() < 0.5 else image
            level = rng.uniform(*self.noise)
        else:
            image, level = self.images[i % len(self.images)], self.noise[0]
        target = torch.from_numpy(np.ascontiguousarray(image)).to(torch.complex64)
        lowres = BlockAverageOp().forward(target)
        noise = rng.standard_normal(lowres.shape).astype(np.float32) * level * float(image.max())
        return SuperResSample(target=target, lowres=lowres + torch.from_numpy(noise))

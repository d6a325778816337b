"""Training triples: augmentation and the undersampling transform.

:class:`UndersampledSet` turns the images of sources (:mod:`npgd_recon.data.sources`) into
training triples (x*, y, mask): augmentation (:class:`Augment`), a new mask per sample (VDRad
20 % by default, random seed, so the network never learns one mask), k-space through the
project's operator conventions (``fft2c``, centred), optional coils and complex Gaussian noise,
as typed samples (:mod:`npgd_recon.data.samples`): :class:`~npgd_recon.data.samples.
CartesianSample` for one coil, :class:`~npgd_recon.data.samples.SenseSample` for a coil count or
range (:func:`coil_range`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy import ndimage

from bart_baselines import espirit_maps
from npgd_recon.core.errors import NpgdError
from npgd_recon.core.fft import fft2c
from npgd_recon.core.map_error import effective_noise_std
from npgd_recon.data.samples import CartesianSample, SenseSample
from npgd_recon.sim.coils import COIL_GEOMETRIES, synthetic_coil_maps
from npgd_recon.sim.noise import complex_noise
from npgd_recon.sim.phase import smooth_phase
from sampling import make_mask, multicoil_calib


@dataclass
class Augment:
    """Random geometric and intensity augmentation, then a crop/pad to ``shape``.

    Invalid options raise :class:`~npgd_recon.core.errors.NpgdError` with a message that starts
    with the option's name.

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
                raise NpgdError(f"{name} must be two positive numbers [low, high], got "
                                 f"{list(value)}")
        if not 0 <= self.invert <= 1:
            raise NpgdError(f"invert must be a probability in [0, 1], got {self.invert}")
        if not 0 <= self.bias <= 5:
            raise NpgdError(f"bias must be in [0, 5], got {self.bias}")

    def at(self, shape: tuple[int, int]) -> Augment:
        """This augmentation cropping to ``shape`` instead, its zoom range scaled by the size
        ratio: the same field of view on a coarser (or finer) matrix."""
        ratio = min(n / m for n, m in zip(shape, self.shape))
        return replace(self, shape=tuple(shape), zoom=(self.zoom[0] * ratio,
                                                       self.zoom[1] * ratio))

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


def coil_range(coils: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """A coil count or ``[low, high]`` as a range ``(low, high)``, ``1 <= low <= high``.

    Raises :class:`~npgd_recon.core.errors.NpgdError` (its message starts with ``coils``) for
    anything else.
    """
    pair = tuple(coils) if isinstance(coils, (list, tuple)) else (coils, coils)
    if (len(pair) != 2 or not all(isinstance(c, int) and not isinstance(c, bool) for c in pair)
            or not 1 <= pair[0] <= pair[1]):
        raise NpgdError(f"coils must be a count >= 1 or [low, high] with 1 <= low <= high, "
                         f"got {list(coils) if isinstance(coils, tuple) else coils!r}")
    return pair


MAPS = ("exact", "espirit")


def _through_estimated_maps(image: np.ndarray, maps: np.ndarray, kspace: np.ndarray,
                            sets: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(sum_c conj(S'_c) S_c x, S')`` for ESPIRiT's maps ``S'`` of ``kspace`` (with ``sets``
    > 1 ``S'`` is ``[set, coil, y, x]`` and the image is seen through the first set), or
    ``(image, maps)`` unchanged when ESPIRiT finds no support."""
    estimate = espirit_maps(kspace, threads=1, sets=sets)
    if not np.any(estimate):
        return image, maps
    if sets > 1:
        estimate = estimate[0]  # [set, coil, y, x] of the one plane
    first = estimate[0] if sets > 1 else estimate
    seen = np.sum(first.conj() * maps, axis=0) * image
    return seen.astype(np.complex64), estimate


def _with_sets(maps: np.ndarray, sets: int) -> np.ndarray:
    """One set of maps ``[coil, y, x]`` as ``[sets, coil, y, x]``, the other sets zero (the
    one-set problem, :class:`~npgd_recon.core.operators.SoftSenseOp` solves it exactly)."""
    return np.concatenate([maps[None], np.zeros((sets - 1, *maps.shape), maps.dtype)])


def with_texture(image: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """``image`` plus circular complex Gaussian noise whose std is ``level`` times the mean
    magnitude of its object (the pixels above a tenth of its peak); an empty image unchanged."""
    magnitude = np.abs(image)
    if not magnitude.max() > 0:
        return image
    return image + complex_noise(rng, image.shape,
                                 level * magnitude[magnitude > 0.1 * magnitude.max()].mean())


class UndersampledSet(torch.utils.data.Dataset):
    """Training/validation triples from a mixture of sources.

    Item ``i`` is drawn deterministically from ``(seed, i)``: with ``augment`` a random source
    image, a fresh mask and noise; without (validation) a fixed image, mask and noise.

    Items are :class:`~npgd_recon.data.samples.CartesianSample`: ``target`` complex
    ``[y, x]``, ``kspace`` complex ``[y, x]`` (zeros where unsampled), ``mask`` float ``[y, x]``,
    ``noise`` the k-space noise std. With ``coils > 1`` they are
    :class:`~npgd_recon.data.samples.SenseSample`: multi-coil k-space ``[coil, y, x]`` through
    smooth birdcage-like sensitivities (:func:`~npgd_recon.sim.coils.synthetic_coil_maps`,
    ``sum_c |S_c|^2 = 1`` like ESPIRiT's, flipped and phase-shifted at random per sample), those
    ``maps`` ``[coil, y, x]`` too. ``coil_geometry``: the simulated array
    (:data:`~npgd_recon.sim.coils.COIL_GEOMETRIES`: the birdcage-like ring, or surface loops),
    or ``"mixed"``: each item draws one of them.

    ``coils = (low, high)`` draws the coil count uniformly in that range (1 is single coil, still
    a :class:`~npgd_recon.data.samples.SenseSample`: maps all ones), the same for the
    ``coil_group`` consecutive items of one batch so that they stack.

    ``augment`` may be several augmentations (e.g. :meth:`Augment.at` other matrix sizes): each
    group of ``coil_group`` items draws one of them, so that a batch stacks. ``noise_scale``
    ``"log"`` draws the noise level log-uniformly in ``noise`` (its low end > 0): as many
    samples between 0.1 and 0.2 % as between 1 and 2 %.

    ``phase`` (fixed items only): a real-valued image gets a smooth phase map of up to
    +-pi/2 seeded by ``(seed, i)``, as the model card's scans have; complex images keep theirs.

    ``maps = "espirit"`` (multi-coil items), as ``npgd-recon`` undersamples and calibrates at
    inference: the mask's fully sampled centre is :func:`~sampling.multicoil_calib`'s, the
    item's ``maps`` are not the simulated sensitivities but BART ESPIRiT's estimate from its
    own undersampled, noisy k-space (:func:`~bart_baselines.cs.espirit_maps`, one thread), and its
    ``target`` is the truth seen through them, ``sum_c conj(S'_c) S_c x`` (zero where ESPIRiT
    finds no support): the reference the model card scores against. ``"exact"`` (the default)
    keeps the simulated maps and ``x``. An item whose estimate is empty keeps the exact maps.
    ``maps_up_to`` (> 0) limits the estimate to items whose larger side is at most that many
    pixels (the small matrices, whose few calibration lines make ESPIRiT's error large); larger
    items keep exact maps.

    ``map_sets = 2`` (soft SENSE, with ``maps = "espirit"`` and coils): every item's ``maps``
    are ``[set, coil, y, x]``: ESPIRiT's two sets where estimated (the target seen through the
    first), else its one set of maps and a zero second set.

    ``map_error`` (> 0, with ``maps = "espirit"``): an item with estimated maps carries as its
    ``noise`` the level ``npgd-recon`` tells the network, the thermal noise and this weight of
    the maps' model error (:func:`~npgd_recon.core.map_error.effective_noise_std`).

    ``texture = (low, high)`` (training items, ``high > 0``): the image gets noise of its own
    before it is acquired (:func:`with_texture`, a level drawn uniformly in the range), which
    the target keeps, as a real reference image keeps the noise of its own acquisition; the
    k-space noise ``noise`` comes on top and is what the network is told. Off by default
    (no extra draw: items are those of a set without it).
    """

    def __init__(self, sources: list, length: int, *, mask: str = "vdrad", accel: float = 5.0,
                 noise: tuple[float, float] = (0.0, 0.02),
                 augment: Augment | tuple[Augment, ...] | None = None, seed: int = 0,
                 coils: int | tuple[int, int] = 1, coil_group: int = 1, phase: bool = False,
                 noise_scale: str = "linear", maps: str = "exact", maps_up_to: int = 0,
                 map_sets: int = 1, map_error: float = 0.0,
                 coil_geometry: str = "birdcage",
                 texture: tuple[float, float] = (0.0, 0.0)) -> None:
        if not sources or not sum(len(s) for s in sources):
            raise NpgdError("no training images: every data source is empty")
        if coil_group < 1:
            raise NpgdError(f"coil_group must be at least 1, got {coil_group}")
        if maps not in MAPS:
            raise NpgdError(f"maps must be one of {', '.join(MAPS)}, got {maps!r}")
        if noise_scale not in ("linear", "log") or noise_scale == "log" and noise[0] <= 0:
            raise NpgdError(f"noise_scale must be 'linear', or 'log' with a noise range above 0, "
                             f"got {noise_scale!r} for {list(noise)}")
        if map_sets not in (1, 2) or map_sets == 2 and (maps != "espirit"
                                                        or coil_range(coils) == (1, 1)):
            raise NpgdError(f"map_sets must be 1, or 2 with ESPIRiT maps and coils, got "
                            f"{map_sets} with {maps!r} maps")
        if not map_error >= 0 or map_error > 0 and maps != "espirit":
            raise NpgdError(f"map_error must be 0, or > 0 with ESPIRiT maps, got {map_error} "
                            f"with {maps!r} maps")
        if coil_geometry not in (*COIL_GEOMETRIES, "mixed"):
            raise NpgdError(f"coil_geometry must be one of {', '.join(COIL_GEOMETRIES)} or "
                            f"mixed, got {coil_geometry!r}")
        if not 0 <= texture[0] <= texture[1]:
            raise NpgdError(f"texture must be [low, high] with 0 <= low <= high, got "
                            f"{list(texture)}")
        augments = (augment,) if isinstance(augment, Augment) else tuple(augment or ())
        self.sources, self.length, self.augments, self.seed = sources, length, augments, seed
        self.noise_scale, self.maps, self.maps_up_to = noise_scale, maps, maps_up_to
        self.map_sets, self.map_error, self.coil_geometry = map_sets, map_error, coil_geometry
        self.mask, self.accel, self.noise, self.phase = mask, accel, noise, phase
        self.texture = texture
        self.coil_range, self.coil_group = coil_range(coils), coil_group
        self.offsets = np.cumsum([0] + [len(s) for s in sources])

    def __len__(self) -> int:
        return self.length

    def coil_count(self, i: int) -> int:
        """The coil count of item ``i`` (shared by its group of ``coil_group`` items)."""
        low, high = self.coil_range
        if low == high:
            return low
        return int(np.random.default_rng((self.seed, i // self.coil_group, 1)).integers(
            low, high + 1))

    def augment_of(self, i: int) -> Augment | None:
        """The augmentation of item ``i`` (shared by its group of ``coil_group`` items)."""
        if len(self.augments) <= 1:
            return self.augments[0] if self.augments else None
        return self.augments[int(np.random.default_rng(
            (self.seed, i // self.coil_group, 2)).integers(len(self.augments)))]

    def __getitem__(self, i: int) -> CartesianSample | SenseSample:
        rng = np.random.default_rng((self.seed, i))
        augment = self.augment_of(i)
        pick = rng.integers(self.offsets[-1]) if augment else (
            (i * 7919) % self.offsets[-1])
        which = int(np.searchsorted(self.offsets, pick, side="right") - 1)
        image = self.sources[which].image(int(pick - self.offsets[which]), rng)
        if augment is not None:
            image = augment(image, rng)
            if self.texture[1] > 0:
                image = with_texture(image, rng.uniform(*self.texture), rng)
        else:
            image = image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2]
            if self.phase and not np.iscomplexobj(image):
                image = image * np.exp(1j * smooth_phase(
                    image.shape, seed=int(rng.integers(2**31)), strength=np.pi / 2))
        count = self.coil_count(i)
        estimated = (self.maps == "espirit" and count > 1
                     and (self.maps_up_to <= 0 or max(image.shape) <= self.maps_up_to))
        calib = {"calib": multicoil_calib(image.shape)} if estimated else {}
        mask = make_mask(self.mask, image.shape, self.accel, seed=int(rng.integers(2**31)),
                         **calib).mask
        maps = None
        if self.coil_range != (1, 1):  # the coil ring flipped at random, each coil a random phase
            geometry = (self.coil_geometry if self.coil_geometry != "mixed"
                        else COIL_GEOMETRIES[int(rng.integers(len(COIL_GEOMETRIES)))])
            maps = synthetic_coil_maps(count, image.shape, geometry=geometry)[
                :, :: rng.choice([-1, 1]), :: rng.choice([-1, 1])]
            maps = maps * np.exp(2j * np.pi * rng.uniform(size=(count, 1, 1)))
        coils = image[None] if maps is None else maps * image
        level = (np.exp(rng.uniform(*np.log(self.noise))) if self.noise_scale == "log"
                 else rng.uniform(*self.noise))
        sigma = level * np.abs(image).max()
        kspace = (fft2c(coils) + complex_noise(rng, coils.shape, sigma)) * mask
        if estimated:
            image, maps = _through_estimated_maps(image, maps, kspace, self.map_sets)
            if self.map_error > 0:
                sigma = float(effective_noise_std(kspace[None], mask[None], maps[None], sigma,
                                                  self.map_error)[0])
        if maps is not None and self.map_sets > 1 and maps.ndim == 3:
            maps = _with_sets(maps, self.map_sets)
        fields = {
            "target": torch.from_numpy(np.ascontiguousarray(image, dtype=np.complex64)),
            "kspace": torch.from_numpy(kspace[0] if maps is None else kspace).to(torch.complex64),
            "mask": torch.from_numpy(mask.astype(np.float32)),
            "noise": torch.tensor(sigma, dtype=torch.float32),
        }
        if maps is None:
            return CartesianSample(**fields)
        return SenseSample(**fields, maps=torch.from_numpy(maps.astype(np.complex64)))

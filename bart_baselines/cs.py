"""CS-WV and CS-TV baselines: ``bart pics`` on numpy k-space in the project's conventions.

Conventions (README): centred k-space, orthonormal centred FFT, arrays ``[coil, y, x]`` or
``[y, x]``; with ``stack=True`` a leading slice axis, ``[slice, coil, y, x]`` or ``[slice, y, x]``
(a 3-D array is multi-coil unless ``stack=True``, so the flag is the only way to ask for a stack).
Results are images ``[y, x]`` (``[slice, y, x]``) in the same orientation and scale as the
zero-filled adjoint ``sum_c conj(S_c) ifft2c(kspace_c * mask)``.

Soft SENSE: maps ``[slice or 1, set, coil, y, x]`` (5-D, both with and without ``stack``) hold
several sets of ESPIRiT maps (``espirit_maps(..., sets=2)``, ``bart ecalib -m 2``); ``pics``
then solves for one image per set (BART dim 4, MAPS) and the result is the first set's image,
the one-set image without what that set cannot explain (``npgd_recon.core.operators.
SoftSenseOp``).

BART dims: our ``y`` is BART dim 0 (READ), ``x`` dim 1 (PHS1), coils dim 3 (COIL), slices
dim 13 (SLICE); ``bart fft -u 3`` on that layout is ``fft2c``.

``bart pics`` options (v0.8), one call for a whole stack:

- CS-WV: ``-R W:3:0:lam`` (l1 of the Daubechies-2 wavelet over dims 0, 1); BART picks FISTA
  for a single l1-wavelet term (v0.8 has no ``--fista`` flag; ``-I`` would select plain IST).
  Step ``-s 0.95 / max_pixel sum_c |S_c|^2``, which keeps the step below ``1 / ||M F S||^2`` for
  any maps (0.95 for a single coil). Random wavelet cycle spinning stays on (``-n`` cost 8 dB
  on a 224x192 brain slice).
- CS-TV: ``-R T:3:0:lam`` (isotropic TV over dims 0, 1). v0.8 solves TV only with ADMM
  (``-m``, its default here): IST/FISTA need a closed-form prox, which TV has not, and BART
  rejects them for ``T``; v0.8's ADMM stops when its total of inner CG iterations passes ``-i``.
- ``-w 1``: no BART data scaling; we scale ourselves (below), so the output needs no ``-S``.
- ``-i iters`` (300 by default, as in the paper), ``-p`` the mask as the sampling pattern.

A stack is one ``pics`` call with the slices in dim 13. CS-WV solves it as one joint,
slice-separable problem: FISTA's step and momentum do not depend on the data and each
iteration's random wavelet shift is shared by all slices, so every slice gets exactly its
single-slice result. For CS-TV, ADMM's inner CG would share its step sizes across a joint stack,
so when all slices share one mask and one set of maps BART's batch mode ``-L 8192`` loops over
the slices inside the call (exactly the single-slice results). v0.8's ``-L`` applies slice 0's
pattern and maps to every slice, so with per-slice masks or maps CS-TV falls back to the joint
problem: the same minimiser reached by slightly different iterates (about 40 dB agreement with
single-slice calls after 300 iterations, slice SNRs within a few tenths of a dB).

Scaling and lambda: every slice is divided by the 99th percentile of its root-sum-of-squares
zero-filled image (a robust max, set to 1) before BART sees it, and the result multiplied back.
``lam`` is therefore in these normalised units, so one value suits data of any scale; the
defaults below were tuned for best SNR on brain slices and a phantom (docs/bart_baselines.md).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from bart_baselines.espirit import OBJECT_KEPT, espirit_kernel, ifft2c, object_kept
from bart_baselines.noise import estimate_noise_std
from bart_baselines.runner import (
    BartCall,
    BartInputError,
    default_threads,
    run_bart,
    start_bart,
)

WAVELET_LAMBDA = 1.1e-4
TV_LAMBDA = 3.5e-3
# auto_lambda's (floor, floor coil exponent, slope, coil exponent): one rule for a known and an
# estimated noise level, fitted against the oracle lambda for both at once (smallest worst
# loss) in benchmarks/cs_lambda.py --size 128 (docs/bart_baselines.md).
AUTO_LAMBDA = {"wavelet": (1e-4, 0.0, 0.0224, 1.5), "tv": (8.66e-3, 0.85, 0.1, 0.5)}
ROBUST_MAX_PERCENTILE = 99.0
FISTA_STEP = 0.95
SLICE_DIM = 13
_REGULARISERS = {"wavelet": "W", "tv": "T"}


@dataclass
class _Problem:
    """k-space ``[slice, coil, y, x]``, mask ``[slice, y, x]``, maps
    ``[1|slice, set, coil, y, x]``."""

    kspace: np.ndarray
    mask: np.ndarray
    maps: np.ndarray


def _to_bart(array: np.ndarray) -> np.ndarray:
    """``[slice, coil, y, x]`` -> BART ``[y, x, 1, coil, 1, ..., slice]`` (dims 0, 1, 3, 13);
    ``[slice, set, coil, y, x]`` -> ``[y, x, 1, coil, set, 1, ..., slice]`` (sets in dim 4)."""
    if array.ndim == 4:
        array = array[:, None]
    s, m, c, ny, nx = array.shape
    dims = [ny, nx, 1, c, m] + [1] * (SLICE_DIM - 5) + [s]
    return np.ascontiguousarray(array.transpose(3, 4, 2, 1, 0)).reshape(dims)


def _from_bart(image: np.ndarray, slices: int, ny: int, nx: int) -> np.ndarray:
    """BART image ``[y, x, 1, 1, set, ..., slice]`` -> the first set's ``[slice, y, x]``."""
    return image.reshape(ny, nx, -1, slices)[:, :, 0].transpose(2, 0, 1)


def _as_stack(kspace: np.ndarray, stack: bool) -> np.ndarray:
    k = np.asarray(kspace)
    single_coil_ndim, multi_coil_ndim = (3, 4) if stack else (2, 3)
    if k.ndim == single_coil_ndim:
        k = k[..., None, :, :]
    elif k.ndim != multi_coil_ndim:
        want = "[slice, coil, y, x] or [slice, y, x]" if stack else "[coil, y, x] or [y, x]"
        raise ValueError(f"k-space must be {want} (stack={stack}), got shape {k.shape}")
    return (k if stack else k[None]).astype(np.complex64)


def _as_mask(mask: np.ndarray | None, kspace: np.ndarray) -> np.ndarray:
    s, _, ny, nx = kspace.shape
    if mask is None:
        return (np.abs(kspace) > 0).any(axis=1).astype(np.float32)
    m = np.asarray(mask)
    if m.shape not in ((ny, nx), (s, ny, nx)):
        raise ValueError(f"mask must be [y, x] {(ny, nx)} or [slice, y, x], got {m.shape}")
    if not np.isin(m, (0, 1)).all():
        raise ValueError("mask must hold only 0 and 1 (a sampling pattern, not weights)")
    return np.broadcast_to(m.astype(np.float32), (s, ny, nx))


def _as_maps(sens: np.ndarray | None, kspace: np.ndarray, stack: bool) -> np.ndarray:
    """``sens`` as ``[1|slice, set, coil, y, x]``."""
    s, c, ny, nx = kspace.shape
    if sens is None:
        if c != 1:
            raise ValueError(f"{c}-coil k-space needs sens: maps [coil, y, x] or 'espirit'")
        return np.ones((1, 1, 1, ny, nx), np.complex64)
    maps = np.asarray(sens, dtype=np.complex64)
    if maps.ndim == 3:
        maps = maps[None]
    if maps.ndim == 4:  # one set
        maps = maps[:, None]
    if maps.ndim != 5 or maps.shape[2:] != (c, ny, nx) or maps.shape[0] not in (1, s):
        want = ("[coil, y, x], [slice, coil, y, x]" if stack else "[coil, y, x]") + (
            " or [slice or 1, set, coil, y, x]")
        raise ValueError(f"sens must be {want} matching k-space {kspace.shape}, got {maps.shape}")
    return maps


def _coils_from_bart(array: np.ndarray, coils: int, ny: int, nx: int) -> np.ndarray:
    """BART ``[y, x, 1, coil]`` (one slice) -> ``[coil, y, x]``; ``[y, x, 1, coil, set]`` ->
    ``[set, coil, y, x]``."""
    sets = array.size // (coils * ny * nx)
    maps = array.reshape(ny, nx, coils, sets).transpose(3, 2, 0, 1)
    return maps[0] if sets == 1 else maps


def espirit_maps(kspace: np.ndarray, stack: bool = False, threads: int | None = None,
                 sets: int = 1) -> np.ndarray:
    """ESPIRiT maps per slice from ``bart ecalib -m SETS -k K`` (auto calibration region).
    ``K`` is BART's 6 (half the fully sampled centre where that is smaller,
    :func:`~bart_baselines.espirit.espirit_kernel`), one smaller at a time down to 3 while the
    maps drop part of the object (:func:`~bart_baselines.espirit.object_kept` below
    ``OBJECT_KEPT``): small centres leave a large kernel too few calibration rows.

    v0.8's ``ecalib`` has no batch mode over slices, so a stack takes one call per slice; with
    a thread budget of N, N calls of one thread each run at once (``ecalib`` is mostly serial:
    one 3-D calibration took 1.13 s on one thread and 0.98 s on two). For the planes of one 3-D
    volume, :func:`bart_baselines.espirit.espirit_maps_volume` calibrates once in 3-D (about
    seven times faster, same reconstruction quality).

    Args:
        kspace: centred k-space ``[coil, y, x]`` (``[slice, coil, y, x]`` with ``stack``) with
            a fully sampled centre.
        stack: the leading axis is slices.
        threads: the thread budget (None: :func:`~bart_baselines.runner.default_threads`),
            split between concurrent calls.
        sets: sets of maps (soft SENSE with 2: the eigenvectors of the two largest
            eigenvalues, each kept where its eigenvalue passes ``ecalib``'s threshold).

    Returns:
        Maps ``[coil, y, x]`` (``[slice, coil, y, x]``), complex64, zero outside the support;
        with ``sets > 1`` ``[slice or 1, set, coil, y, x]``. The kernel is chosen on the first
        set.
    """
    if sets < 1:
        raise ValueError(f"sets must be at least 1, got {sets}")
    k = _as_stack(kspace, stack)
    budget = threads or default_threads()
    workers = max(1, min(len(k), budget))
    running: deque = deque()  # (call, slice shape), at most ``workers``
    maps = []
    try:
        for one in k:
            if len(running) == workers:
                maps.append(_maps_of(*running.popleft()))
            running.append((start_bart(["ecalib", "-m", str(sets), "-k", str(_first_kernel(one)),
                                        "kspace", "maps"],
                                       {"kspace": _to_bart(one[None])}, ["maps"],
                                       budget // workers), one.shape))
        while running:
            maps.append(_maps_of(*running.popleft()))
    except BaseException:  # a failure or Ctrl-C: stop the calls still running
        for call, _ in running:
            call.kill()
        raise
    maps = np.stack([_kept_object(one, found, budget, sets) for one, found in zip(k, maps)])
    return maps if stack or sets > 1 else maps[0]


def _first_kernel(kspace: np.ndarray) -> int:
    """The kernel ``ecalib`` tries first on one slice ``[coil, y, x]``."""
    return espirit_kernel((kspace != 0).any(axis=0))


def _kept_object(kspace: np.ndarray, maps: np.ndarray, threads: int, sets: int) -> np.ndarray:
    """``maps`` of one slice, or those of the largest smaller kernel whose first set keeps the
    object."""
    kernel = _first_kernel(kspace)
    while kernel > 3 and object_kept(kspace, maps if sets == 1 else maps[0]) < OBJECT_KEPT:
        kernel -= 1
        maps = _maps_of(start_bart(["ecalib", "-m", str(sets), "-k", str(kernel), "kspace",
                                    "maps"],
                                   {"kspace": _to_bart(kspace[None])}, ["maps"], threads),
                        kspace.shape)
    return maps


def _maps_of(call: BartCall, shape: tuple[int, ...]) -> np.ndarray:
    """The ``[coil, y, x]`` (``[set, coil, y, x]``) maps of a finished ``ecalib`` call on a
    slice of ``shape``."""
    return _coils_from_bart(call.result()["maps"], *shape)


def _zero_filled_rss(problem: _Problem) -> np.ndarray:
    """Root-sum-of-squares zero-filled images ``[slice, y, x]`` (magnitude)."""
    coils = ifft2c(problem.kspace)
    return np.sqrt((np.abs(coils) ** 2).sum(axis=1))


def _problem(kspace, mask, sens, stack: bool, threads: int | None,
             need_maps: bool = True) -> _Problem:
    """Check the inputs and bring them to the stack layout (ESPIRiT maps estimated here, unless
    ``need_maps`` is False)."""
    k = _as_stack(kspace, stack)
    m = _as_mask(mask, k)
    if isinstance(sens, str) and not need_maps:
        maps = None
    elif isinstance(sens, str):
        if sens != "espirit":
            raise ValueError(f"sens must be an array, None or 'espirit', got {sens!r}")
        maps = _as_maps(espirit_maps(k * m[:, None], stack=True, threads=threads), k, True)
    else:
        maps = _as_maps(sens, k, stack)
    return _Problem(k * m[:, None], m, maps)


def _robust_max(problem: _Problem) -> np.ndarray:
    """Per-slice normalisation ``[slice]``: 99th percentile of the zero-filled RSS image."""
    scale = np.percentile(_zero_filled_rss(problem), ROBUST_MAX_PERCENTILE, axis=(-2, -1))
    if not np.all(scale > 0):
        empty = np.flatnonzero(~(scale > 0)).tolist()
        raise BartInputError(f"slices {empty} hold no sampled signal")
    return scale.astype(np.float32)


def auto_lambda(method: str, noise: float, coils: int = 1) -> float:
    """The regularisation weight for a normalised noise level (``docs/bart_baselines.md``).

    ``noise`` is the complex noise std per k-space sample in the normalised units of the
    problem (zero-filled robust maximum = 1). The rule is ``max(floor * coils ** -floor_exp,
    slope * noise * coils ** exponent)``: the floor is the weight the undersampling artefacts
    alone call for (less with more coils for TV, whose floor more coils resolve), the noise
    term grows with the noise that SENSE amplifies, more with more coils. Parameters
    (:data:`AUTO_LAMBDA`) were fitted against the best-SNR weight on a phantom and a brain
    slice, 1 and 8 coils, noise 0-5 %, for the noise level known and estimated at once.
    """
    floor, floor_exponent, slope, exponent = AUTO_LAMBDA[method]
    return max(floor * coils ** -floor_exponent, slope * noise * coils ** exponent)


def normalised_noise(kspace, mask=None, sens=None, *, stack: bool = False,
                     noise_std: float | None = None) -> float:
    """The noise level :func:`auto_lambda` is given for these data: ``noise_std`` (or the
    estimate of :func:`estimate_noise_std`) over the slices' normalisation, median over slices.
    Arguments as for :func:`cs_wavelet`."""
    problem = _problem(kspace, mask, sens, stack, None, need_maps=False)
    sigma = estimate_noise_std(problem.kspace, problem.mask) if noise_std is None else noise_std
    return float(np.median(sigma / _robust_max(problem)))


def _pics(kspace, mask, sens, lam, iters, threads, stack, method, noise_std) -> np.ndarray:
    """Normalise, run one ``bart pics`` for the whole stack, undo the normalisation."""
    if method not in _REGULARISERS:
        raise ValueError(f"method must be one of {', '.join(_REGULARISERS)}, got {method!r}")
    if lam is not None and not lam > 0:
        raise ValueError(f"lam must be > 0, got {lam}")
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    problem = _problem(kspace, mask, sens, stack, threads)
    slices, _, ny, nx = problem.kspace.shape
    scale = _robust_max(problem)
    if lam is None:
        sigma = (estimate_noise_std(problem.kspace, problem.mask) if noise_std is None
                 else noise_std)
        lam = auto_lambda(method, float(np.median(sigma / scale)), problem.kspace.shape[1])
    max_sos = float((np.abs(problem.maps) ** 2).sum(axis=(1, 2)).max())
    if not max_sos > 0:
        raise BartInputError("sens maps are zero everywhere")
    args = ["pics", "-w", "1", "-i", str(iters), "-R", f"{_REGULARISERS[method]}:3:0:{lam:.8g}"]
    if method == "wavelet":
        args += ["-s", f"{FISTA_STEP / max_sos:.8g}"]
    else:
        args += ["-m"]
        shared = problem.maps.shape[0] == 1 and np.all(problem.mask == problem.mask[:1])
        if slices > 1 and shared:
            args += ["-L", str(1 << SLICE_DIM)]
    inputs = {
        "kspace": _to_bart(problem.kspace / scale[:, None, None, None]),
        "maps": _to_bart(problem.maps),
        "pattern": _to_bart(problem.mask[:, None]),
    }
    image = run_bart([*args, "-p", "pattern", "kspace", "maps", "image"], inputs, ["image"],
                     threads)["image"]
    image = _from_bart(image, slices, ny, nx) * scale[:, None, None]
    return image if stack else image[0]


def cs_wavelet(
    kspace: np.ndarray,
    mask: np.ndarray | None = None,
    sens: np.ndarray | str | None = None,
    lam: float | None = None,
    iters: int = 300,
    threads: int | None = None,
    *,
    stack: bool = False,
    noise_std: float | None = None,
) -> np.ndarray:
    """CS-WV: l1-wavelet regularised SENSE reconstruction by FISTA in ``bart pics``.

    Args:
        kspace: centred k-space ``[y, x]`` or ``[coil, y, x]`` (with ``stack``:
            ``[slice, y, x]`` or ``[slice, coil, y, x]``, reconstructed in one BART call).
        mask: 0/1 sampling mask ``[y, x]`` or ``[slice, y, x]``; None takes every non-zero
            sample (of any coil) as sampled.
        sens: None (single coil), maps ``[coil, y, x]`` (or ``[slice, coil, y, x]``), or
            ``"espirit"`` for ``bart ecalib -m 1`` maps.
        lam: regularisation weight in normalised units (zero-filled robust max = 1); None
            chooses it from the data's noise level (:func:`auto_lambda`).
        iters: FISTA iterations.
        threads: ``OMP_NUM_THREADS`` for BART; None inherits the environment.
        stack: the leading axis is slices.
        noise_std: complex noise std per k-space sample when known (e.g. 1 for prewhitened
            data); None estimates it from the outer k-space (:func:`estimate_noise_std`).

    Returns:
        Complex64 image ``[y, x]`` (``[slice, y, x]``), oriented and scaled like the zero-filled
        adjoint ``sum_c conj(S_c) ifft2c(kspace_c * mask)``.

    Raises:
        ValueError: shapes that do not fit the conventions, a non-binary mask, lam <= 0.
        BartError: BART failed (its message included); BartNotFoundError when it is missing.
    """
    return _pics(kspace, mask, sens, lam, iters, threads, stack, "wavelet", noise_std)


def cs_tv(
    kspace: np.ndarray,
    mask: np.ndarray | None = None,
    sens: np.ndarray | str | None = None,
    lam: float | None = None,
    iters: int = 300,
    threads: int | None = None,
    *,
    stack: bool = False,
    noise_std: float | None = None,
) -> np.ndarray:
    """CS-TV: total-variation regularised SENSE reconstruction by ADMM in ``bart pics``.

    Arguments, return value and errors as :func:`cs_wavelet`; ``iters`` is BART's ADMM budget
    (``-i``).
    """
    return _pics(kspace, mask, sens, lam, iters, threads, stack, "tv", noise_std)

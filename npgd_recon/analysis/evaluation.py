"""Side-by-side evaluation: several reconstructors on the same problems and references.

Used by the model card's quality table, the comparison runs and the benchmarks. Metrics are
the magnitude metrics of :func:`npgd_recon.core.metrics.all_metrics` (definitions there).

Empty planes: SNR, PSNR and NRMSE divide by the reference, so a plane whose reference is empty
(the air beyond the object in the outer planes of a 3-D volume) has no metric (0/0 is NaN, and
float rounding leaves 1e-9-sized residues that give meaningless finite values). Such planes,
those whose reference norm is at most :data:`EMPTY_PLANE` times the largest plane's, get no
record (:func:`measured_planes`, :data:`EMPTY_RULE`); callers report how many were skipped.
CS lambdas are tuned on planes spread over the measured ones (:func:`tuning_planes`).
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from bart_baselines.cs import auto_lambda, normalised_noise
from bart_baselines.tuning import expected_runs, tune_lambda
from npgd_recon.core.errors import NpgdError
from npgd_recon.core.fft import fft2c
from npgd_recon.core.metrics import all_metrics, snr_db_magnitude
from npgd_recon.data.sources import VolumeSlices
from npgd_recon.recon.base import Reconstructor
from npgd_recon.recon.classic import CompressedSensing
from npgd_recon.recon.methods import reconstructor_class
from npgd_recon.sim.noise import complex_noise
from sampling import make_mask

EMPTY_PLANE = 1e-5
EMPTY_RULE = (f"Slices whose reference is empty (norm at most {EMPTY_PLANE:g} of the largest "
              "slice's: zero up to rounding, such as the air beyond the object in the outer "
              "planes of a 3-D volume) have no defined SNR, PSNR or NRMSE; they are skipped "
              "(no record, not in the means) and counted.")


def volume_test_slices(path: str, count: int, axis: int = 2, seed: int = 0,
                       max_size: int | None = None) -> np.ndarray:
    """``count`` evenly spaced slices ``[n, y, x]`` of a volume along ``axis`` (non-empty ones),
    made complex with a seeded smooth phase and cropped to even sizes; with ``max_size``
    shrunk to at most that many pixels a side (a coarser matrix, the same field of view)."""
    source = VolumeSlices(path, axes=(axis,), max_size=max_size)
    picks = np.linspace(0, len(source) - 1, count + 2).round().astype(int)[1:-1]
    rng = np.random.default_rng(seed)
    images = [source.image(int(i), rng) for i in picks]
    ny, nx = (s // 2 * 2 for s in images[0].shape)
    return np.stack([im[:ny, :nx] for im in images]).astype(np.complex64)


def retrospective(images: np.ndarray, accel: float = 5.0, kind: str = "vdrad", seed: int = 0,
                  noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Undersample fully sampled single-coil images: ``(kspace [n, 1, y, x], masks [n, y, x])``.

    Each image gets its own mask (seed ``seed + i``) and complex Gaussian k-space noise of
    standard deviation ``noise * max|x|``.

    Raises:
        NpgdError: the mask generator cannot make ``kind`` at ``accel`` on these images (its
            message).
    """
    rng = np.random.default_rng(seed)
    try:
        masks = np.stack([make_mask(kind, im.shape, accel, seed=seed + i).mask
                          for i, im in enumerate(images)])
    except ValueError as error:  # sampling is a leaf package: its errors are plain ValueErrors
        raise NpgdError(f"{kind} mask at R={accel:g}: {error}") from None
    sigma = noise * np.abs(images).max(axis=(1, 2), keepdims=True)
    kspace = (fft2c(images) + complex_noise(rng, images.shape, sigma)) * masks
    return kspace[:, None].astype(np.complex64), masks


def measured_planes(reference: np.ndarray) -> np.ndarray:
    """Which planes of ``reference [n, y, x]`` are measured: bool ``[n]``, False where the plane
    is empty (norm at most :data:`EMPTY_PLANE` times the largest plane norm, or all zero)."""
    norms = np.linalg.norm(np.abs(reference).reshape(len(reference), -1), axis=1)
    return norms > EMPTY_PLANE * norms.max() if norms.max() > 0 else np.zeros(len(norms), bool)


def tuning_planes(reference: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` measured planes of ``reference [n, y, x]`` spread evenly over them,
    ends excluded (all measured planes when there are no more than ``count``)."""
    measured = np.flatnonzero(measured_planes(reference))
    if len(measured) <= count:
        return measured
    picks = np.linspace(0, len(measured) - 1, count + 2).round().astype(int)[1:-1]
    return measured[picks]


def tuned_lambdas(kspace: np.ndarray, masks: np.ndarray, reference: np.ndarray,
                  maps: np.ndarray | None = None, methods: tuple[str, ...] = ("cswv", "cstv"),
                  slices: int = 3, iters: int = 300, progress: bool = False) -> dict[str, float]:
    """Best-SNR lambda of each CS method among ``methods`` on ``slices`` planes chosen by
    :func:`tuning_planes` (the paper tuned CS for best SNR), for
    :func:`~npgd_recon.recon.methods.make_reconstructor`.

    ``kspace [n, coil, y, x]``, ``masks [n, y, x]``, ``reference [n, y, x]``, ``maps`` as for
    :func:`evaluate`. ``progress`` counts the BART runs of each search against its expected
    total (:func:`bart_baselines.tuning.expected_runs`, raised when the search extends).

    Raises:
        NpgdError: every plane of ``reference`` is empty.
    """
    t = tuning_planes(reference, max(1, slices))
    if not len(t):
        raise NpgdError("the reference is empty (all zero): no plane to tune CS lambdas on")
    y = kspace[t, 0] if maps is None else kspace[t]
    lams = {}
    for method, cls in _cs_classes(methods).items():
        with tqdm(desc=f"tuning {cls.label} lambda", unit=" BART run", total=expected_runs(),
                  disable=not progress, leave=False) as bar:

            def scored(ref: np.ndarray, image: np.ndarray) -> np.ndarray:
                if bar.n >= bar.total:  # the search went beyond the grid's edge
                    bar.total += 1
                bar.update()
                return snr_db_magnitude(ref, image)

            lams[method] = tune_lambda(y, masks[t].astype(np.float32), reference[t], scored,
                                       cls.regulariser, sens=None if maps is None else maps[t],
                                       iters=iters, stack=True)[0]
    return lams


def automatic_lambdas(kspace: np.ndarray, masks: np.ndarray, maps: np.ndarray | None = None,
                      methods: tuple[str, ...] = ("cswv", "cstv")) -> dict[str, float]:
    """The data-driven lambda (:func:`bart_baselines.cs.auto_lambda`, what a CS method uses
    when given none) of each CS method among ``methods``, for these problems (shapes as for
    :func:`evaluate`), so that a report can print it."""
    y = kspace[:, 0] if maps is None else kspace
    noise = normalised_noise(y, masks.astype(np.float32), maps, stack=True)
    return {method: auto_lambda(cls.regulariser, noise, kspace.shape[1])
            for method, cls in _cs_classes(methods).items()}


def _cs_classes(methods: tuple[str, ...]) -> dict[str, type[CompressedSensing]]:
    return {m: cls for m in methods
            if issubclass(cls := reconstructor_class(m), CompressedSensing)}


def evaluate(reference: np.ndarray, kspace: np.ndarray, masks: np.ndarray,
             maps: np.ndarray | None, reconstructors: list[Reconstructor],
             case: str = "case", progress: bool = True) -> tuple[list[dict], dict]:
    """Run every reconstructor on the same problems; per-slice metric records and outputs.

    Returns:
        ``records``: one dict per measured slice (:func:`measured_planes`; empty ones are
        skipped) and method: ``case, slice, method, snr_db, psnr_db, ssim, nrmse, seconds``
        (reconstruction seconds per slice, no I/O), ``device`` and the networks' ``precision``.
        ``outputs``: method -> images ``[n, y, x]`` (every slice).
    """
    records, outputs = [], {}
    measured = np.flatnonzero(measured_planes(reference))
    bar = tqdm(reconstructors, desc=case, disable=not progress, unit="method")
    for recon in bar:
        bar.set_postfix_str(recon.method, refresh=True)
        result = recon(kspace, masks, maps)
        out = outputs[recon.method] = result.images
        per_slice = result.seconds / len(out)
        for i in measured:
            records.append({"case": case, "slice": int(i), "method": recon.method,
                            **all_metrics(reference[i], out[i]), "seconds": per_slice,
                            "device": recon.device.type, "precision": recon.precision})
    return records, outputs


def summarise(records: list[dict]) -> list[dict]:
    """Mean (and standard deviation) of every metric per method, in first-seen order."""
    methods = list(dict.fromkeys(r["method"] for r in records))
    table = []
    for method in methods:
        rows = [r for r in records if r["method"] == method]
        entry = {"method": method, "slices": len(rows)}
        for key in ("snr_db", "psnr_db", "ssim", "nrmse", "seconds"):
            values = np.array([r[key] for r in rows])
            entry[key], entry[key + "_std"] = float(values.mean()), float(values.std())
        table.append(entry)
    return table


def markdown_table(summary: list[dict]) -> str:
    """The summary as a Markdown table (mean ± std)."""
    lines = ["| method | slices | SNR (dB) | PSNR (dB) | SSIM | NRMSE | s / slice |",
             "|---|---|---|---|---|---|---|"]
    for e in summary:
        lines.append(f"| {e['method']} | {e['slices']} | {e['snr_db']:.2f} ± {e['snr_db_std']:.2f}"
                     f" | {e['psnr_db']:.2f} | {e['ssim']:.4f} ± {e['ssim_std']:.4f}"
                     f" | {e['nrmse']:.4f} | {e['seconds']:.3f} |")
    return "\n".join(lines)

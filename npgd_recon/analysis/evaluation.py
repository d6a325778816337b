"""Side-by-side evaluation: several reconstructors on the same problems and references.

Used by the model card's quality table, the comparison runs and the benchmarks. Metrics are
the magnitude metrics of :func:`npgd_recon.core.metrics.all_metrics` (definitions there).
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from bart_baselines import tune_lambda
from npgd_recon.core.errors import NpgdError
from npgd_recon.core.fft import fft2c
from npgd_recon.core.metrics import all_metrics, snr_db_magnitude
from npgd_recon.data.sources import VolumeSlices
from npgd_recon.recon.base import Reconstructor
from npgd_recon.recon.classic import CompressedSensing
from npgd_recon.recon.methods import reconstructor_class
from npgd_recon.sim.noise import complex_noise
from sampling import make_mask


def volume_test_slices(path: str, count: int, axis: int = 2, seed: int = 0) -> np.ndarray:
    """``count`` evenly spaced slices ``[n, y, x]`` of a volume along ``axis`` (non-empty ones),
    made complex with a seeded smooth phase and cropped to even sizes."""
    source = VolumeSlices(path, axes=(axis,))
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


def tuned_lambdas(kspace: np.ndarray, masks: np.ndarray, reference: np.ndarray,
                  maps: np.ndarray | None = None, methods: tuple[str, ...] = ("cswv", "cstv"),
                  slices: int = 3, iters: int = 300, progress: bool = False) -> dict[str, float]:
    """Best-SNR lambda of each CS method among ``methods`` on the first ``slices`` problems
    (the paper tuned CS for best SNR), for :func:`~npgd_recon.recon.methods.make_reconstructor`.

    ``kspace [n, coil, y, x]``, ``masks [n, y, x]``, ``reference [n, y, x]``, ``maps`` as for
    :func:`evaluate`. ``progress`` counts the BART runs of the search as they finish.
    """
    t = slice(0, max(1, slices))
    y = kspace[t, 0] if maps is None else kspace[t]
    solvers = {m: cls for m in methods
               if issubclass(cls := reconstructor_class(m), CompressedSensing)}
    lams = {}
    for method, cls in solvers.items():
        with tqdm(desc=f"tuning {cls.label} lambda", unit="BART run", disable=not progress,
                  leave=False) as bar:

            def scored(ref: np.ndarray, image: np.ndarray) -> np.ndarray:
                bar.update()
                return snr_db_magnitude(ref, image)

            lams[method] = tune_lambda(y, masks[t].astype(np.float32), reference[t], scored,
                                       cls.regulariser, sens=None if maps is None else maps[t],
                                       iters=iters, stack=True)[0]
    return lams


def evaluate(reference: np.ndarray, kspace: np.ndarray, masks: np.ndarray,
             maps: np.ndarray | None, reconstructors: list[Reconstructor],
             case: str = "case", progress: bool = True) -> tuple[list[dict], dict]:
    """Run every reconstructor on the same problems; per-slice metric records and outputs.

    Returns:
        ``records``: one dict per (slice, method): ``case, slice, method, snr_db, psnr_db,
        ssim, nrmse, seconds`` (reconstruction seconds per slice, no I/O), ``device`` and the
        networks' ``precision``.
        ``outputs``: method -> images ``[n, y, x]``.
    """
    records, outputs = [], {}
    bar = tqdm(reconstructors, desc=case, disable=not progress, unit="method")
    for recon in bar:
        bar.set_postfix_str(recon.method, refresh=True)
        result = recon(kspace, masks, maps)
        out = outputs[recon.method] = result.images
        per_slice = result.seconds / len(out)
        for i, (ref, est) in enumerate(zip(reference, out)):
            records.append({"case": case, "slice": i, "method": recon.method,
                            **all_metrics(ref, est), "seconds": per_slice,
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

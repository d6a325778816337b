"""CS-WV and CS-TV through BART: seconds per slice, and the default-lambda check.

    .venv/bin/python benchmarks/bart_cs.py               # seconds per slice (300 iterations)
    .venv/bin/python benchmarks/bart_cs.py --lambda      # default vs best-SNR lambda per slice

Data: slices of the MNI ICBM152 T1 template (``/work/shared/data``, read with nibabel) resized
to the problem shape and given a smooth random phase, and ``bart phantom`` images; k-space by
``fft2c``, single coil, 20 % VDRad masks (one seed per slice). The lambda check tunes every
slice with ``tune_lambda`` and compares the default lambda with the optimum; slices marked
``tune`` informed the defaults in ``bart_baselines.cs``, ``held-out`` ones did not.
SNR is ``snr_db_magnitude``: 20 log10(||x*|| / ||x* - x||) on magnitude images.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from skimage.transform import resize

from bart_baselines import cs_tv, cs_wavelet, run_bart, tune_lambda
from npgd_recon.core.fft import fft2c, ifft2c
from npgd_recon.core.metrics import snr_db_magnitude
from sampling import vdrad

NIFTI = Path("/work/shared/data/mni_icbm152_t1_2009a_1mm.nii.gz")
ACCEL = 5.0
# (name, source: a template orientation or a `bart phantom` option, slice index, role)
LAMBDA_SLICES = [
    ("axial-60", "axial", 60, "tune"),
    ("axial-100", "axial", 100, "tune"),
    ("coronal-100", "coronal", 100, "tune"),
    ("sagittal-70", "sagittal", 70, "tune"),
    ("shepp-logan", "phantom", 0, "tune"),
    ("axial-80", "axial", 80, "held-out"),
    ("axial-120", "axial", 120, "held-out"),
    ("coronal-140", "coronal", 140, "held-out"),
    ("sagittal-110", "sagittal", 110, "held-out"),
    ("tubes", "phantom -T", 0, "held-out"),
    ("geometric", "phantom -G", 0, "held-out"),
    ("bart-logo", "phantom -B", 0, "held-out"),
]
TIMING_SHAPES = [(200, 100), (320, 256)]
TIMING_SLICES = [("axial", 70), ("axial", 90), ("axial", 110)]


def smooth_phase(shape: tuple[int, int], seed: int, cutoff: int = 3) -> np.ndarray:
    """Random smooth phase ``[y, x]`` in [-pi, pi]: the lowest (2 cutoff + 1)^2 frequencies."""
    rng = np.random.default_rng(seed)
    side = 2 * cutoff + 1
    spectrum = np.zeros(shape, np.complex64)
    cy, cx = shape[0] // 2, shape[1] // 2
    spectrum[cy - cutoff:cy + cutoff + 1, cx - cutoff:cx + cutoff + 1] = (
        rng.standard_normal((side, side)) + 1j * rng.standard_normal((side, side)))
    field = ifft2c(spectrum).real
    return np.pi * field / np.abs(field).max()


def make_image(source: str, index: int, shape: tuple[int, int], seed: int) -> np.ndarray:
    """A template slice or ``bart phantom`` image ``[y, x]``: resized, max 1, smooth phase."""
    if source.startswith("phantom"):
        options = source.split()[1:]
        plane = run_bart(["phantom", "-x", str(max(shape)), *options, "p"], outputs=["p"])["p"]
    else:
        volume = nib.load(NIFTI).dataobj
        plane = {"axial": volume[:, :, index], "coronal": volume[:, index, :],
                 "sagittal": volume[index, :, :]}[source].T[::-1]
    magnitude = resize(np.abs(np.asarray(plane)).astype(np.float32), shape, anti_aliasing=True)
    magnitude /= magnitude.max()
    return (magnitude * np.exp(1j * smooth_phase(shape, seed))).astype(np.complex64)


def undersample(image: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(kspace * mask, mask)`` of a 20 % VDRad mask for ``image [y, x]``."""
    mask = vdrad(image.shape, ACCEL, seed=seed).mask
    return (fft2c(image) * mask).astype(np.complex64), mask


def timing_table(iters: int, threads: int | None) -> list[str]:
    """Seconds per slice of CS-WV and CS-TV, a stack of three slices in one BART call."""
    lines = ["| size | slices | CS-WV s/slice | CS-TV s/slice |", "|---|---|---|---|"]
    for shape in TIMING_SHAPES:
        images = [make_image(o, i, shape, seed) for seed, (o, i) in enumerate(TIMING_SLICES)]
        mask = vdrad(shape, ACCEL, seed=0).mask
        kspace = np.stack([fft2c(image) * mask for image in images])
        seconds = []
        for reconstruct in (cs_wavelet, cs_tv):
            start = time.perf_counter()
            reconstruct(kspace, mask, iters=iters, threads=threads, stack=True)
            seconds.append((time.perf_counter() - start) / len(images))
        lines.append(f"| {shape[0]}x{shape[1]} | {len(images)} | {seconds[0]:.2f} | "
                     f"{seconds[1]:.2f} |")
    return lines


def lambda_table(shape: tuple[int, int], iters: int, threads: int | None) -> list[str]:
    """Zero-filled, tuned and default-lambda SNR (dB) per slice, CS-WV and CS-TV."""
    lines = ["| slice | role | ZF | WV best lam | WV best | WV default | WV diff | TV best lam | "
             "TV best | TV default | TV diff |", "|---" * 11 + "|"]
    for seed, (name, source, index, role) in enumerate(LAMBDA_SLICES):
        image = make_image(source, index, shape, seed)
        kspace, mask = undersample(image, seed)
        cells = [name, role, f"{snr_db_magnitude(image, ifft2c(kspace)):.2f}"]
        for method, reconstruct in (("wavelet", cs_wavelet), ("tv", cs_tv)):
            best, table = tune_lambda(kspace, mask, image, snr_db_magnitude, method, iters=iters,
                                      threads=threads)
            tuned = dict(table)[best]
            default = snr_db_magnitude(image, reconstruct(kspace, mask, iters=iters,
                                                          threads=threads))
            cells += [f"{best:.2g}", f"{tuned:.2f}", f"{default:.2f}", f"{default - tuned:+.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lambda", dest="check_lambda", action="store_true",
                        help="run the default-lambda check instead of the timing")
    parser.add_argument("--iters", type=int, default=300, help="FISTA / ADMM iterations")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for BART")
    args = parser.parse_args(argv)
    threads = args.threads or os.environ.get("OMP_NUM_THREADS") or "inherited"
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"BART threads: {threads}, {args.iters} iterations, {time.strftime('%Y-%m-%d')}")
    if args.check_lambda:
        lines = lambda_table((200, 100), args.iters, args.threads)
    else:
        lines = timing_table(args.iters, args.threads)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

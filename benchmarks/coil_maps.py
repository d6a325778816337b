"""Coil maps for 3-D scans: per-plane ESPIRiT against one volumetric calibration (issue 28).

    python benchmarks/coil_maps.py [--matrix 192x160x32] [--coils 8] [--noise 0.003]
                                   [--threads 1] [--variants NAME ...] [--no-network]

Scan: the Colin27 template (mricron-data) resampled to ``--matrix`` (NYxNZxNX as
``npgd-simulate``; readout along NX) with a smooth phase, peak 1, written by ``write_scan`` as a
3-D scan with ``--coils`` synthetic coils, complex k-space noise ``--noise`` and no noise
readouts (so no prewhitening), read back as the pipeline reads it (hybrid space
``[n, coil, y, x]``) and undersampled 5x with the pipeline's VDRad mask (24x24 calibration
centre).

Each variant computes maps from the undersampled stack: ``per-plane`` (one ``ecalib`` per
plane, the maps before issue 28), ``volume`` (:func:`espirit_maps_volume` with its defaults),
``volume-crop-0.8`` (BART's crop), ``volume-kernel-444`` (kernel 4x4x4, calibration 16^3),
``caldir`` (``bart caldir 24`` on the 3-D k-space), and, only when named in ``--variants``,
``volume-full-grid`` (no coarse grid) and ``volume-bart-defaults`` (kernel 6x6x6, calibration
24^3, crop 0.8). Columns:

- wall s / cpu s: seconds per volume for the maps, wall clock and CPU (BART's processes plus
  this one's numpy work; CPU time is the fairer number on a shared machine).
- map fit mean / p1: ``|<s, S>|`` (``S`` the simulator's true maps, both unit norm over coils,
  so 1 means the same coil subspace whatever the phase) over the object (magnitude > 5 % of the
  peak): its mean and 1st percentile.
- support: fraction of the volume where the maps are non-zero.
- CS-WV / NPGD: SNR (dB) of the reconstruction with those maps against the truth: CS-WV by
  ``cs_wavelet`` (300 FISTA iterations, fixed ``lam=CS_LAMBDA``, the automatic rule's choice for
  this scan rounded), the shipped default network by ``make_reconstructor("npgd")``.
  SNR = 20 log10(||x*|| / ||x* - x||) on magnitudes over the whole volume.
  Truth ``x*``: the simulator's image (not a reconstruction with either kind of maps, which
  would favour that kind). A reconstruction is ``x * <s, S>`` at best, so the SNR sees the map
  error, and 0 outside the maps' support.
- dCS / dNPGD: the SNR change against the first variant, the per-plane maps unless
  ``--variants`` says otherwise (the acceptance rule: no drop beyond 0.1 dB).

Not a test: 13 minutes at 192x160x32 on two cores shared with other jobs, most of it the network
on the CPU (``--no-network``: a few minutes). The two slow variants (``--variants``) add about
15 s and over a minute of map estimation.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nibabel
import numpy as np
from scipy import ndimage

from bart_baselines.cs import cs_wavelet, espirit_maps
from bart_baselines.espirit import espirit_maps_volume
from bart_baselines.runner import run_bart
from npgd_recon.core.metrics import snr_db_magnitude
from npgd_recon.io.ismrmrd_file import read_raw
from npgd_recon.recon.pipeline import undersample
from npgd_recon.sim.phase import smooth_phase
from npgd_recon.sim.scan_writer import ScanSettings, ScanTruth, write_scan

CH2 = "/usr/share/mricron/templates/ch2.nii.gz"
CS_LAMBDA = 2.5e-3
ACCEL = 5.0


def caldir_maps(kspace: np.ndarray, threads: int) -> np.ndarray:
    """``bart caldir 24`` (McKenzie's direct method) on the 3-D k-space of a hybrid stack
    (calibration size below the readout length, as ``caldir`` demands)."""
    full = np.fft.fftshift(np.fft.fft(np.fft.ifftshift(kspace, axes=0), axis=0, norm="ortho"),
                           axes=0)
    bart = np.ascontiguousarray(full.transpose(0, 2, 3, 1), dtype=np.complex64)
    size = str(min(24, len(kspace) - 1))
    maps = run_bart(["caldir", size, "kspace", "maps"], {"kspace": bart}, ["maps"], threads)["maps"]
    return maps.reshape(bart.shape).transpose(0, 3, 1, 2)


VARIANTS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "per-plane": lambda k, t: espirit_maps(k, stack=True, threads=t),  # today's maps
    "volume": lambda k, t: espirit_maps_volume(k, threads=t),  # the defaults
    "volume-crop-0.8": lambda k, t: espirit_maps_volume(k, crop=0.8, threads=t),
    "volume-kernel-444": lambda k, t: espirit_maps_volume(
        k, kernel=(4, 4, 4), calib=(16, 16, 16), threads=t),
    "caldir": caldir_maps,
    "volume-full-grid": lambda k, t: espirit_maps_volume(k, grid=None, threads=t),
    "volume-bart-defaults": lambda k, t: espirit_maps_volume(  # ecalib's -k, -r and -c
        k, kernel=(6, 6, 6), calib=(24, 24, 24), crop=0.8, threads=t),
}
SLOW = ("volume-full-grid", "volume-bart-defaults")


def network_reconstruction(kspace: np.ndarray, mask: np.ndarray,
                           maps: np.ndarray) -> np.ndarray:
    """The shipped default NPGD network on a stack ``[n, coil, y, x]`` -> images ``[n, y, x]``
    (the one place this script touches the reconstructor API)."""
    from npgd_recon.recon.methods import make_reconstructor

    recon = make_reconstructor("npgd")
    step = recon.chunk(len(kspace))
    return np.concatenate([recon(kspace[i:i + step], mask[i:i + step], maps[i:i + step]).images
                           for i in range(0, len(kspace), step)])


def brain(matrix: tuple[int, int, int]) -> np.ndarray:
    """Colin27 as a complex ``[z, y, x]`` object of ``matrix`` (NY, NZ, NX), peak 1."""
    ny, nz, nx = matrix
    data = np.asarray(nibabel.load(CH2).get_fdata(dtype=np.float32))
    stack = np.rot90(data, axes=(0, 1)).transpose(2, 0, 1)  # [z, y, x], anterior on top
    stack = ndimage.zoom(stack, [t / s for t, s in zip((nz, ny, nx), stack.shape)], order=1)
    image = stack * np.exp(1j * smooth_phase(stack.shape, seed=0))
    return (image / np.abs(image).max()).astype(np.complex64)


def scan(matrix: tuple[int, int, int], coils: int,
         noise: float) -> tuple[np.ndarray, np.ndarray, ScanTruth]:
    """Undersampled hybrid-space k-space ``[n, coil, y, x]``, its mask and the simulator's
    truth of one simulated 3-D scan."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scan.h5"
        truth = write_scan(path, brain(matrix), volumetric=True,
                           settings=ScanSettings(coils=coils, noise=noise, noise_readouts=0))
        volume = read_raw(path).volumes[0]
    kspace, mask = undersample(volume, ACCEL)
    return np.asarray(kspace), np.ascontiguousarray(mask), truth


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (BART)."""
    mine, children = (resource.getrusage(w) for w in (resource.RUSAGE_SELF,
                                                      resource.RUSAGE_CHILDREN))
    return mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime


def volume_snr(truth: np.ndarray, image: np.ndarray) -> float:
    """SNR (dB, magnitudes) over a whole ``[n, y, x]`` volume."""
    return float(snr_db_magnitude(truth.reshape(-1, truth.shape[-1]),
                                  image.reshape(-1, image.shape[-1])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", default="192x160x32", help="NYxNZxNX (readout NX)")
    parser.add_argument("--coils", type=int, default=8)
    parser.add_argument("--noise", type=float, default=0.003)
    parser.add_argument("--threads", type=int, default=1, help="OpenMP threads per BART call")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                        default=[v for v in VARIANTS if v not in SLOW],
                        help=f"default: all but the slow {' and '.join(SLOW)}")
    parser.add_argument("--no-network", action="store_true", help="skip the NPGD column")
    args = parser.parse_args()
    matrix = tuple(int(v) for v in args.matrix.split("x"))
    kspace, mask, truth = scan(matrix, args.coils, args.noise)
    image = truth.image.transpose(2, 1, 0)  # [z, y, x] -> the stack's [n (x), y, z]
    true_maps = truth.maps.transpose(3, 0, 2, 1)
    inside = np.abs(image) > 0.05
    print(f"3-D {args.matrix} (NYxNZxNX), {args.coils} coils, noise {args.noise}, {ACCEL:g}x "
          f"VDRad; stack {kspace.shape}; BART threads {args.threads}", flush=True)
    print("| maps | wall s | cpu s | map fit mean / p1 | support | CS-WV dB | NPGD dB "
          "| dCS | dNPGD |\n|---|---:|---:|---|---:|---:|---:|---:|---:|", flush=True)
    base = None
    for name in args.variants:
        start, cpu = time.perf_counter(), cpu_seconds()
        maps = VARIANTS[name](kspace, args.threads)
        wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        fit = np.abs((maps.conj() * true_maps).sum(axis=1))[inside]
        support = float((np.abs(maps) > 0).any(axis=1).mean())
        snr = [volume_snr(image, cs_wavelet(kspace, mask, maps, lam=CS_LAMBDA,
                                            threads=args.threads, stack=True))]
        snr.append(np.nan if args.no_network else
                   volume_snr(image, network_reconstruction(kspace, mask, maps)))
        base = snr if base is None else base
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {fit.mean():.4f} / "
              f"{np.percentile(fit, 1):.4f} | {support:.2f} | {snr[0]:.2f} | {snr[1]:.2f} | "
              f"{snr[0] - base[0]:+.2f} | {snr[1] - base[1]:+.2f} |", flush=True)


if __name__ == "__main__":
    main()

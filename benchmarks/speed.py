"""Reconstruction speed, side by side in one run on one machine, printed as ratios to CS-WV.

A volume of ``--slices`` 200x100 single-coil problems (MNI template slices resized, 20 % VDRad)
goes through every method in one call per method (BART loops over slices inside one process;
the networks batch ``--batch`` slices, BN folded, channels-last). Network timings are medians of
``--repeats`` runs after a warm-up; CS runs once (it takes seconds). ``npgd-t10k1-f128`` is
timed with untrained weights: speed depends on the architecture only.

    python benchmarks/speed.py --slices 151
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
from scipy import ndimage

from npgd_recon.data import VolumeSlices, random_phase
from npgd_recon.evaluation import retrospective
from npgd_recon.inference import prepare_for_inference
from npgd_recon.model import NeuralPGD
from npgd_recon.reconstruct import Reconstructor, make_reconstructor
from npgd_recon.transforms import NORMALISATION

MNI = "../shared/data/mni_icbm152_t1_2009a_1mm.nii.gz"


def volume(count: int) -> np.ndarray:
    """``count`` axial slices resized to 200x100, complex."""
    source = VolumeSlices(MNI, axes=(2,))
    rng = np.random.default_rng(0)
    picks = np.linspace(0, len(source) - 1, count).round().astype(int)
    images = []
    for i in picks:
        image = source.image(int(i), rng)
        factor = (200 / image.shape[0], 100 / image.shape[1])
        images.append(np.abs(ndimage.zoom(np.abs(image), factor, order=1))
                      * random_phase((200, 100), rng))
    return np.stack(images).astype(np.complex64)


def timed(recon: Reconstructor, kspace, masks, repeats: int) -> float:
    """Median seconds for the whole volume (after one warm-up run for networks)."""
    runs = []
    for _ in range(repeats + (recon.model is not None)):
        start = time.perf_counter()
        recon(kspace, masks)
        runs.append(time.perf_counter() - start)
    return float(np.median(runs[1:] if recon.model is not None else runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=151)
    parser.add_argument("--big-slices", type=int, default=8, help="slices for the F=128 model")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    images = volume(args.slices)
    kspace, masks = retrospective(images, 5.0, seed=1)
    device = torch.device("cpu")
    big = prepare_for_inference(NeuralPGD(iterations=10, blocks=1, features=128).eval())
    methods = {
        "npgd-t10k1-f32": (make_reconstructor("npgd", "npgd-t10k1-f32", "cpu", args.batch),
                           args.slices),
        "resnet-k10-f32": (make_reconstructor("resnet", "resnet-k10-f32", "cpu", args.batch),
                           args.slices),
        "npgd-t10k1-f128 (untrained)": (Reconstructor("npgd", device, big,
                                                      {"normalisation": NORMALISATION},
                                                      "f128", args.batch), args.big_slices),
        "cswv": (make_reconstructor("cswv"), args.slices),
        "cstv": (make_reconstructor("cstv"), args.slices),
    }
    per_slice = {}
    for name, (recon, count) in methods.items():
        repeats = args.repeats if recon.model is not None else 1
        seconds = timed(recon, kspace[:count], masks[:count], repeats)
        per_slice[name] = seconds / count
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"{time.strftime('%Y-%m-%d')}; {args.slices} slices of 200x100, 20 % VDRad\n")
    print("| method | s / slice | s / volume | speed-up vs CS-WV |")
    print("|---|---|---|---|")
    for name, seconds in per_slice.items():
        print(f"| {name} | {seconds:.4f} | {seconds * args.slices:.2f} | "
              f"{per_slice['cswv'] / seconds:.1f}x |")


if __name__ == "__main__":
    main()

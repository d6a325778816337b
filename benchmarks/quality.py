"""Quality of the shipped models against CS-WV / CS-TV (BART, tuned) and zero filling.

Held-out data: slices of the Colin27 brain (Debian ``mricron-data``, a volume no model trained
on), BART's analytic Shepp-Logan k-space (another object family, no inverse crime) and real
scans of other anatomy: the MR images that ``pydicom`` and ``pydicom-data`` ship for their own
tests (abdomen, shoulder, head; reserved for evaluation, never trained or tuned on). All single
coil at 20 % VDRad by default, magnitudes given a seeded smooth phase. CS lambdas are tuned for
best SNR on the first slices of Colin27 and Shepp-Logan (as the paper tuned CS); the reserved
scans use Colin27's lambdas. Prints a Markdown table per case and writes ``OUT/quality.json``
and one comparison picture per case.

    python benchmarks/quality.py --out docs/quality
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from bart_baselines import readcfl
from bart_baselines.runner import find_bart
from npgd_recon.analysis.evaluation import (
    evaluate,
    markdown_table,
    retrospective,
    summarise,
    tuned_lambdas,
    volume_test_slices,
)
from npgd_recon.analysis.figures import save_comparison
from npgd_recon.core.device import describe_hardware
from npgd_recon.core.fft import ifft2c
from npgd_recon.data.sources import DicomImages
from npgd_recon.recon.base import ReconOptions
from npgd_recon.recon.methods import make_reconstructor
from npgd_recon.sim.phase import random_phase

CH2 = "/usr/share/mricron/templates/ch2.nii.gz"
# Real scans of other anatomy, shipped by pydicom (test_files) and pydicom-data (data_store).
RESERVED = {"abdomen-liver": "MR-SIEMENS-DICOM-WithOverlays.dcm", "shoulder": "MR2_UNCR.dcm",
            "head-emri": "emri_small.dcm", "mr-small": "MR_small.dcm"}


def reserved_case(name: str, max_size: int = 256) -> np.ndarray:
    """The images of one reserved pydicom test scan, complex with a seeded smooth phase."""
    import data_store
    import pydicom

    folders = [Path(pydicom.__file__).parent / "data" / "test_files",
               Path(data_store.__file__).parent / "data"]
    path = next(f / name for f in folders if (f / name).exists())
    source = DicomImages([path], max_size)
    rng = np.random.default_rng(11)
    return np.stack([source.image(i, rng) for i in range(len(source))])


def bart_phantom_case(size: int, count: int) -> np.ndarray:
    """Shepp-Logan images from BART's analytic k-space (``bart phantom -k``) with smooth phase."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([find_bart(), "phantom", "-k", "-x", str(size), f"{tmp}/k"], check=True)
        kspace = readcfl(f"{tmp}/k")
    base = ifft2c(kspace)
    rng = np.random.default_rng(5)
    return np.stack([np.abs(base) * random_phase(base.shape, rng) for _ in range(count)]
                    ).astype(np.complex64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/quality"))
    parser.add_argument("--npgd", default="npgd-t10k1-f32")
    parser.add_argument("--resnet", default="resnet-k10-f32")
    parser.add_argument("--slices", type=int, default=12)
    parser.add_argument("--tune-slices", type=int, default=3)
    parser.add_argument("--accel", type=float, default=5.0)
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--iters", type=int, default=300, help="CS iterations")
    parser.add_argument("--precision", default="fp32", help="network precision (fp32, bf16)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    cases = {"colin27-brain": volume_test_slices(CH2, args.slices, axis=2, seed=3),
             "bart-shepp-logan": bart_phantom_case(160, 2)}
    cases.update({case: reserved_case(name) for case, name in RESERVED.items()})
    results = {"machine": describe_hardware(torch.device("cpu")),
               "accel": args.accel, "noise": args.noise, "precision": args.precision,
               "cases": {}}
    for case, images in cases.items():
        kspace, masks = retrospective(images, args.accel, seed=100, noise=args.noise)
        lams = (results["cases"]["colin27-brain"]["lambdas"] if case in RESERVED else
                tuned_lambdas(kspace, masks, images, slices=args.tune_slices, iters=args.iters))
        recons = [make_reconstructor("zerofill")]
        recons += [make_reconstructor(m, ReconOptions(lam=lams[m])) for m in ("cswv", "cstv")]
        recons += [make_reconstructor(m, ReconOptions(weights=w, device="cpu",
                                                      precision=args.precision))
                   for m, w in (("resnet", args.resnet), ("npgd", args.npgd))]
        records, outputs = evaluate(images, kspace, masks, None, recons, case)
        table = summarise(records)
        print(f"\n### {case}: {len(images)} slices {images.shape[1]}x{images.shape[2]}, "
              f"R={args.accel:g}, lambdas {lams}\n")
        print(markdown_table(table))
        results["cases"][case] = {"lambdas": lams, "summary": table, "records": records,
                                  "models": {"npgd": args.npgd, "resnet": args.resnet}}
        k = len(images) // 2
        save_comparison({m: o[k] for m, o in outputs.items()}, images[k],
                        args.out / f"{case}.png",
                        suptitle=f"{case}, slice {k}, R={args.accel:g} VDRad")
    (args.out / "quality.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

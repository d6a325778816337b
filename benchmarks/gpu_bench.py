"""Evaluate the GPU-trained models and time inference on the GPU (benchmarks/gpu_run.sh, step 3).

    python benchmarks/gpu_bench.py --models OUT --device cuda --out OUT/timings.json \
        --validation .gpu/data/ch2.nii.gz

Quality: SNR / SSIM of each model in ``--models`` (``npgd-t10k1``, ``resnet-k10``) on held-out
Colin27 slices (the model card's protocol: axial slices, seeded phase, 20 % VDRad, 1 % k-space
noise), fp32 and bf16. Speed: a 151-slice 200x100 volume and 256 planes of 320x256 (a 3-D
knee), single coil, in fp32 and bf16, with and without ``torch.compile``; medians of
``--repeats`` runs after a warm-up, each ending with the copy back to the host. TFLOP/s counts
the convolutions only (``speed.conv_flops``); the fraction is of the chip's dense bf16 peak
(H100 / H200 SXM: 989 TFLOP/s). ``--rehearsal`` shrinks everything for a CPU dry run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from speed import compiled, conv_flops, timed  # noqa: E402

from npgd_recon.analysis.evaluation import (  # noqa: E402
    evaluate,
    retrospective,
    summarise,
    volume_test_slices,
)
from npgd_recon.core.device import describe_hardware, pick_device  # noqa: E402
from npgd_recon.recon.base import ReconOptions  # noqa: E402
from npgd_recon.recon.methods import make_reconstructor  # noqa: E402
from npgd_recon.recon.network import weights_method  # noqa: E402

BF16_PEAK = {"H100": 989e12, "H200": 989e12}
MODELS = ("npgd-t10k1", "resnet-k10")


def peak(device: torch.device) -> float | None:
    """The chip's dense bf16 peak in FLOP/s, when known."""
    name = describe_hardware(device)
    return next((v for k, v in BF16_PEAK.items() if k in name), None)


def quality(path: Path, validation: str, device: str, count: int) -> dict:
    """SNR / SSIM of one model on held-out slices, fp32 and bf16."""
    images = volume_test_slices(validation, count, axis=2, seed=3)
    kspace, masks = retrospective(images, 5.0, seed=100, noise=0.01)
    out = {}
    for precision in ("fp32", "bf16"):
        options = ReconOptions(weights=str(path), device=device, batch=16, precision=precision)
        recon = make_reconstructor(weights_method(str(path)), options)
        records, _ = evaluate(images, kspace, masks, None, [recon], progress=False)
        entry = summarise(records)[0]
        out[precision] = {k: entry[k] for k in ("snr_db", "ssim")}
    return out


def speed(path: Path, device: torch.device, shape: tuple[int, int], count: int,
          repeats: int) -> list[dict]:
    """Per-volume seconds and TFLOP/s of one model in each precision, compiled or not."""
    rng = np.random.default_rng(0)
    images = (rng.standard_normal((count, *shape)) + 1j * rng.standard_normal((count, *shape)))
    kspace, masks = retrospective(images.astype(np.complex64), 5.0, seed=1)
    rows = []
    for precision in ("fp32", "bf16"):
        for compile_ in (False, True):
            options = ReconOptions(weights=str(path), device=str(device), batch=16,
                                   precision=precision)
            recon = make_reconstructor(weights_method(str(path)), options)
            if compile_:
                recon = compiled(recon)
            start = time.perf_counter()
            seconds, _ = timed(recon, kspace, masks, repeats)
            flops = conv_flops(recon.model, shape[0] * shape[1]) * count
            top = peak(device)
            rows.append({"shape": list(shape), "count": count, "precision": precision,
                         "compile": compile_, "seconds": seconds,
                         "tflops": flops / seconds / 1e12,
                         "fraction_of_bf16_peak": None if top is None else flops / seconds / top,
                         "wall_with_warmup_s": time.perf_counter() - start})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--validation", default="/usr/share/mricron/templates/ch2.nii.gz")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rehearsal", action="store_true", help="tiny sizes, for a CPU run")
    args = parser.parse_args()
    device = pick_device(args.device)
    small = args.rehearsal
    cases = [((200, 100), 4 if small else 151), ((64, 48) if small else (320, 256),
                                                 2 if small else 256)]
    report = {"hardware": describe_hardware(device), "bf16_peak_flops": peak(device),
              "models": {}}
    for name in MODELS:
        path = args.models / f"{name}.safetensors"
        if not path.exists():
            continue
        entry = {"quality": quality(path, args.validation, args.device, 4 if small else 16)}
        print(name, json.dumps(entry["quality"]), flush=True)
        entry["speed"] = [row for shape, count in cases
                          for row in speed(path, device, shape, count, 1 if small else
                                           args.repeats)]
        report["models"][name] = entry
        args.out.write_text(json.dumps(report, indent=1) + "\n")  # partial results survive
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Validation SNR against training step for one or more runs (``RUN/log.csv``), as a PNG.

    python benchmarks/plot_training.py runs/cpu-default runs/resnet-cpu --out docs/training.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from npgd_recon.models.checkpoint import read_metadata  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), constrained_layout=True)
    for run in args.runs:
        with open(run / "log.csv") as f:
            rows = [r for r in csv.DictReader(f) if r["val_snr_db"]]
        arch = read_metadata(run / "model.safetensors")["architecture"]
        label = f"{run.name}: T={arch['iterations']} K={arch['blocks']} F={arch['features']}"
        steps = [int(r["step"]) for r in rows]
        axes[0].plot(steps, [float(r["val_snr_db"]) for r in rows], "o-", label=label)
        axes[1].plot(steps, [float(r["val_ssim"]) for r in rows], "o-", label=label)
    axes[0].set_ylabel("validation SNR (dB)")
    axes[1].set_ylabel("validation SSIM")
    for axis in axes:
        axis.set_xlabel("training step (batch 4)")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Held-out Colin27 slices, 20 % VDRad, 1 % noise", fontsize=9)
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()

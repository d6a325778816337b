"""The paper's T x K sweep on our data: its Table 1 and Fig. 2.

Trains NPGD for every T in ``--iterations`` and K in ``--blocks`` with one step budget (the base
config, ``configs/sweep-cpu.toml`` by default; T=1 is the non-recurrent ResNet), then evaluates
every cell on held-out Colin27 slices (a volume no model trained on; R=5 VDRad, 1 % noise, the
model card's test set) beside zero filling and BART CS-WV / CS-TV with lambda tuned for best SNR.
Runs live in ``RUNS/tTkK/`` and are resumed, so an interrupted sweep continues where it stopped.
Writes ``OUT/sweep.json``, ``OUT/table1.md`` and ``OUT/fig2.png``.

    python benchmarks/sweep.py --runs runs/sweep --out docs/results
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from npgd_recon.analysis.evaluation import (  # noqa: E402
    evaluate,
    retrospective,
    summarise,
    tuned_lambdas,
    volume_test_slices,
)
from npgd_recon.core.device import describe_hardware  # noqa: E402
from npgd_recon.models.checkpoint import read_metadata  # noqa: E402
from npgd_recon.recon.base import ReconOptions  # noqa: E402
from npgd_recon.recon.methods import make_reconstructor  # noqa: E402
from npgd_recon.training.config import Config, load_config  # noqa: E402
from npgd_recon.training.loop import train  # noqa: E402

CH2 = "/usr/share/mricron/templates/ch2.nii.gz"
# The paper's Table 1 (abdomen, 20 % VDRad, F=128, Titan X): (T, K) -> (train h, s, SNR, SSIM).
PAPER = {(10, 1): (2, 0.04, 26.07, 0.9117), (5, 2): (4, 0.10, 26.94, 0.9221),
         (2, 5): (8, 0.12, 26.55, 0.9194), (1, 10): (12, 0.0522, 24.33, 0.8810),
         "cstv": (None, 1.30, 22.20, 0.82), "cswv": (None, 1.16, 22.51, 0.86)}


def train_cell(base: Config, iterations: int, blocks: int, run: Path) -> dict:
    """Train (or resume, or reuse) one cell of the sweep; returns its checkpoint metadata."""
    config = replace(base, model=replace(base.model, iterations=iterations, blocks=blocks))
    weights = run / "model.safetensors"
    if not (weights.exists() and read_metadata(weights)["steps"] >= config.train.steps):
        print(f"training T={iterations} K={blocks} -> {run}", flush=True)
        train(config, run, resume=True)
    return read_metadata(weights)


def figure(cells: list[dict], baselines: dict, out: Path) -> None:
    """Fig. 2: SNR and SSIM against the number of iterations, one curve per K."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for ax, key, label in ((axes[0], "snr_db", "SNR (dB)"), (axes[1], "ssim", "SSIM")):
        for blocks in sorted({c["blocks"] for c in cells}):
            row = sorted((c for c in cells if c["blocks"] == blocks), key=lambda c: c["iterations"])
            ax.plot([c["iterations"] for c in row], [c[key] for c in row], "o-",
                    label=f"{blocks} RB")
        for method, color, style in (("cswv", "k", "--"), ("cstv", "k", ":"),
                                     ("zerofill", "0.6", "-")):
            ax.axhline(baselines[method][key], color=color, linestyle=style, label=method)
        ax.set_xlabel("iterations T")
        ax.set_ylabel(label)
        ax.set_xticks(sorted({c["iterations"] for c in cells}))
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle("T x K sweep, held-out Colin27, R=5 VDRad (cf. the paper's Fig. 2)")
    fig.savefig(out, dpi=120)
    plt.close(fig)


def table(cells: list[dict], baselines: dict, steps: int) -> str:
    """Table 1 in Markdown: our numbers beside the paper's where the paper has the cell."""
    lines = [f"| T | K | params | train min ({steps} steps) | s / slice | SNR (dB) | SSIM "
             "| paper SNR | paper SSIM |", "|---|---|---|---|---|---|---|---|---|"]
    for c in sorted(cells, key=lambda c: (c["iterations"], c["blocks"])):
        paper = PAPER.get((c["iterations"], c["blocks"]))
        lines.append(f"| {c['iterations']} | {c['blocks']} | {c['params']:,} "
                     f"| {c['train_seconds'] / 60:.1f} | {c['seconds']:.3f} | {c['snr_db']:.2f} "
                     f"| {c['ssim']:.4f} | {paper[2] if paper else ''} "
                     f"| {paper[3] if paper else ''} |")
    for method in ("cswv", "cstv", "zerofill"):
        b, paper = baselines[method], PAPER.get(method)
        lines.append(f"| {method} | - | - | - | {b['seconds']:.3f} | {b['snr_db']:.2f} "
                     f"| {b['ssim']:.4f} | {paper[2] if paper else ''} "
                     f"| {paper[3] if paper else ''} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/sweep-cpu.toml"))
    parser.add_argument("--runs", type=Path, default=Path("runs/sweep"))
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument("--iterations", default="1,2,3,5,10")
    parser.add_argument("--blocks", default="1,2,5,10")
    parser.add_argument("--slices", type=int, default=12)
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--cs-iters", type=int, default=300)
    args = parser.parse_args()
    base = load_config(args.config)
    grid = [(t, k) for t in map(int, args.iterations.split(","))
            for k in map(int, args.blocks.split(","))]
    metas = {cell: train_cell(base, *cell, args.runs / f"t{cell[0]}k{cell[1]}") for cell in grid}

    images = volume_test_slices(CH2, args.slices, axis=2, seed=3)
    accel = base.data.accel
    kspace, masks = retrospective(images, accel, seed=100, noise=args.noise)
    lams = tuned_lambdas(kspace, masks, images, iters=args.cs_iters)
    recons = [make_reconstructor("zerofill")]
    recons += [make_reconstructor(m, ReconOptions(lam=lams[m])) for m in ("cswv", "cstv")]
    records, _ = evaluate(images, kspace, masks, None, recons, "colin27")
    baselines = {e["method"]: e for e in summarise(records)}

    cells = []
    for (t, k), meta in metas.items():
        weights = str(args.runs / f"t{t}k{k}" / "model.safetensors")
        recon = make_reconstructor("npgd", ReconOptions(weights=weights, device="cpu",
                                                        batch=len(images)))
        recon(kspace[:1], masks[:1])  # warm-up: first-call allocations are not inference time
        records, _ = evaluate(images, kspace, masks, None, [recon], f"T{t} K{k}")
        summary = summarise(records)[0]
        cells.append({"iterations": t, "blocks": k, "params": sum(
            p.numel() for p in recon.model.parameters()), "train_seconds": meta["train_seconds"],
            **{key: summary[key] for key in ("snr_db", "snr_db_std", "ssim", "ssim_std",
                                             "seconds")}})
        print(f"T={t} K={k}: {summary['snr_db']:.2f} dB, SSIM {summary['ssim']:.4f}", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    steps = base.train.steps
    (args.out / "sweep.json").write_text(json.dumps({
        "hardware": describe_hardware(torch.device("cpu")), "config": base.as_dict(),
        "test": {"volume": CH2, "slices": len(images), "shape": list(images.shape[1:]),
                 "accel": accel, "noise": args.noise, "lambdas": lams},
        "cells": cells, "baselines": baselines}, indent=1))
    (args.out / "table1.md").write_text(table(cells, baselines, steps) + "\n")
    figure(cells, baselines, args.out / "fig2.png")
    print(table(cells, baselines, steps))


if __name__ == "__main__":
    main()

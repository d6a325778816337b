"""Score models on a training config's validation set (the selection set) at several noise
levels and coil counts: what ``npgd-train`` validates, posed more ways.

    python benchmarks/selection.py MODEL[@T] [MODEL[@T] ...]
        [--config configs/cpu-allround-dcn2.toml] [--noise 0.003 0.01 0.02] [--coils 1 4 8]
        [--slices N --skip K] [--out FILE.json]

``MODEL`` is a shipped model's name or a ``.safetensors`` file; ``@T`` unrolls it ``T`` times
instead of its own count. For every noise level the config's validation problems are posed at
each of ``--coils`` (the same images and masks; as ``data.validation_coils`` does),
reconstructed by the model in float32 on the CPU, and scored by magnitude SNR / SSIM against
their images (``npgd_recon.training.loop.validate``). Prints one Markdown row per model: the
mean over coil counts per noise level, then per coil count at the first level.

``--slices N --skip K``: pose ``N`` problems per coil count instead of the config's
``validation_slices`` and score all but the first ``K``. Problem ``i`` is drawn from ``i`` and
the set's seed alone, so with ``K`` the config's count every problem scored is one that no
validation during training and no earlier selection saw.

Not a test: seconds per model and level on 2 cores. The selection set is never the model
card's scans (``docs/data.md``).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset

from npgd_recon.models.checkpoint import load_checkpoint
from npgd_recon.models.registry import resolve_weights
from npgd_recon.training.config import load_config
from npgd_recon.training.loop import datasets, validate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--config", default="configs/cpu-allround-dcn2.toml",
                        help="the training config whose validation set is scored")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.003, 0.01, 0.02])
    parser.add_argument("--coils", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--slices", type=int, help="problems per coil count (default: the "
                        "config's validation_slices)")
    parser.add_argument("--skip", type=int, default=0,
                        help="leave out the first SKIP problems of each coil count")
    parser.add_argument("--out", type=Path, help="write every score to this JSON file")
    args = parser.parse_args()
    data = load_config(args.config).data
    if args.slices is not None:
        if args.slices < 1:
            parser.error(f"--slices must be at least 1, got {args.slices}")
        data = replace(data, validation_slices=args.slices)
    if not 0 <= args.skip < data.validation_slices:
        parser.error(f"--skip must leave problems: 0 <= skip < {data.validation_slices}")
    sets = {(level, coils): Subset(datasets(replace(data, validation_noise=level,
                                                    validation_coils=(coils,)), 1, 0)[1],
                                   range(args.skip, data.validation_slices))
            for level in args.noise for coils in args.coils}
    scores: dict[str, dict] = {}
    print("| model | " + " | ".join(f"{level:g} noise" for level in args.noise) + " | "
          + " | ".join(f"{c} coil(s) at {args.noise[0]:g}" for c in args.coils) + " |")
    print("|---" * (1 + len(args.noise) + len(args.coils)) + "|")
    for spec in args.models:
        weights, _, unroll = spec.rpartition("@")
        if not unroll.isdigit():  # no @T: a name or path (which may hold an @)
            weights, unroll = spec, ""
        model, _ = load_checkpoint(resolve_weights(weights), torch.device("cpu"))
        if unroll:
            model.iterations = int(unroll)
        scores[spec] = {f"{level:g}/{coils}": validate(model, dataset, torch.device("cpu"))
                        for (level, coils), dataset in sets.items()}

        def mean(level: float, key: str, s: dict = scores[spec]) -> float:
            return float(np.mean([s[f"{level:g}/{c}"][key] for c in args.coils]))

        cells = [f"{mean(level, 'snr_db'):.2f} / {mean(level, 'ssim'):.3f}"
                 for level in args.noise]
        cells += [f"{scores[spec][f'{args.noise[0]:g}/{c}']['snr_db']:.2f}" for c in args.coils]
        print(f"| `{spec}` | " + " | ".join(cells) + " |", flush=True)
    if args.out:
        record = {"config": args.config, "problems": data.validation_slices - args.skip,
                  "skip": args.skip, "scores": scores}
        args.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""``npgd-train CONFIG.toml --out RUN/``: train an NPGD or deep-ResNet model."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from npgd_recon.checkpoint import CheckpointError
from npgd_recon.config import load_config
from npgd_recon.train import train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="npgd-train", description=__doc__)
    parser.add_argument("config", type=Path, nargs="?", help="TOML config (defaults if omitted)")
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument("--resume", action="store_true", help="continue from RUN/ checkpoint")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        metrics = train(config, args.out, resume=args.resume, device=args.device,
                        progress=not args.no_progress)
    except (ValueError, OSError, CheckpointError) as error:
        print(f"npgd-train: error: {error}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun: one report, from the writing rank
        print(f"trained -> {args.out / 'model.safetensors'}; validation {metrics}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

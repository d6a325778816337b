"""``npgd-train CONFIG.toml --out RUN/``: train an NPGD or deep-ResNet model.

RUN/ must be new or empty: ``--resume`` continues the run in it, ``--force`` replaces it. Keys,
defaults and examples: docs/training.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from npgd_recon.cli._common import DEVICES, Parser, run
from npgd_recon.core.errors import NpgdError

PROG = "npgd-train"


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog=PROG, description=__doc__)
    parser.add_argument("config", type=Path, nargs="?", help="TOML config (defaults if omitted)")
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true",
                       help="continue the run in RUN/ (a new run if it holds none)")
    start.add_argument("--force", action="store_true",
                       help="replace the run in an existing RUN/ (its model, state and log)")
    parser.add_argument("--device", default="auto", choices=DEVICES,
                        help="where to train (auto: CUDA when present, else CPU)")
    parser.add_argument("--max-seconds", type=float, metavar="S",
                        help="stop after S seconds of training (validated and checkpointed; "
                             "overrides train.max_seconds)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    return run(PROG, lambda: _train(args))


def _train(args: argparse.Namespace) -> int:
    from npgd_recon.training.config import load_config
    from npgd_recon.training.loop import train

    config = load_config(args.config)
    if args.max_seconds is not None:
        if not args.max_seconds > 0:
            raise NpgdError(f"--max-seconds must be positive, got {args.max_seconds:g}")
        config = replace(config, train=replace(config.train, max_seconds=args.max_seconds))
    metrics = train(config, args.out, resume=args.resume, force=args.force, device=args.device,
                    progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun: one report, from the writing rank
        print(f"trained -> {args.out / 'model.safetensors'}; validation {metrics}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

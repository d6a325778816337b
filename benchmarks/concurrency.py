"""Two CS reconstructions at once against one alone, on this machine, in one run.

    python benchmarks/concurrency.py [--method cswv] [--slices 5] [--hog]

Runs ``npgd-recon --method METHOD`` on a simulated multi-slice scan alone, then two copies at
the same time, and prints each run's wall time and the ratio to the solo run (issue 30's goal:
each of two concurrent runs at most 2.5x the solo time on 2 cores; BART's busy-waiting OpenMP
threads made it 10x and more before every call got an explicit thread count and a passive wait
policy, :mod:`bart_baselines.runner`). ``--hog`` adds one busy loop per core during every
measurement, the case of a shared machine. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def _simulate(folder: Path, slices: int) -> Path:
    path = folder / "scan.h5"
    subprocess.run([BIN / "npgd-simulate", "--phantom", "shepp-logan", "--matrix", "192x192",
                    "--slices", str(slices), "--undersample", "4",
                    "--noise", "0.01", "--out", str(path)], check=True, capture_output=True)
    return path


def _start(scan: Path, out: Path, method: str) -> subprocess.Popen:
    return subprocess.Popen([BIN / "npgd-recon", str(scan), "--out", str(out), "--method",
                             method, "--force"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _wait(process: subprocess.Popen, start: float) -> float:
    _, err = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"npgd-recon failed: {err.strip()}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="cswv")
    parser.add_argument("--slices", type=int, default=5)
    parser.add_argument("--hog", action="store_true", help="one busy loop per core meanwhile")
    args = parser.parse_args()
    hogs = [subprocess.Popen(["timeout", "900", "sh", "-c", "while :; do :; done"])
            for _ in range(os.cpu_count() or 1)] if args.hog else []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            scan = _simulate(folder, args.slices)
            _wait(_start(scan, folder / "warm", args.method), time.perf_counter())
            start = time.perf_counter()
            solo = _wait(_start(scan, folder / "solo", args.method), start)
            start = time.perf_counter()
            pair = [_start(scan, folder / f"pair{i}", args.method) for i in range(2)]
            both = [_wait(p, start) for p in pair]
    finally:
        for hog in hogs:
            hog.kill()
    print(f"| run | wall s | x solo |\n|---|---|---|\n| {args.method} alone | {solo:.2f} | 1.00 |")
    for i, seconds in enumerate(both):
        print(f"| {args.method} concurrent #{i + 1} | {seconds:.2f} | {seconds / solo:.2f} |")
    print(f"cores: {os.cpu_count()}; load during the runs: {'busy loops' if hogs else 'none'}")


if __name__ == "__main__":
    main()

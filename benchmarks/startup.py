"""Start-up time of every command, as a ratio to ``python -c pass`` measured in the same run.

    python benchmarks/startup.py [--repeats 5]

Goals (issue: a newcomer's first hour): ``--help`` of every command under 1 s, ``npgd-mask``
(a 200x100 VDRad mask written as .npy, .cfl and PNG) under 1.5 s. Also a working command:
``npgd-recon --method zerofill`` on a 2-slice single-coil 48x40 file (nearly all of it start-up:
the reconstruction takes milliseconds), beside ``python -c "import torch"``, the floor while the
reader's FFT and the reconstructors need torch. Prints a Markdown table with the median of
``--repeats`` runs; not a test (timings depend on the machine).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = ("npgd-recon", "npgd-compare", "npgd-train", "npgd-serve", "npgd-simulate",
            "npgd-analyze", "npgd-mask", "npgd-data")


def seconds(argv: list[str], repeats: int) -> float:
    """Median wall time of ``argv`` over ``repeats`` runs."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def recon_seconds(folder: Path, repeats: int) -> float:
    """Median wall time of ``npgd-recon --method zerofill`` on a small single-coil file."""
    from npgd_recon.sim.phantoms import shepp_logan
    from npgd_recon.sim.scan_writer import write_scan

    write_scan(folder / "scan.h5", shepp_logan((2, 48, 40)))
    tool = shutil.which("npgd-recon", path=str(Path(sys.executable).parent))
    return seconds([tool or "npgd-recon", str(folder / "scan.h5"), "--out", str(folder / "out"),
                    "--method", "zerofill", "--quiet", "--force"], repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    base = seconds([sys.executable, "-c", "pass"], args.repeats)
    rows = [("python -c pass", base, None)]
    for name in COMMANDS:
        tool = shutil.which(name, path=str(bin_dir)) or shutil.which(name)
        if tool is None:
            continue
        rows.append((f"{name} --help", seconds([tool, "--help"], args.repeats), 1.0))
    tool = shutil.which("npgd-mask", path=str(bin_dir)) or shutil.which("npgd-mask")
    with tempfile.TemporaryDirectory() as folder:
        rows.append(("npgd-mask 200x100 vdrad", seconds(
            [tool, str(Path(folder) / "mask"), "--shape", "200x100"], args.repeats), 1.5))
        rows.append(("python -c 'import torch'",
                     seconds([sys.executable, "-c", "import torch"], args.repeats), None))
        rows.append(("npgd-recon 2x48x40 zerofill", recon_seconds(Path(folder), args.repeats),
                     None))
    print("| command | seconds | x python -c pass | goal |")
    print("|---|---:|---:|---|")
    for name, value, goal in rows:
        met = "met" if goal is not None and value < goal else "MISSED"
        verdict = "" if goal is None else f"< {goal:g} s: {met}"
        print(f"| `{name}` | {value:.2f} | {value / base:.1f} | {verdict} |")


if __name__ == "__main__":
    main()

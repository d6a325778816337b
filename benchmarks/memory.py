"""Peak memory of ``npgd-recon`` as a function of the data: 2-D and 3-D, 1-32 coils (issue 30.4).

Each case is a simulated Shepp-Logan scan (``npgd_recon.sim.scan_writer``, noise readouts, 20 %
VDRad acquired: 2-D ``slices x ny x nx`` with VD lines, 3-D ``ny x nz x nx`` with VDRad over
``ky x kz``), written once into ``--work`` and reconstructed by the shipped default model into
a DICOM series. A sampler thread reads the resident memory (``VmRSS``) of the command and of
every process below it (BART) from ``/proc`` every 20 ms; the table's peak is the largest sum
seen, beside the sizes of the data: what was acquired (the raw readouts, complex64) and the
fully sampled hybrid k-space ``[x, coil, ky, kz]`` that a dense reader would hold. A command
whose tree passes ``--limit-gb`` is killed and reported as above the limit.

    python benchmarks/memory.py                   # the grid of benchmarks/RESULTS.md
    python benchmarks/memory.py --cases 3d:256x256x320:32
    python benchmarks/memory.py --pythonpath /tmp/old   # npgd-recon from another checkout

Writes ``--out`` (default ``docs/results/memory.json``) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tqdm import tqdm

DEFAULT_CASES = ("2d:16x256x256:1", "2d:16x256x256:8", "2d:16x256x256:32",
                 "3d:128x128x160:8", "3d:256x256x320:1", "3d:256x256x320:8",
                 "3d:256x256x320:32")
PAGE = os.sysconf("SC_PAGE_SIZE")


def parse_case(text: str) -> tuple[str, tuple[int, int, int], int]:
    """``2d:SLICESxNYxNX:COILS`` or ``3d:NYxNZxNX:COILS`` -> (kind, sizes, coils)."""
    kind, sizes, coils = text.split(":")
    if kind not in ("2d", "3d"):
        raise argparse.ArgumentTypeError(f"case kind must be 2d or 3d, got {kind!r}")
    return kind, tuple(int(s) for s in sizes.split("x")), int(coils)


def simulate(path: Path, kind: str, sizes: tuple[int, int, int], coils: int) -> dict:
    """Write the case's scan (unless present) and return its data sizes in bytes."""
    from npgd_recon.sim.phantoms import shepp_logan
    from npgd_recon.sim.scan_writer import ScanSettings, write_scan
    from sampling import make_mask, multicoil_calib

    settings = ScanSettings(coils=coils, noise=0.002, noise_readouts=32, oversampling=1)
    if kind == "3d":
        ny, nz, nx = sizes
        plane = (ny, nz)
        image = shepp_logan((nz, ny, nx))
    else:
        slices, ny, nx = sizes
        plane = (ny, nx)
        image = shepp_logan((ny, nx))[None].repeat(slices, axis=0)
    options = {"calib": multicoil_calib(plane)} if coils > 1 else {}
    pattern = make_mask("vdrad" if kind == "3d" else "lines", plane, 5.0, seed=0, **options)
    if not path.exists():
        write_scan(path, image, volumetric=kind == "3d", pattern=pattern, settings=settings,
                   keep_maps=False)
    mask = pattern.mask if kind == "3d" else pattern.mask.any(axis=1)
    lines = int(mask.sum()) * (1 if kind == "3d" else sizes[0])
    dense = nx * coils * ny * nz * 8 if kind == "3d" else sizes[0] * coils * ny * nx * 8
    return {"acquired_bytes": lines * coils * nx * 8, "dense_bytes": dense,
            "rate": float(mask.mean())}


def tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and every process below it (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields[21]) * PAGE
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total


def measure(command: list[str], env: dict, limit: int) -> dict:
    """Run ``command``; its wall time, exit status and the peak resident memory of its tree."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    peak, killed = 0, False

    def sample() -> None:
        nonlocal peak, killed
        while process.poll() is None:
            peak = max(peak, tree_rss(process.pid))
            if peak > limit and not killed:
                killed = True
                os.killpg(process.pid, signal.SIGKILL)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    sampler.join()
    return {"seconds": time.perf_counter() - start, "returncode": process.returncode,
            "peak_bytes": peak, "killed_above_limit": killed,
            "error": "" if process.returncode == 0 else stderr.strip().splitlines()[-1:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", type=parse_case,
                        default=[parse_case(c) for c in DEFAULT_CASES])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "npgd-mem",
                        help="where the simulated scans are kept between runs")
    parser.add_argument("--method", default="npgd")
    parser.add_argument("--limit-gb", type=float, default=16.0,
                        help="kill a command whose process tree passes this many GiB")
    parser.add_argument("--pythonpath", type=Path,
                        help="run npgd-recon from this checkout (e.g. the code before a change)")
    parser.add_argument("--out", type=Path, default=Path("docs/results/memory.json"))
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if args.pythonpath is not None:
        env["PYTHONPATH"] = str(args.pythonpath.resolve())
    rows = []
    for kind, sizes, coils in tqdm(args.cases, desc="cases", unit="case"):
        name = f"{kind}-{'x'.join(map(str, sizes))}-{coils}c"
        scan = args.work / f"{name}.h5"
        row = {"case": name, "kind": kind, "sizes": sizes, "coils": coils,
               **simulate(scan, kind, sizes, coils)}
        with tempfile.TemporaryDirectory(dir=args.work) as folder:
            command = [sys.executable, "-m", "npgd_recon.cli.recon", str(scan), "--out",
                       str(Path(folder) / "series"), "--method", args.method]
            row.update(measure(command, env, int(args.limit_gb * 2 ** 30)))
        rows.append(row)
        tqdm.write(format_row(row))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"method": args.method, "pythonpath": str(args.pythonpath),
                                    "rows": rows}, indent=1))
    print(table(rows))
    return 0


def gib(count: float) -> str:
    return f"{count / 2 ** 30:.2f}"


def format_row(row: dict) -> str:
    peak = f">{gib(row['peak_bytes'])} (killed)" if row["killed_above_limit"] else gib(
        row["peak_bytes"])
    status = "" if row["returncode"] == 0 else f" exit {row['returncode']} {row['error']}"
    return (f"| {row['case']} | {gib(row['acquired_bytes'])} | {gib(row['dense_bytes'])} | "
            f"{peak} | {row['seconds']:.1f} |{status}")


def table(rows: list[dict]) -> str:
    head = ("| case | acquired (GiB) | dense k-space (GiB) | peak RSS of npgd-recon (GiB) | "
            "wall (s) |\n|---|---:|---:|---:|---:|")
    return "\n".join([head] + [format_row(r) for r in rows])


if __name__ == "__main__":
    sys.exit(main())

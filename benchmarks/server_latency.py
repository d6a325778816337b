"""Latency of ``npgd-serve``: a request through the server against ``reconstruct_study``
in-process on the same file, and an NPGD request sent while a CS-WV request is running.

    python benchmarks/server_latency.py [--file scan.h5] [--repeats 3] [--device cpu]

Without ``--file`` it simulates a small scan (Shepp-Logan, 2 slices of 96x96, 8 coils, 25 %
of the phase encodes, noise readouts, 2x readout oversampling). The server runs as a separate
``npgd-serve`` process; the client frames its messages as python-ismrmrd-server's ``client.py``
does and times a request from connecting to the server's CLOSE (config, header, acquisitions,
reconstruction, images back), the acquisitions already in memory. In-process time is
``reconstruct_study`` on the already-read study; the two alternate, run by run, so that other
load on the machine falls on both alike (the overhead is the median of the per-pair ratios;
the share of a request outside the server's own processing, from its "processing time" TEXT,
is the part no reconstruction explains).
Goals (issue: concurrency): the server adds at
most 10 % to the in-process time, and the NPGD request sent during a CS-WV request finishes
within 2x its solo time. ``--serial`` also measures that NPGD request on a server limited to one
reconstruction at a time (``--workers 1``, what one global lock did). ``--cs-pair`` measures
only two CS-WV requests sent at once against one alone, on a server with ``--workers`` /
``--threads`` as given (default: its thread budget, one worker per core with one thread each).
Prints a Markdown table of medians; not a test (timings depend on the machine).
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import ismrmrd

from npgd_recon.io.ismrmrd_file import read_raw
from npgd_recon.recon.base import ReconOptions
from npgd_recon.recon.methods import make_reconstructor
from npgd_recon.recon.pipeline import reconstruct_study

CONFIG_FILE, HEADER, CLOSE, TEXT, ACQUISITION, IMAGE = 1, 3, 4, 5, 1008, 1022
SIMULATE = ["--phantom", "shepp-logan", "--matrix", "96x96", "--slices", "2", "--coils", "8",
            "--undersample", "4", "--noise", "0.01", "--noise-readouts", "16",
            "--oversampling", "2"]


def read_stream(path: Path) -> tuple[str, list[bytes]]:
    """The XML header and every acquisition of a file, as message bytes."""
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=False) as dataset:
        header = dataset.read_xml_header()
        messages = [struct.pack("<H", ACQUISITION) + dataset.read_acquisition(i).to_bytes()
                    for i in range(dataset.number_of_acquisitions())]
    return header.decode() if isinstance(header, bytes) else header, messages


def request(address: tuple[str, int], header: str, acquisitions: list[bytes], config: str,
            started: threading.Event | None = None, inside: list | None = None) -> float:
    """Seconds from connecting to the server's CLOSE; ``started`` is set at the server's
    first TEXT (sent when the stream's first acquisition arrives); the server's own processing
    seconds (its "processing time" TEXT) are appended to ``inside``."""
    start = time.perf_counter()
    with socket.create_connection(address, timeout=600) as sock:
        xml = header.encode() + b"\0"
        sock.sendall(struct.pack("<H1024s", CONFIG_FILE, config.encode())
                     + struct.pack("<HI", HEADER, len(xml)) + xml + b"".join(acquisitions)
                     + struct.pack("<H", CLOSE))
        stream = sock.makefile("rb")
        images = 0
        while True:
            message_id = struct.unpack("<H", stream.read(2))[0]
            if message_id == CLOSE:
                break
            if message_id == IMAGE:
                ismrmrd.Image.deserialize_from(stream.read)
                images += 1
            elif message_id == TEXT:
                text = stream.read(struct.unpack("<I", stream.read(4))[0]).decode()
                if text.startswith("ERROR"):
                    raise RuntimeError(text)
                if started is not None:
                    started.set()
                if inside is not None and "processing time" in text:
                    inside.append(float(text.split(" images, ")[1].split(" ms")[0]) / 1e3)
            else:
                raise RuntimeError(f"unexpected message id {message_id}")
    if images == 0:
        raise RuntimeError("the server sent no images")
    return time.perf_counter() - start


def paired(path: Path, address, header, acquisitions, method: str, device: str,
           repeats: int) -> tuple[float, float, float, float]:
    """Medians of in-process and server seconds, run alternately after one warm-up each, the
    median of the per-pair ratios server / in-process, and the median share of a request
    spent outside the server's processing (transfer, framing, images)."""
    study = read_raw(path)
    recon = make_reconstructor(method, ReconOptions(device=device))  # the server's model
    reconstruct_study(study, recon, progress=False)
    request(address, header, acquisitions, method)
    inside, served, processing = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        reconstruct_study(study, recon, progress=False)
        inside.append(time.perf_counter() - start)
        served.append(request(address, header, acquisitions, method, inside=processing))
    ratios = [s / i for s, i in zip(served, inside, strict=True)]
    outside = [1 - p / s for p, s in zip(processing, served, strict=True)]
    return (statistics.median(inside), statistics.median(served), statistics.median(ratios),
            statistics.median(outside))


def start_server(device: str, workers: int | None,
                 threads: int | None = None) -> tuple[subprocess.Popen, tuple[str, int]]:
    """An ``npgd-serve`` process on a free port."""
    argv = [sys.executable, "-m", "npgd_recon.cli.serve", "--port", "0", "--device", device,
            "--log-level", "warning"]
    if workers is not None:
        argv += ["--workers", str(workers)]
    if threads is not None:
        argv += ["--threads", str(threads)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    banner = process.stdout.readline()
    if "listening on" not in banner:
        process.kill()
        raise RuntimeError(f"npgd-serve did not start: {banner!r}")
    host, port = banner.split("listening on ")[1].split()[0].rsplit(":", 1)
    print(f"# {banner.strip()}", file=sys.stderr)
    return process, (host, int(port))


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then read what the server still prints ("npgd-serve: stopped")."""
    process.terminate()
    process.communicate(timeout=60)


def during(address, header, acquisitions, background: str, foreground: str) -> tuple[float,
                                                                                       float]:
    """Seconds of a ``foreground`` request sent once a ``background`` request is running, and
    of the background request."""
    started, result = threading.Event(), {}
    thread = threading.Thread(target=lambda: result.setdefault(
        "background", request(address, header, acquisitions, background, started)))
    thread.start()
    if not started.wait(600):
        raise RuntimeError("the background request never started")
    time.sleep(0.5)  # into the background reconstruction
    seconds = request(address, header, acquisitions, foreground)
    thread.join()
    return seconds, result["background"]


def together(address, header, acquisitions, config: str, count: int) -> list[float]:
    """Seconds of ``count`` requests sent at once."""
    seconds: list[float] = []
    threads = [threading.Thread(target=lambda: seconds.append(
        request(address, header, acquisitions, config))) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return seconds


def cs_pair(address, header, acquisitions, repeats: int) -> tuple[float, float, float]:
    """Medians over ``repeats`` of: one CS-WV request alone; the slower of two sent at once;
    the faster of the two. Alone and together alternate, after one warm-up request."""
    request(address, header, acquisitions, "cswv")
    alone, slower, faster = [], [], []
    for _ in range(repeats):
        alone.append(request(address, header, acquisitions, "cswv"))
        seconds = together(address, header, acquisitions, "cswv", 2)
        slower.append(max(seconds))
        faster.append(min(seconds))
    return statistics.median(alone), statistics.median(slower), statistics.median(faster)


def print_cs_pair(args: argparse.Namespace, path: Path) -> None:
    """``--cs-pair``: the table of two CS-WV requests at once against one alone."""
    header, acquisitions = read_stream(path)
    process, address = start_server(args.device, args.workers, args.threads)
    try:
        alone, slower, faster = cs_pair(address, header, acquisitions, args.repeats)
    finally:
        stop(process)
    print("| cswv requests | seconds | |\n|---|---:|---|")
    print(f"| one alone | {alone:.2f} | |")
    print(f"| two at once: the slower | {slower:.2f} | {slower / alone:.2f}x alone |")
    print(f"| two at once: the faster | {faster:.2f} | {faster / alone:.2f}x alone |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, help="ISMRMRD raw file (default: simulated)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--methods", default="npgd,cswv",
                        help="methods timed in-process and through the server (default "
                             "npgd,cswv; the concurrency rows always use both)")
    parser.add_argument("--serial", action="store_true",
                        help="also time the NPGD request on a --workers 1 server")
    parser.add_argument("--cs-pair", action="store_true",
                        help="only time two CS-WV requests at once against one alone")
    parser.add_argument("--workers", type=int, help="--workers of the --cs-pair server")
    parser.add_argument("--threads", type=int, help="--threads of the --cs-pair server")
    args = parser.parse_args()
    methods = [name for name in args.methods.split(",") if name]
    with tempfile.TemporaryDirectory() as folder:
        path = args.file
        if path is None:
            from npgd_recon.cli.simulate import main as simulate

            path = Path(folder) / "scan.h5"
            if simulate([*SIMULATE, "--out", str(path)]) != 0:
                raise SystemExit("simulation failed")
        if args.cs_pair:
            print_cs_pair(args, path)
            return
        header, acquisitions = read_stream(path)
        rows, results = [], {}
        process, address = start_server(args.device, None)
        try:
            for method in methods:
                timed = paired(path, address, header, acquisitions, method, args.device,
                               args.repeats)
                for key, value in zip(("in_process", "server", "ratio", "outside"), timed,
                                      strict=True):
                    results[f"{method}_{key}"] = value
            results["npgd_during_cswv"], results["cswv_with_npgd"] = during(
                address, header, acquisitions, "cswv", "npgd")
            results["npgd_solo_after"] = request(address, header, acquisitions, "npgd")
        finally:
            stop(process)
        if args.serial:
            process, address = start_server(args.device, 1)
            try:
                request(address, header, acquisitions, "npgd")  # load and warm up
                results["npgd_during_cswv_serial"], _ = during(address, header, acquisitions,
                                                               "cswv", "npgd")
            finally:
                stop(process)
    for method in methods:
        inside, served = results[f"{method}_in_process"], results[f"{method}_server"]
        rows.append((f"{method}: in-process `reconstruct_study`", f"{inside:.2f}", ""))
        rows.append((f"{method}: through npgd-serve", f"{served:.2f}",
                     f"{results[f'{method}_ratio'] - 1:+.1%} (goal <= +10 %); "
                     f"{results[f'{method}_outside']:.1%} of it outside the reconstruction"))
    solo = statistics.mean(results[k] for k in ("npgd_server", "npgd_solo_after") if k in results)
    rows.append(("npgd sent during a cswv request", f"{results['npgd_during_cswv']:.2f}",
                 f"{results['npgd_during_cswv'] / solo:.2f}x solo (goal <= 2x)"))
    rows.append(("that cswv request", f"{results['cswv_with_npgd']:.2f}", ""))
    if "npgd_during_cswv_serial" in results:
        serial = results["npgd_during_cswv_serial"]
        rows.append(("npgd during cswv, `--workers 1`", f"{serial:.2f}",
                     f"{serial / solo:.2f}x solo"))
    print("| request | seconds | |\n|---|---:|---|")
    for row in rows:
        print(f"| {row[0]} | {row[1]} | {row[2]} |")
    print(json.dumps({key: round(value, 3) for key, value in results.items()}), file=sys.stderr)


if __name__ == "__main__":
    main()

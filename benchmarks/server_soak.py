"""A bounded soak of ``npgd-serve``: several clients at once for minutes, mixed configs, some
killed mid-stream, some malformed; per window the images returned, request latency and the
server process's RSS, threads and open file descriptors.

    python -m benchmarks.server_soak [--minutes 30] [--clients 4] [--workers W] [--threads T]

(run from the repository root: the clients are ``tests/server/mrd_client.py``'s, which frame
every message as python-ismrmrd-server's ``client.py`` does). The server is a separate
``npgd-serve`` process (CPU, default method npgd with the shipped model) on a simulated scan
(Shepp-Logan, 2 slices 64x64, 4 coils, R=3, noise readouts). First each config is streamed
alone: those replies are the references. Then every client loops until the time is up, drawing
(seeded) one of

- a complete stream (6 in 10) with config ``npgd``, ``cswv`` or ``npgd`` with ``int16`` output:
  it must get every image, each message byte for byte the reference's (pixels, header, meta);
- a client killed mid-stream (2 in 10): the connection ends (reset, or closed) inside an
  acquisition, or right after its CLOSE once the first reply arrived;
- a malformed stream (2 in 10): bytes that are not MRD, a header declaring 4 GiB, an unknown
  config; it must get an ``ERROR`` ``TEXT`` and ``CLOSE``.

References are solo replies through the same server, not ``npgd-recon``'s files: the server
reconstructs slice by slice and the CLI a whole file per call, which agree to float rounding
only (``tests/server/test_session.py``), while the server must be bit-reproducible under load.
After the last window the soak waits (bounded) until the server is idle again and compares its
threads and descriptors with the idle state after the references. Prints a Markdown table;
``tests/server/test_soak.py`` runs a one-minute version with assertions.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.server.mrd_client import Reply, Sender, connect, read_file, receive, send_stream

SIMULATE = ["--phantom", "shepp-logan", "--matrix", "64x64", "--slices", "2", "--coils", "4",
            "--undersample", "3", "--noise", "0.01", "--noise-readouts", "8"]
CONFIGS = {  # name: (config message, sent as CONFIG_TEXT)
    "npgd": ("npgd", False),
    "cswv": ("cswv", False),
    "int16": ('method = "npgd"\ndtype = "int16"\n', True),
}
ACTIONS = ("stream",) * 6 + ("killed",) * 2 + ("malformed",) * 2
_POLL_S = 0.2


@dataclass
class Sample:
    """The server process at one moment: resident memory (MiB), threads, open descriptors."""

    rss_mib: float
    threads: int
    fds: int


def sample(pid: int) -> Sample:
    """Read ``/proc/PID`` (Linux)."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return Sample(int(status["VmRSS"].split()[0]) / 1024, int(status["Threads"]),
                  len(os.listdir(f"/proc/{pid}/fd")))


@dataclass
class Outcome:
    """One client request: what it was, how long it took, what came back."""

    action: str
    config: str = ""
    seconds: float = 0.0
    images: int = 0
    lost: int = 0
    mismatched: int = 0
    failure: str = ""


@dataclass
class Window:
    """One window's requests and the server's state at its end."""

    outcomes: list[Outcome]
    state: Sample

    def row(self, index: int) -> str:
        """A Markdown table row."""
        streams = [o for o in self.outcomes if o.action == "stream"]
        latency = sorted(o.seconds for o in streams) or [float("nan")]
        p50, p95 = (statistics.quantiles(latency, n=20)[i] if len(latency) > 1 else latency[0]
                    for i in (9, 18))
        count = {a: sum(o.action == a for o in self.outcomes) for a in ("killed", "malformed")}
        by_config = "/".join(str(sum(o.config == c for o in streams)) for c in CONFIGS)
        return (f"| {index} | {len(streams)} ({by_config}) | {sum(o.images for o in streams)} | "
                f"{count['killed']} | {count['malformed']} | {p50:.2f} | {p95:.2f} | "
                f"{latency[-1]:.2f} | {self.state.rss_mib:.0f} | {self.state.threads} | "
                f"{self.state.fds} |")


@dataclass
class SoakResult:
    """Everything a soak saw."""

    windows: list[Window]
    idle: Sample
    final: Sample
    failures: list[str] = field(default_factory=list)
    server_log: str = ""

    @property
    def outcomes(self) -> list[Outcome]:
        return [o for window in self.windows for o in window.outcomes]

    def table(self, window_s: float) -> str:
        """The per-window table in Markdown."""
        unit = "minute" if window_s == 60 else f"{window_s:g} s window"
        head = (f"| {unit} | complete streams ({'/'.join(CONFIGS)}) | images | killed | "
                "malformed | p50 s | p95 s | max s | RSS MiB | threads | fds |\n"
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        rows = [w.row(i + 1) for i, w in enumerate(self.windows)]
        return "\n".join([head, *rows])


class Server:
    """An ``npgd-serve`` process on a free port, its log in a file."""

    def __init__(self, log_path: Path, extra: list[str]) -> None:
        self._log = log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "npgd_recon.cli.serve", "--port", "0", "--device", "cpu",
             "--log-level", "warning", *extra], stdout=subprocess.PIPE, stderr=self._log,
            text=True)
        self.banner = self.process.stdout.readline().strip()
        if "listening on" not in self.banner:
            self.stop()
            raise RuntimeError(f"npgd-serve did not start: {log_path.read_text()[-2000:]}")
        host, port = self.banner.split("listening on ")[1].split()[0].rsplit(":", 1)
        self.address = (host, int(port))

    def stop(self) -> None:
        """SIGTERM, then wait for the exit."""
        self.process.terminate()
        try:
            self.process.communicate(timeout=60)
        finally:
            self._log.close()


def digests(reply: Reply) -> list[str]:
    """SHA-256 of every image message (header, meta, pixels)."""
    return [hashlib.sha256(image.to_bytes()).hexdigest() for image in reply.images]


class Soak:
    """The clients, the references and the windows of one soak."""

    def __init__(self, server: Server, scan: Path, seed: int, min_actions: int) -> None:
        self.server, self.seed, self.min_actions = server, seed, min_actions
        self.header, self.acquisitions = read_file(scan)
        self.references: dict[str, list[str]] = {}
        self.outcomes: list[Outcome] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def request(self, config: str) -> tuple[Reply, float]:
        """One complete stream with a config of :data:`CONFIGS`, and its seconds."""
        message, text = CONFIGS[config]
        start = time.perf_counter()
        with connect(self.server.address, timeout=300) as sock:
            send_stream(Sender(sock), self.header, self.acquisitions, message, text=text)
            reply = receive(sock)
        return reply, time.perf_counter() - start

    def reference(self) -> None:
        """Each config alone: the replies every later stream must equal."""
        for config in CONFIGS:
            reply, _ = self.request(config)
            if reply.errors or not reply.closed or not reply.images:
                raise RuntimeError(f"reference {config}: {reply.errors or 'no images'}")
            self.references[config] = digests(reply)

    def stream(self, rng: random.Random) -> Outcome:
        config = rng.choice(list(CONFIGS))
        reply, seconds = self.request(config)
        expected, got = self.references[config], digests(reply)
        mismatched = sum(a != b for a, b in zip(expected, got))
        failure = "; ".join(reply.errors) or ("" if reply.closed else "no CLOSE")
        return Outcome("stream", config, seconds, len(got),
                       max(0, len(expected) - len(got)), mismatched, failure)

    def killed(self, rng: random.Random) -> Outcome:
        """A client that dies: reset or closed inside an acquisition, or after its CLOSE once
        the first reply came."""
        with connect(self.server.address, timeout=300) as sock:
            if rng.random() < 0.5:  # a killed process with unread data resets its connection
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sender = Sender(sock)
            if rng.random() < 0.5:
                sender.config_file("cswv" if rng.random() < 0.5 else "npgd")
                sender.header(self.header)
                for acquisition in self.acquisitions[:rng.randrange(1, len(self.acquisitions))]:
                    sender.acquisition(acquisition)
                sock.sendall(struct.pack("<H", 1008) + self.acquisitions[-1].to_bytes()[:200])
            else:
                send_stream(sender, self.header, self.acquisitions, "npgd")
                receive(sock, messages=1)
        return Outcome("killed")

    def malformed(self, rng: random.Random) -> Outcome:
        """A stream the server must refuse with an ERROR TEXT and CLOSE."""
        kind = rng.randrange(3)
        with connect(self.server.address, timeout=300) as sock:
            try:
                if kind == 0:
                    sock.sendall(b"\x99\x99 certainly not MRD " * 40)
                elif kind == 1:
                    sock.sendall(struct.pack("<HI", 3, 0xFFFFFFFF))
                else:
                    sender = Sender(sock)
                    sender.config_text('method = "bogus"')
                    sender.header(self.header)
            except ConnectionError:  # the server refused and closed before the rest was sent
                pass
            reply = receive(sock)
        ok = reply.closed and len(reply.errors) == 1 and not reply.images
        return Outcome("malformed",
                       failure="" if ok else f"malformed {kind}: {reply.texts}")

    def client(self, index: int) -> None:
        """Draw actions until :attr:`stop`, and at least :attr:`min_actions`."""
        rng = random.Random(self.seed * 1000 + index)
        for done in itertools.count():
            if self.stop.is_set() and done >= self.min_actions:
                break
            action = rng.choice(ACTIONS)
            try:
                outcome = getattr(self, action)(rng)
            except (OSError, EOFError) as error:
                outcome = Outcome(action, failure=f"{action}: {error!r}")
            with self.lock:
                self.outcomes.append(outcome)

    def take(self) -> list[Outcome]:
        """The outcomes since the last call."""
        with self.lock:
            taken, self.outcomes = self.outcomes, []
        return taken


def wait_until_idle(pid: int, target: Sample | None, seconds: float) -> Sample:
    """The server's state once it is idle: equal to ``target`` in threads and descriptors, or
    (no target) the same in five samples in a row; the last sample when ``seconds`` run out."""
    deadline = time.monotonic() + seconds
    seen: list[tuple[int, int]] = []
    now = sample(pid)
    while time.monotonic() < deadline:
        now = sample(pid)
        if target is not None and (now.threads, now.fds) == (target.threads, target.fds):
            break
        seen = [*seen[-4:], (now.threads, now.fds)]
        if target is None and len(seen) == 5 and len(set(seen)) == 1:
            break
        time.sleep(_POLL_S)
    return now


def run_soak(seconds: float, window_s: float = 60.0, clients: int = 4, seed: int = 0,
             server_args: tuple[str, ...] = (), min_actions: int = 0,
             report=None) -> SoakResult:
    """Run a soak of ``seconds`` with ``clients`` at once, each doing at least ``min_actions``
    (past the time if need be); ``report(text)`` gets each window's table row as it ends."""
    from npgd_recon.cli.simulate import main as simulate

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        scan = root / "soak.h5"
        if simulate([*SIMULATE, "--out", str(scan), "--force"]) != 0:
            raise RuntimeError("simulation failed")
        server = Server(root / "server.log", list(server_args))
        try:
            soak = Soak(server, scan, seed, min_actions)
            result = _drive(soak, seconds, window_s, clients, report)
        finally:
            server.stop()
        result.server_log = (root / "server.log").read_text()
    for marker in ("Traceback", "internal error"):
        if marker in result.server_log:
            result.failures.append(f"the server log has {marker!r}")
    return result


def _drive(soak: Soak, seconds: float, window_s: float, clients: int, report) -> SoakResult:
    pid = soak.server.process.pid
    soak.reference()
    idle = wait_until_idle(pid, None, 30)
    threads = [threading.Thread(target=soak.client, args=(i,), daemon=True)
               for i in range(clients)]
    for thread in threads:
        thread.start()
    windows, start = [], time.monotonic()
    while len(windows) < max(1, round(seconds / window_s)):
        time.sleep(max(0.0, start + (len(windows) + 1) * window_s - time.monotonic()))
        windows.append(Window(soak.take(), sample(pid)))
        if report is not None:
            report(windows[-1].row(len(windows)))
    soak.stop.set()
    for thread in threads:
        thread.join(300)
    windows[-1].outcomes += soak.take()
    final = wait_until_idle(pid, idle, 60)
    result = SoakResult(windows, idle, final)
    result.failures += [o.failure for o in result.outcomes if o.failure]
    result.failures += [f"{o.config}: {o.lost} images lost" for o in result.outcomes if o.lost]
    result.failures += [f"{o.config}: {o.mismatched} images differ from the solo reference"
                        for o in result.outcomes if o.mismatched]
    if any(thread.is_alive() for thread in threads):
        result.failures.append("a client did not finish within 300 s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--window", type=float, default=60.0, help="seconds per table row")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    extra = [f"--{name}={value}" for name in ("workers", "threads")
             if (value := getattr(args, name)) is not None]
    result = run_soak(args.minutes * 60, args.window, args.clients, args.seed, tuple(extra),
                      report=lambda row: print(row, file=sys.stderr, flush=True))
    print(result.table(args.window))
    outcomes = result.outcomes
    streams = [o for o in outcomes if o.action == "stream"]
    print(f"\n{len(streams)} complete streams, {sum(o.images for o in streams)} images, "
          f"{sum(o.lost for o in streams)} lost, {sum(o.mismatched for o in streams)} not "
          f"bit-identical to the solo reference; "
          f"{sum(o.action == 'killed' for o in outcomes)} killed, "
          f"{sum(o.action == 'malformed' for o in outcomes)} malformed")
    print(f"idle after the references: {result.idle}; idle after the soak: {result.final}")
    for failure in result.failures[:20]:
        print(f"FAILURE: {failure}")
    sys.exit(1 if result.failures else 0)


if __name__ == "__main__":
    main()

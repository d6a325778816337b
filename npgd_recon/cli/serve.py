"""``npgd-serve``: the MRD streaming server (see ``docs/server.md``)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from npgd_recon.cli._common import Parser, add_model_options, run
from npgd_recon.recon.methods import METHODS

PROG = "npgd-serve"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Reconstruct MRD (ISMRMRD protocol) streams from Gadgetron-style pipelines "
                    "and send the images back.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=9002, help="TCP port (default 9002; 0: any)")
    parser.add_argument("--method", choices=METHODS, default="npgd",
                        help="method for clients that do not choose one (default npgd)")
    add_model_options(parser)
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the network (seconds per new image size at first, "
                             "then 1.3-1.5x faster on CPU)")
    parser.add_argument("--dump", type=Path, metavar="DIR",
                        help="also save every received stream as an ISMRMRD file in DIR")
    parser.add_argument("--max-message-mb", type=int, default=64,
                        help="largest accepted message field in MiB (default 64)")
    parser.add_argument("--max-buffer-mb", type=int, default=2048,
                        help="acquisitions one connection may buffer, in MiB (default 2048)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds a client may stay silent while the server waits for it "
                             "(default 60)")
    parser.add_argument("--workers", type=int,
                        help="reconstructions run at once per device (default: 1 on a GPU; "
                             "on the CPU the cores // --threads)")
    parser.add_argument("--threads", type=int,
                        help="CPU threads of each reconstruction, for torch and BART (default: "
                             "the cores // --workers, at least 1); workers x threads may not "
                             "exceed the cores this process may use")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                        default="info", help="server log detail (default info)")
    return parser


def _check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0-65535, got {args.port}")
    for name in ("max_message_mb", "max_buffer_mb", "timeout", "workers", "threads"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check(args, parser)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(message)s")
    from npgd_recon.core.threads import apply_thread_budget
    from npgd_recon.recon.base import ReconOptions
    from npgd_recon.server.session import MIB, Limits, ReconstructorPool
    from npgd_recon.server.transport import ReconServer

    started: list[ReconServer] = []

    def start() -> int:
        if args.dump is not None:
            args.dump.mkdir(parents=True, exist_ok=True)
        options = ReconOptions(weights=args.weights, device=args.device, batch=args.batch,
                               precision=args.precision, compile=args.compile,
                               map_error=args.map_error)
        pool = ReconstructorPool(args.method, options, args.workers, args.threads)
        apply_thread_budget(pool.budget.threads)
        limits = Limits(args.max_message_mb * MIB, args.max_buffer_mb * MIB, args.timeout)
        started.append(ReconServer(pool, args.host, args.port, limits, args.dump))
        return 0

    status = run(PROG, start)
    if status:
        return status
    server = started[0]
    pool = server.pool
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: server.shutdown())
    recon = pool.get(pool.default)
    model = f", model {recon.model_name} ({recon.precision})" if recon.model_name else ""
    host, port = server.address
    _, workers = pool.workers(recon)
    budget = pool.budget
    print(f"npgd-serve: listening on {host}:{port} | method {recon.method}{model} | "
          f"device {recon.device.type} ({workers} at once) | CPU: {budget.workers} workers x "
          f"{budget.threads} threads of {budget.cores} cores", flush=True)
    server.serve_forever()
    print("npgd-serve: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

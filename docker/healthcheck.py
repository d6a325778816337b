"""Health check of the npgd-serve image: a real MRD exchange, not only an open port.

Sends CLOSE (message id 4, little-endian uint16) to the server on 127.0.0.1 and expects its
CLOSE back, which only a server that accepts, runs a session and answers can give (the server
logs it as a connection with 0 images). Exit status 0 healthy, 1 not (Docker's convention).

    python healthcheck.py [PORT]        (default 9002)
"""

from __future__ import annotations

import socket
import sys

MRD_CLOSE = (4).to_bytes(2, "little")


def check(port: int, host: str = "127.0.0.1", timeout_s: float = 8.0) -> str | None:
    """Return None when the server answered CLOSE with CLOSE, else what went wrong."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as conn:
            conn.settimeout(timeout_s)
            conn.sendall(MRD_CLOSE)
            reply = b""
            while len(reply) < len(MRD_CLOSE):
                chunk = conn.recv(len(MRD_CLOSE) - len(reply))
                if not chunk:
                    break
                reply += chunk
    except OSError as error:
        return f"{host}:{port}: {error}"
    if reply != MRD_CLOSE:
        return f"{host}:{port}: answered {reply!r}, not an MRD CLOSE"
    return None


def main(argv: list[str]) -> int:
    port = int(argv[1]) if len(argv) > 1 else 9002
    problem = check(port)
    print(problem or f"127.0.0.1:{port}: MRD CLOSE answered")
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

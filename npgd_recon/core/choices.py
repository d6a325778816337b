"""The device and precision names a user chooses among.

Kept free of heavy imports (torch, sigpy) so that command-line parsers, and with them ``--help``,
start in a fraction of a second.
"""

from __future__ import annotations

__all__ = ["DEVICES", "PRECISIONS"]

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

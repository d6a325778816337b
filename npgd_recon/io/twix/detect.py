"""Tell a Siemens twix file from anything else by its first bytes (never by its name).

A VD/VE file starts with a multi-raid header: a 32-bit size (small, usually 0), the number of
measurements (1..64) and one 152-byte entry per measurement whose 64-bit offset points at that
measurement's protocol header. A VB file has one measurement, its protocol header at byte 0. A
protocol header is a 32-bit length, a 32-bit buffer count and the first buffer's name, a short
NUL-terminated ASCII word (``Config`` in every file seen).
"""

from __future__ import annotations

import struct
from pathlib import Path

__all__ = ["RAID_HEADER_BYTES", "is_twix", "is_multi_raid"]

RAID_ENTRY_BYTES = 152
RAID_HEADER_BYTES = 8 + 64 * RAID_ENTRY_BYTES
_MAX_RAIDS = 64
_MAX_BUFFERS = 64


def is_multi_raid(first: bytes) -> bool:
    """True when the file's first 8 bytes are a VD/VE multi-raid header (twixtools' rule)."""
    size, count = struct.unpack("<II", first[:8])
    return size < 10000 and 1 <= count <= _MAX_RAIDS


def _protocol_start(block: bytes) -> bool:
    """True when ``block`` starts like a twix protocol header."""
    if len(block) < 10:
        return False
    length, buffers = struct.unpack("<II", block[:8])
    name = block[8:].split(b"\0", 1)
    return (16 <= length and 1 <= buffers <= _MAX_BUFFERS and len(name) == 2
            and 0 < len(name[0]) <= 32 and name[0].isascii() and name[0].isalpha())


def is_twix(path: str | Path) -> bool:
    """True when ``path`` holds a Siemens twix (.dat) raw-data file, VB or VD/VE."""
    with open(path, "rb") as file:
        first = file.read(RAID_HEADER_BYTES)
        if len(first) < 8:
            return False
        if not is_multi_raid(first):
            return _protocol_start(first[:64])
        if len(first) < 8 + RAID_ENTRY_BYTES:
            return False
        (offset,) = struct.unpack("<Q", first[16:24])
        if offset < RAID_HEADER_BYTES:
            return False
        file.seek(offset)
        return _protocol_start(file.read(64))

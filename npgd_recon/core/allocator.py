"""glibc's malloc tuned for a reconstruction's working set (issue 28).

On the CPU a network call's tensors are a few MiB (``core.choices.CPU_CALL_BYTES``). glibc serves
such blocks with ``mmap`` until its dynamic threshold has risen past them, and gives the top of
its heap back to the kernel whenever more than twice that threshold is free, so the same few MiB
are mapped, page-faulted in 4 KiB at a time and unmapped again, call after call. With the mmap
threshold fixed at 32 MiB (glibc's largest), 256 MiB of free heap kept before trimming and
64 MiB of padding per heap growth, the single-coil 3-D Colin27 reconstruction (32 planes of
192x160) took 1.0 s instead of 1.7-2.5 s (``benchmarks/RESULTS.md``). The cost is memory the
process keeps mapped after its peak, at most the trim threshold.

:func:`tune_malloc` runs on ``import npgd_recon``. It does nothing where the C library is not
glibc, where the environment already tunes malloc (any ``MALLOC_*`` variable, which glibc reads
at start) or where ``NPGD_MALLOC_TUNING=0``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["MALLOC_SETTINGS", "tune_malloc"]

# mallopt parameters (glibc's malloc.h) and their values
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MALLOC_SETTINGS = {M_MMAP_THRESHOLD: 32 * 2**20, M_TRIM_THRESHOLD: 256 * 2**20,
                   M_TOP_PAD: 64 * 2**20}


def tune_malloc() -> bool:
    """Apply :data:`MALLOC_SETTINGS` through glibc's ``mallopt``; whether it did (module
    docstring for when it does not)."""
    if os.environ.get("NPGD_MALLOC_TUNING", "1") == "0" or any(
            name.startswith("MALLOC_") for name in os.environ):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018  (the attribute exists in glibc only)
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
    applied = [libc.mallopt(parameter, value) == 1
               for parameter, value in MALLOC_SETTINGS.items()]  # each, even if one fails
    return all(applied)

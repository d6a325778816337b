"""BART's ``.hdr`` / ``.cfl`` file pair: complex64 data in column-major order.

The numpy array's axes are BART's dimensions in order (axis 0 = BART dim 0 = READ_DIM), so
``readcfl(writecfl(a))`` is ``a`` and ``bart show`` sees the same dims. Trailing singleton
dimensions are dropped on read.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def _base(name: str | os.PathLike) -> str:
    name = os.fspath(name)
    return name[:-4] if name.endswith((".cfl", ".hdr")) else name


def writecfl(name: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as ``name.hdr`` + ``name.cfl`` (complex64, Fortran order)."""
    base = _base(name)
    data = np.asarray(array, dtype=np.complex64)
    dims = data.shape if data.ndim else (1,)
    Path(base + ".hdr").write_text("# Dimensions\n" + " ".join(str(d) for d in dims) + "\n")
    with open(base + ".cfl", "wb") as f:
        data.reshape(dims).ravel(order="F").tofile(f)


def readcfl(name: str | os.PathLike) -> np.ndarray:
    """Read ``name.hdr`` + ``name.cfl`` into a complex64 array (trailing 1-dims dropped)."""
    base = _base(name)
    try:
        lines = Path(base + ".hdr").read_text().splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"no BART header {base}.hdr") from None
    try:
        at = next(i for i, line in enumerate(lines) if line.strip() == "# Dimensions")
        dims = [int(d) for d in lines[at + 1].split()]
    except (StopIteration, IndexError, ValueError):
        raise ValueError(f"{base}.hdr is not a BART header (no '# Dimensions' line)") from None
    if not dims or min(dims) < 1:
        raise ValueError(f"{base}.hdr has invalid dimensions {dims}")
    while len(dims) > 1 and dims[-1] == 1:
        dims.pop()
    count = int(np.prod(dims))
    data = np.fromfile(base + ".cfl", dtype=np.complex64, count=count)
    if data.size != count:
        raise ValueError(f"{base}.cfl holds {data.size} values, header says {count}")
    return data.reshape(dims, order="F")

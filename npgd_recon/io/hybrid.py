"""A 3-D volume's hybrid space kept as acquired: the readout profiles of its sampled points.

A Cartesian 3-D scan samples lines along the readout ``x`` at some ``(ky, kz)`` phase encodes;
after the inverse FFT along ``x`` every readout position is an independent 2-D problem on the
``ky x kz`` plane. Held densely, the stack ``[x, coil, ky, kz]`` costs the fully sampled size
whatever the acceleration: 5.4 GB of complex64 for a 32-coil 320x256x256 knee, five times the
data acquired at 20 %. :class:`HybridStack` keeps only the acquired profiles
``[line, coil, x]`` with their ``(ky, kz)`` positions and builds dense planes when they are
indexed, so a reconstruction that walks the readout positions in batches needs the acquired data
plus one batch of planes (issue 30, docs/io.md "Memory").

It behaves as a read-only array of shape ``[x, coil, ky, kz]`` for what the pipeline does with
one: ``len``, ``shape``, iteration over planes, basic slicing (integers and slices on any axis;
a slice of ``ky``/``kz`` gathers only the lines inside it), and ``np.asarray`` (the whole dense
stack, for small data and tests).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class HybridStack:
    """The hybrid space ``[x, coil, ky, kz]`` of one 3-D volume, stored as acquired lines.

    Args:
        profiles: complex64 ``[line, coil, x]``, the readout profiles (inverse-FFT'd along x,
            oversampling removed), one per acquired ``(ky, kz)`` point, repeats averaged.
        rows, cols: int ``[line]``, the ``ky`` and ``kz`` index of each profile (distinct pairs).
        plane: ``(ny, nz)``, the phase-encode plane.
    """

    dtype = np.dtype(np.complex64)
    ndim = 4

    def __init__(self, profiles: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                 plane: tuple[int, int]) -> None:
        if profiles.ndim != 3 or len(profiles) != len(rows) or len(rows) != len(cols):
            raise ValueError(f"profiles must be [line, coil, x] with one (row, col) per line, "
                             f"got {profiles.shape}, {len(rows)} rows, {len(cols)} cols")
        self.profiles = profiles.astype(np.complex64, copy=False)
        self.rows = np.asarray(rows, dtype=np.intp)
        self.cols = np.asarray(cols, dtype=np.intp)
        self.plane = (int(plane[0]), int(plane[1]))

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(x, coil, ky, kz)``, as the dense stack."""
        _, coils, nx = self.profiles.shape
        return (nx, coils, *self.plane)

    @property
    def nbytes(self) -> int:
        """Bytes held (profiles and positions), not the dense size."""
        return self.profiles.nbytes + self.rows.nbytes + self.cols.nbytes

    def __len__(self) -> int:
        return self.profiles.shape[2]

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        dense = self[:]
        return dense if dtype is None else dense.astype(dtype, copy=False)

    def masked(self, keep: np.ndarray) -> HybridStack:
        """The stack with only the profiles where ``keep`` (bool ``[ky, kz]``) is True."""
        lines = keep[self.rows, self.cols]
        return HybridStack(self.profiles[lines], self.rows[lines], self.cols[lines], self.plane)

    def __getitem__(self, key) -> np.ndarray:
        """Dense complex64 planes; ``key`` is basic indexing (integers, slices, an Ellipsis)."""
        key = _expand(key)
        if not all(isinstance(k, (int, np.integer, slice)) for k in key):
            raise TypeError(f"HybridStack takes integers and slices, got {key!r}")
        xs, coils, ys, zs = (_range(size, k) for size, k in zip(self.shape, key))
        lines = _inside(self.rows, ys) & _inside(self.cols, zs)
        out = np.zeros((len(xs), len(coils), len(ys), len(zs)), dtype=np.complex64)
        profiles = self.profiles[lines][:, _as_slice(coils)][..., _as_slice(xs)]
        out[:, :, _position(self.rows[lines], ys), _position(self.cols[lines], zs)] = (
            profiles.transpose(2, 1, 0))
        return out[tuple(0 if isinstance(k, (int, np.integer)) else slice(None) for k in key)]


def _expand(key) -> tuple:
    """``key`` as four entries (Ellipsis and missing trailing axes filled with ``:``)."""
    key = key if isinstance(key, tuple) else (key,)
    if any(k is Ellipsis for k in key):
        at = next(i for i, k in enumerate(key) if k is Ellipsis)
        key = key[:at] + (slice(None),) * (5 - len(key)) + key[at + 1:]
    if len(key) > 4:
        raise IndexError(f"too many indices for a [x, coil, ky, kz] stack: {len(key)}")
    return key + (slice(None),) * (4 - len(key))


def _range(size: int, key: int | slice) -> range:
    """The indices ``key`` selects on an axis of ``size`` (an integer: a range of one)."""
    if isinstance(key, slice):
        return range(size)[key]
    index = range(size)[key]  # IndexError when out of range
    return range(index, index + 1)


def _as_slice(values: range) -> slice:
    """A ``range`` as the slice that selects it."""
    stop = values.stop if values.stop >= 0 else None
    return slice(values.start, stop, values.step)


def _inside(index: np.ndarray, values: range) -> np.ndarray:
    """True where ``index`` is one of ``values``."""
    if values.step > 0:
        inside = (index >= values.start) & (index < values.stop)
    else:
        inside = (index <= values.start) & (index > values.stop)
    return inside & ((index - values.start) % values.step == 0)


def _position(index: np.ndarray, values: range) -> np.ndarray:
    """Where each ``index`` (all inside ``values``) sits in ``values``."""
    return (index - values.start) // values.step

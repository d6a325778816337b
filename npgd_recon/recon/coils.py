"""Coil compression: many receive channels become a few virtual coils before ESPIRiT.

ESPIRiT's cost grows with about the cube of the coil count (its calibration matrix has
``kernel volume x coils`` columns, and every voxel gets a ``coils x coils`` eigenproblem): one
volumetric ``bart ecalib`` of the 3-D Colin27 scan took 1.0 s at 8 coils and 6.4 s at 16, two
thirds of the whole ``npgd-recon`` command (``benchmarks/RESULTS.md``, issue 28). The network's
SENSE operator and CS pay per coil too. Arrays of more than ``virtual`` coils are therefore
compressed to ``virtual`` virtual coils (SVD coil compression, Huang et al., MRI 2008): the
coil covariance ``C = D D^H`` of every acquired sample of the volume, and the ``virtual``
eigenvectors of ``C`` with the largest eigenvalues as the rows of an orthonormal matrix ``A``;
the k-space of virtual coil ``v`` is ``sum_c A[v, c] k_c``. ``A`` has orthonormal rows, so
prewhitened data (unit white noise per coil) keeps unit white noise, and the SENSE model holds
for the virtual coils with maps computed from them. One matrix serves a whole volume (every
slice of a 2-D stack, every readout position of a 3-D scan).

``npgd-recon`` and ``npgd-serve`` compress to :data:`VIRTUAL_COILS` by default
(``--virtual-coils``; 0 keeps every coil); data with at most that many coils are left alone, so
the model card's 1-8 coil scans are untouched. ``npgd-compare`` and the analysis tools keep every
coil: they compare methods on the same data and maps, not the product's speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from npgd_recon.core.choices import VIRTUAL_COILS
from npgd_recon.io.hybrid import HybridStack

__all__ = ["VIRTUAL_COILS", "CoilCompression", "coil_compression", "compress"]


@dataclass(frozen=True)
class CoilCompression:
    """``matrix`` complex64 ``[virtual, coil]`` with orthonormal rows, and ``kept``, the
    fraction of the acquired data's energy its virtual coils hold."""

    matrix: np.ndarray
    kept: float

    def describe(self) -> str:
        """E.g. ``16 -> 8 virtual coils (99.6 % of the signal energy)``."""
        virtual, coils = self.matrix.shape
        return f"{coils} -> {virtual} virtual coils ({100 * self.kept:.1f} % of the signal energy)"


def coil_compression(kspace: np.ndarray | HybridStack, virtual: int) -> CoilCompression:
    """The SVD coil compression of ``kspace`` (``[n, coil, y, x]``, unsampled samples 0, or a
    3-D :class:`~npgd_recon.io.hybrid.HybridStack`) to ``virtual`` coils (module docstring).

    Raises:
        ValueError: ``virtual`` is not between 1 and the coil count.
    """
    coils = kspace.shape[1]
    if not 1 <= virtual <= coils:
        raise ValueError(f"virtual coils must be from 1 to the {coils} coils, got {virtual}")
    if isinstance(kspace, HybridStack):
        samples = kspace.profiles.transpose(1, 0, 2).reshape(coils, -1)
    else:
        samples = np.asarray(kspace).transpose(1, 0, 2, 3).reshape(coils, -1)
    covariance = samples @ samples.conj().T
    values, vectors = np.linalg.eigh(covariance.astype(np.complex128))  # ascending
    order = np.argsort(values)[::-1][:virtual]
    total = float(values.clip(min=0).sum())
    kept = float(values[order].clip(min=0).sum()) / total if total > 0 else 1.0
    return CoilCompression(vectors[:, order].conj().T.astype(np.complex64), kept)


def compress(kspace: np.ndarray | HybridStack,
             compression: CoilCompression) -> np.ndarray | HybridStack:
    """``kspace`` in the virtual coils of ``compression``: the same type and layout, with
    ``virtual`` coils."""
    matrix = compression.matrix
    if isinstance(kspace, HybridStack):
        profiles = np.einsum("vc,lcx->lvx", matrix, kspace.profiles, optimize=True)
        return HybridStack(profiles, kspace.rows, kspace.cols, kspace.plane)
    return np.einsum("vc,ncyx->nvyx", matrix, np.asarray(kspace), optimize=True).astype(
        np.complex64, copy=False)

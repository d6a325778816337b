"""Writing a sampling pattern to disk: ``.npy``, BART ``.cfl/.hdr`` and a PNG picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sampling.pattern import SamplingPattern


def save_npy(pattern: SamplingPattern, path: Path) -> None:
    """The bool mask as ``.npy``."""
    np.save(path, pattern.mask)


def save_cfl(pattern: SamplingPattern, base: Path) -> None:
    """The mask as a BART pattern: dims ``[1, ny, nz]`` (BART's PHS1 x PHS2), ones where sampled.

    BART's format is a text ``.hdr`` with the dimensions and a ``.cfl`` of complex64 values in
    column-major order; written here so that ``sampling`` depends on no other package of ours.
    """
    base = Path(str(base).removesuffix(".cfl").removesuffix(".hdr"))
    data = pattern.mask.astype(np.complex64)[None]
    base.with_name(base.name + ".hdr").write_text(
        "# Dimensions\n" + " ".join(str(d) for d in data.shape) + "\n")
    data.ravel(order="F").tofile(base.with_name(base.name + ".cfl"))


def save_png(pattern: SamplingPattern, path: Path,
             axes_labels: tuple[str, str] = ("ky", "kz")) -> None:
    """Two panels: the mask, and the samples coloured by their position in the view order;
    ``axes_labels`` names the rows then the columns (``("ky", "kx")`` for a 2-D slice's plane)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ny, nz = pattern.mask.shape
    when = np.full(pattern.mask.shape, np.nan)
    when[pattern.order[:, 0], pattern.order[:, 1]] = np.arange(len(pattern.order))
    aspect = ny / nz
    fig, axes = plt.subplots(1, 2, figsize=(8, 4 * min(max(aspect, 0.5), 2.0)),
                             constrained_layout=True)
    axes[0].imshow(pattern.mask, cmap="gray", interpolation="nearest")
    axes[0].set_title(f"{pattern.kind} mask, rate {pattern.rate:.2%} (R={pattern.accel:g})")
    image = axes[1].imshow(when, cmap="viridis", interpolation="nearest")
    axes[1].set_title("view order")
    fig.colorbar(image, ax=axes[1], label="sample index")
    for axis in axes:
        axis.set_ylabel(axes_labels[0])
        axis.set_xlabel(axes_labels[1])
    fig.savefig(path, dpi=100)
    plt.close(fig)

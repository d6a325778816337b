"""Pictures people look at: montages of magnitude images (PNG), e.g. ``npgd-recon --png``.

matplotlib is imported on first use only (it costs about a second).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["save_montage", "pyplot"]


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg back end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_montage(images: np.ndarray, path: Path, *, titles: list[str] | None = None,
                 columns: int | None = None, window: float | None = None,
                 suptitle: str = "") -> None:
    """A grid of magnitude images ``[n, y, x]`` in one grey window (0 .. ``window``, by default
    the 99.5th percentile of all of them), saved as PNG."""
    plt = pyplot()
    magnitude = np.abs(np.asarray(images))
    n = len(magnitude)
    columns = columns or min(n, 6)
    rows = -(-n // columns)
    window = window or float(np.percentile(magnitude, 99.5)) or 1.0
    ny, nx = magnitude.shape[1:]
    fig, axes = plt.subplots(rows, columns, squeeze=False,
                             figsize=(2.4 * columns * nx / max(nx, ny) + 0.2,
                                      2.4 * rows * ny / max(nx, ny) + (0.5 if titles else 0.2)))
    for axis in axes.ravel():
        axis.axis("off")
    for i, image in enumerate(magnitude):
        axis = axes.ravel()[i]
        axis.imshow(image, cmap="gray", vmin=0, vmax=window, interpolation="nearest")
        if titles:
            axis.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)

"""Pictures people look at: montages of magnitude images (PNG), e.g. ``npgd-recon --png``.

matplotlib is imported on first use only (it costs about a second).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["save_montage", "pyplot"]

TITLE_POINTS = 8
# inches per character and per line of a title at TITLE_POINTS (DejaVu Sans: about 0.6 em wide,
# 1.2 em high), with room to spare so that neighbouring titles never touch
_TITLE_CHAR = 0.6 * TITLE_POINTS / 72 * 1.1
_TITLE_LINE = 1.2 * TITLE_POINTS / 72


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
    the 99.5th percentile of all of them), saved as PNG. Tiles are 2.4 inches on the long side,
    and wide enough that ``titles`` (one per image, lines split by ``\\n``) never overlap."""
    plt = pyplot()
    magnitude = np.abs(np.asarray(images))
    n = len(magnitude)
    columns = columns or min(n, 6)
    rows = -(-n // columns)
    window = window or float(np.percentile(magnitude, 99.5)) or 1.0
    ny, nx = magnitude.shape[1:]
    lines = [title.split("\n") for title in titles or []]
    title_width = max((len(line) for title in lines for line in title), default=0) * _TITLE_CHAR
    title_height = max((len(title) for title in lines), default=0) * _TITLE_LINE
    tile = (max(2.4 * nx / max(nx, ny), title_width + 0.1), 2.4 * ny / max(nx, ny))
    fig, axes = plt.subplots(rows, columns, squeeze=False,
                             figsize=(tile[0] * columns + 0.2,
                                      (tile[1] + title_height + 0.1) * rows
                                      + (0.4 if suptitle else 0.1)))
    for axis in axes.ravel():
        axis.axis("off")
    for i, image in enumerate(magnitude):
        axis = axes.ravel()[i]
        axis.imshow(image, cmap="gray", vmin=0, vmax=window, interpolation="nearest")
        if titles:
            axis.set_title(titles[i], fontsize=TITLE_POINTS)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)

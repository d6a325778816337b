"""Figures of the analyses and comparisons (PNG); montages are :mod:`npgd_recon.io.preview`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from npgd_recon.io.preview import pyplot


def save_comparison(outputs: dict[str, np.ndarray], reference: np.ndarray, path: Path, *,
                    labels: dict[str, str] | None = None, suptitle: str = "",
                    error_gain: float = 5.0) -> None:
    """The paper's Fig. 3 layout for one slice: one column per method and the reference, in one
    grey window; beneath each method its error map ``|x - x*|`` magnified ``error_gain`` times."""
    plt = pyplot()
    names = list(outputs)
    ref = np.abs(reference)
    window = float(np.percentile(ref, 99.5)) or 1.0
    ny, nx = ref.shape
    columns = len(names) + 1
    fig, axes = plt.subplots(2, columns, squeeze=False,
                             figsize=(2.2 * columns * nx / max(nx, ny) + 0.2,
                                      4.4 * ny / max(nx, ny) + 0.6))
    for axis in axes.ravel():
        axis.axis("off")
    for j, name in enumerate(names):
        image = np.abs(outputs[name])
        axes[0, j].imshow(image, cmap="gray", vmin=0, vmax=window)
        axes[0, j].set_title((labels or {}).get(name, name), fontsize=8)
        axes[1, j].imshow(np.abs(image - ref) * error_gain, cmap="gray", vmin=0, vmax=window)
    axes[0, -1].imshow(ref, cmap="gray", vmin=0, vmax=window)
    axes[0, -1].set_title("reference", fontsize=8)
    axes[1, -1].text(0.5, 0.5, f"error x{error_gain:g}", ha="center", va="center",
                     transform=axes[1, -1].transAxes, fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_contraction_plot(summary: dict, path: Path, *, title: str = "") -> None:
    """The paper's Fig. 5 layout from :func:`npgd_recon.analysis.contraction.summarise`: nRMSE
    ``||x_t - x*|| / ||x*||`` against t (t = 1..T; ``x_0 = 0`` has nRMSE 1), and eta1, eta2
    (and their sum) against the step t -> t+1 on a log axis, mean with standard-deviation error
    bars."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    t = np.arange(1, len(summary["nrmse"]))
    left.errorbar(t, summary["nrmse"][1:], yerr=summary["nrmse_std"][1:], marker="o", ms=3,
                  capsize=2)
    left.set_xlabel("iteration t")
    left.set_ylabel("nRMSE  ||x_t - x*|| / ||x*||")
    left.set_ylim(bottom=0)
    steps = np.arange(len(summary["eta1"]))
    total = np.add(summary["eta1"], summary["eta2"])
    for key, label in (("eta1", "eta1 (M* fixed)"), ("eta2", "eta2 (mask changes)")):
        right.errorbar(steps, summary[key], yerr=summary[key + "_std"], marker="o", ms=3,
                       capsize=2, label=label)
    right.plot(steps, total, "k--", lw=1, label="eta1 + eta2")
    right.axhline(1.0, color="grey", lw=0.8, ls=":")
    right.set_yscale("log")
    right.set_xlabel("step t -> t+1")
    right.set_ylabel("eta")
    right.legend(fontsize=7)
    for axis in (left, right):
        axis.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

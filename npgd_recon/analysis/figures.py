"""Figures of the analyses and comparisons (PNG); montages are :mod:`npgd_recon.io.preview`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from npgd_recon.core.metrics import snr_db_magnitude
from npgd_recon.io.preview import pyplot
from sampling import SamplingPattern
from sampling.export import save_png


def save_comparison(outputs: dict[str, np.ndarray], reference: np.ndarray, path: Path, *,
                    labels: dict[str, str] | None = None, suptitle: str = "",
                    error_gain: float = 5.0, mask: np.ndarray | None = None) -> None:
    """The paper's Fig. 3 layout for one slice: one column per method and the reference, in one
    grey window, each method titled with its SNR against the reference (dB, the tables'
    definition); beneath each method its error map ``|x - x*|`` magnified ``error_gain`` times
    (the row is labelled), beneath the reference the sampling ``mask [y, x]`` when given (else
    nothing)."""
    plt = pyplot()
    names = list(outputs)
    ref = np.abs(reference)
    window = float(np.percentile(ref, 99.5)) or 1.0
    ny, nx = ref.shape
    aspect = ny / nx
    width = max(2.4 / max(aspect, 1.0), min(1.9, 4.0 / aspect))  # room for two title lines
    columns = len(names) + 1
    fig, axes = plt.subplots(2, columns, squeeze=False, constrained_layout=True,
                             figsize=(width * columns + 0.4, 2 * width * aspect + 1.1))
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
        axis.spines[:].set_visible(False)
    for j, name in enumerate(names):
        image = np.abs(outputs[name])
        snr = snr_db_magnitude(reference, outputs[name])
        axes[0, j].imshow(image, cmap="gray", vmin=0, vmax=window)
        axes[0, j].set_title(f"{(labels or {}).get(name, name)}\nSNR {snr:.1f} dB", fontsize=10)
        axes[1, j].imshow(np.abs(image - ref) * error_gain, cmap="gray", vmin=0, vmax=window)
    axes[0, -1].imshow(ref, cmap="gray", vmin=0, vmax=window)
    axes[0, -1].set_title("reference\n(fully sampled)", fontsize=10)
    if mask is None:
        axes[1, -1].remove()
    else:
        axes[1, -1].imshow(mask, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[1, -1].set_title(f"mask, {np.mean(mask):.0%} sampled", fontsize=10)
    axes[0, 0].set_ylabel("image", fontsize=10)
    axes[1, 0].set_ylabel(f"error |x - x*| x{error_gain:g}", fontsize=10)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_mask(pattern: SamplingPattern, path: Path, *, ky_kz: bool) -> None:
    """The mask picture of a comparison. On a 3-D scan's ky-kz plane every sample is one readout
    and the pattern's view order is the order a scanner plays them, so that panel is shown
    (:func:`sampling.export.save_png`); on a 2-D slice's ky-kx plane kx is the readout itself
    and samples have no acquisition order, so the mask alone is drawn."""
    if ky_kz:
        save_png(pattern, path, axes_labels=("ky", "kz"))
        return
    plt = pyplot()
    ny, nx = pattern.mask.shape
    fig, axis = plt.subplots(figsize=(4.5 * min(max(nx / ny, 0.6), 1.6), 4.5),
                             constrained_layout=True)
    axis.imshow(pattern.mask, cmap="gray", interpolation="nearest")
    axis.set_title(f"{pattern.kind} mask, rate {pattern.rate:.2%} (R={pattern.accel:g})")
    axis.set_ylabel("ky")
    axis.set_xlabel("kx")
    fig.savefig(path, dpi=100)
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

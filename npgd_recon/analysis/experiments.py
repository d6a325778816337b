"""The paper's analysis runs behind ``npgd-analyze``: contraction on MRI raw data, the
super-resolution experiment (Fig. 4 and 5) and the de-biasing measurement.

Each run returns a JSON-ready dict and writes its pictures into a folder it is given; the CLI
(:mod:`npgd_recon.cli.analyze`) makes that folder appear atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from npgd_recon.analysis.contraction import concatenate, contraction_curves, summarise
from npgd_recon.analysis.evaluation import evaluate, retrospective, volume_test_slices
from npgd_recon.analysis.evaluation import summarise as summarise_metrics
from npgd_recon.analysis.figures import save_contraction_plot
from npgd_recon.core.device import pick_device
from npgd_recon.core.errors import NpgdError
from npgd_recon.core.metrics import nrmse_magnitude, snr_db_magnitude
from npgd_recon.core.operators import BlockAverageOp, Operator, operator_for
from npgd_recon.core.transforms import normalise
from npgd_recon.data.superres import folder_images, lfw_faces
from npgd_recon.io.ismrmrd_file import read_raw
from npgd_recon.io.preview import save_montage
from npgd_recon.models.checkpoint import load_checkpoint
from npgd_recon.models.registry import SR_DEFAULT, resolve_weights
from npgd_recon.recon.base import ReconOptions
from npgd_recon.recon.debias import DEFAULT_ITERATIONS
from npgd_recon.recon.methods import make_reconstructor
from npgd_recon.recon.network import weights_method
from npgd_recon.recon.pipeline import espirit_coil_maps, undersample

FIG4_ITERATIONS = (1, 5, 25)


def mri_problems(path: str | Path, accel: float, *, mask_kind: str = "vdrad", seed: int = 0,
                 count: int = 8, group: str = "dataset", rule: dict,
                 device: torch.device | None = None,
                 ) -> list[tuple[Operator, torch.Tensor, torch.Tensor]]:
    """Undersampled problems with known truth from a fully sampled ISMRMRD file.

    Per volume, up to ``count`` evenly spaced problems among those whose k-space energy is at
    least 30 % of the largest (planes without signal have no meaningful nRMSE). The truth is
    ``Phi_full^H y_full`` (single coil: the inverse FFT of the full k-space; multi-coil: its
    SENSE combination with the ESPIRiT maps of the undersampled data). ``y`` and ``x*`` are
    divided by the normalisation ``rule`` of the model.

    Returns:
        ``(op, y, x_star)`` per volume.
    """
    problems = []
    for volume in read_raw(path, group).volumes:
        if not volume.fully_sampled:
            raise NpgdError(f"{path}: contraction needs fully sampled data (x* must be known)")
        full_kspace = np.asarray(volume.kspace)  # a 3-D HybridStack made dense: small data
        energy = np.linalg.norm(full_kspace.reshape(len(full_kspace), -1), axis=1)
        keep = np.flatnonzero(energy >= 0.3 * energy.max())
        picks = keep[np.linspace(0, len(keep) - 1, min(count, len(keep))).round().astype(int)]
        kspace, mask = undersample(volume, accel, mask_kind, seed)
        kspace, mask, full = np.asarray(kspace)[picks], mask[picks], full_kspace[picks]
        maps = espirit_coil_maps(kspace)

        def tensor(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(array)).to(device)

        torch_maps = None if maps is None else tensor(maps)
        op = operator_for(tensor(mask), torch_maps)
        full_op = operator_for(tensor(volume.mask[picks]), torch_maps)
        y, y_full = (tensor(k[:, 0] if maps is None else k) for k in (kspace, full))
        y, scale = normalise(y, op, rule)
        problems.append((op, y, full_op.adjoint(y_full) / scale))
    return problems


def run_contraction(inputs: list[Path], out: Path, *, weights: str, accel: float,
                    seeds: list[int], mask_kind: str = "vdrad", count: int = 8,
                    group: str = "dataset", device: str = "auto") -> dict:
    """Contraction curves over every input and mask seed; ``out/contraction.json`` content and
    ``out/contraction.png`` (Fig. 5 layout). The network runs on ``device``."""
    dev = pick_device(device)
    model, meta = load_checkpoint(resolve_weights(weights), dev)
    parts = [contraction_curves(model, op, y, x_star)
             for path in inputs for seed in seeds
             for op, y, x_star in mri_problems(path, accel, mask_kind=mask_kind, seed=seed,
                                               count=count, group=group,
                                               rule=meta["normalisation"], device=dev)]
    summary = summarise(concatenate(parts))
    result = {"model": weights, "architecture": meta["architecture"],
              "alpha": model.alpha.item(), "inputs": [str(p) for p in inputs],
              "undersample": accel, "mask": mask_kind, "seeds": seeds, **summary}
    save_contraction_plot(summary, out / "contraction.png",
                          title=f"{weights}, R={accel:g} {mask_kind}, {summary['problems']} "
                                f"problems (mean ± std)")
    return result


def sr_test_images(meta: dict, images: Path | None, count: int) -> np.ndarray:
    """Held-out super-resolution images ``[n, y, x]``: the bundled test faces, or the test split
    (every fifth file) of a folder, resized to the model's training shape."""
    if images is None:
        stack = lfw_faces("test")
    else:
        shape = tuple(meta.get("config", {}).get("data", {}).get("shape", (24, 24)))
        stack = folder_images(images, shape, split="test")
    return stack[:count]


def run_superres(out: Path, *, weights: str = SR_DEFAULT, images: Path | None = None,
                 count: int = 20, device: str = "auto") -> dict:
    """The paper's 5.3 experiment on held-out images: ``out/fig4.png`` (iterates beside x*),
    ``out/fig5.png`` (nRMSE, eta1, eta2) and the numbers (returned)."""
    dev = pick_device(device)
    model, meta = load_checkpoint(resolve_weights(weights), dev)
    if meta.get("operator") != "block-average-2x2":
        raise NpgdError(f"{weights} is not a super-resolution model")
    truth = torch.from_numpy(sr_test_images(meta, images, count)).to(dev, torch.complex64)
    op = BlockAverageOp()
    y = op.forward(truth)
    y, scale = normalise(y, op, meta["normalisation"])
    x_star = truth / scale
    curves = contraction_curves(model, op, y, x_star)
    summary = summarise(curves)
    with torch.no_grad():
        iterates = model(y, op, return_iterates=True)
    nearest = 4 * op.adjoint(y)
    picks = [i for i in FIG4_ITERATIONS if i <= model.iterations]
    show = min(4, len(x_star))
    columns = [nearest[:show]] + [iterates[i - 1][:show] for i in picks] + [x_star[:show]]
    titles = ["input (y, nearest)"] + [f"x{i}" for i in picks] + ["x*"]
    montage = torch.stack(columns, dim=1).reshape(-1, *x_star.shape[1:])
    save_montage(montage.cpu().numpy(), out / "fig4.png", columns=len(columns),
                 titles=titles * show, window=float(x_star[:show].abs().max()),
                 suptitle=f"{weights}: 2x super resolution, held-out images")
    save_contraction_plot(summary, out / "fig5.png",
                          title=f"{weights}: {summary['problems']} held-out images")
    final = iterates[-1]
    return {"model": weights, "architecture": meta["architecture"], "alpha": model.alpha.item(),
            "images": "lfw-faces test" if images is None else str(images), **summary,
            "snr_db": float(np.mean(snr_db_magnitude(x_star.cpu(), final.cpu()))),
            "nearest_snr_db": float(np.mean(snr_db_magnitude(x_star.cpu(), nearest.cpu()))),
            "nearest_nrmse": float(np.mean(nrmse_magnitude(x_star.cpu(), nearest.cpu())))}


def run_debias(out: Path, *, weights: list[str], volume: str, accel: float = 5.0,
               slices: int = 12, noise: float = 0.01, iterations: tuple[int, ...] = (1, 5, 20),
               precision: str = "fp32", device: str = "auto") -> dict:
    """SNR / SSIM of each model with and without de-biasing on held-out volume slices (the
    quality benchmark's protocol: axial slices, seeded phase, R VDRad, k-space noise);
    ``out/debias.png`` shows one slice without and with the default de-biasing. One
    reconstructor is built per model and iteration count (de-biasing is fixed when built)."""
    images = volume_test_slices(volume, slices, axis=2, seed=3)
    kspace, masks = retrospective(images, accel, seed=100, noise=noise)
    rows, shown = [], {}
    for name in weights:
        for k in (0, *iterations):
            recon = make_reconstructor(weights_method(name),
                                       ReconOptions(weights=name, device=device,
                                                    precision=precision, debias=k))
            records, outputs = evaluate(images, kspace, masks, None, [recon], progress=False)
            entry = summarise_metrics(records)[0]
            rows.append({"model": name, "debias_iterations": k,
                         **{key: entry[key] for key in ("snr_db", "snr_db_std", "ssim",
                                                        "ssim_std", "nrmse", "seconds")}})
            if k in (0, DEFAULT_ITERATIONS):
                shown[f"{name} debias {k}" if k else name] = outputs[recon.method][0]
    save_montage(np.stack([*shown.values(), images[0]]), out / "debias.png",
                 titles=[*shown, "reference"], columns=len(shown) + 1,
                 window=float(np.percentile(np.abs(images[0]), 99.5)))
    return {"volume": volume, "undersample": accel, "slices": slices, "noise": noise,
            "precision": precision, "results": rows}


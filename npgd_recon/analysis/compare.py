"""Side-by-side comparison runs on ISMRMRD inputs with fully sampled data (``npgd-compare``).

Per input file and volume: the fully sampled data give the reference (the SENSE-combined
adjoint with a full mask); the same data undersampled retrospectively (one mask, seeded) are
reconstructed by every method on the same operator and coil maps; CS lambdas are tuned per
case for best SNR on a few slices (as the paper did) and recorded. Outputs in ``DIR``:
``metrics.json`` / ``metrics.csv`` (one record per slice and method), ``summary.md``, one
Fig.-3-style PNG per case, the mask picture, and a self-contained ``report.html``.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from npgd_recon.analysis.evaluation import evaluate, markdown_table, summarise, tuned_lambdas
from npgd_recon.analysis.figures import save_comparison
from npgd_recon.core.device import describe_hardware, pick_device
from npgd_recon.io.ismrmrd_file import read_raw
from npgd_recon.recon.base import ReconOptions
from npgd_recon.recon.methods import METHODS, make_reconstructor, reconstructor_class
from npgd_recon.recon.pipeline import espirit_coil_maps, undersample
from sampling import make_mask
from sampling.export import save_png

DEFAULT_METHODS = METHODS


@dataclass
class CompareOptions:
    """What a comparison run does; defaults match the paper (20 % VDRad)."""

    accel: float = 5.0
    mask: str = "vdrad"
    seed: int = 0
    methods: tuple[str, ...] = DEFAULT_METHODS
    device: str = "auto"
    precision: str = "auto"
    tune_slices: int = 3
    npgd_weights: str | None = None
    resnet_weights: str | None = None
    progress: bool = True


def compare_file(path: Path, out: Path,
                 options: CompareOptions) -> tuple[list[dict], tuple[int, int], bool]:
    """Run every method on every volume of one file and write its pictures.

    Returns the metric records, the shape of the sampled plane and whether it is a 3-D scan's
    ky-kz plane (else a 2-D slice's ky-kx plane)."""
    say = _status(options.progress)
    say(f"{path}: reading")
    study = read_raw(path)
    records = []
    for v, volume in enumerate(study.volumes):
        case = f"{path.stem}" + (f"-v{v}" if len(study.volumes) > 1 else "")
        kspace, mask = undersample(volume, options.accel, options.mask, options.seed)
        if kspace.shape[1] > 1:
            say(f"{case}: ESPIRiT coil maps (bart ecalib, {len(kspace)} planes)")
        maps = espirit_coil_maps(kspace)
        full = make_reconstructor("zerofill")
        reference = full(volume.kspace, np.ascontiguousarray(volume.mask), maps).images
        lams = tuned_lambdas(kspace, mask, reference, maps, options.methods,
                             options.tune_slices, progress=options.progress)
        recons = []
        for method in options.methods:
            lam = lams.get(method)
            weights = {"npgd": options.npgd_weights, "resnet": options.resnet_weights}.get(method)
            recons.append(make_reconstructor(method, ReconOptions(
                weights=weights, device=options.device, lam=lam, precision=options.precision)))
        case_records, outputs = evaluate(reference, kspace, mask, maps, recons, case,
                                         options.progress)
        for record in case_records:
            recon = next(r for r in recons if r.method == record["method"])
            record.update(lam=getattr(recon, "lam", None), model=recon.model_name,
                          accel=options.accel, mask=options.mask)
        records += case_records
        k = len(reference) // 2
        say(f"{case}: writing pictures")
        save_comparison({reconstructor_class(m).label: o[k] for m, o in outputs.items()},
                        reference[k], out / f"{case}.png",
                        suptitle=f"{case}, slice {k}, R={options.accel:g} {options.mask}")
    return records, study.volumes[0].mask.shape[1:], study.is_3d


def _status(enabled: bool):
    """A function printing one status line to stderr (nothing when ``enabled`` is False)."""
    def say(text: str) -> None:
        if enabled:
            tqdm.write(f"npgd-compare: {text}", file=sys.stderr)
    return say


def write_tables(records: list[dict], out: Path) -> str:
    """``metrics.json``, ``metrics.csv`` and ``summary.md``; returns the Markdown tables."""
    (out / "metrics.json").write_text(json.dumps(records, indent=1))
    keys = ["case", "slice", "method", "snr_db", "psnr_db", "ssim", "nrmse", "seconds",
            "device", "precision", "lam", "model", "accel", "mask"]
    with open(out / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
    text = []
    for case in dict.fromkeys(r["case"] for r in records):
        rows = summarise([r for r in records if r["case"] == case])
        text.append(f"### {case}\n\n{markdown_table(rows)}\n")
    markdown = "\n".join(text)
    (out / "summary.md").write_text(markdown)
    return markdown


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


METRIC_PROSE = (
    "All metrics compare magnitude images with the fully sampled reference x* (the zero-filled "
    "reconstruction of all of k-space, coil-combined with the same ESPIRiT maps). "
    "SNR = 20 log10(||x*|| / ||x* - x||) in dB, over the whole image. "
    "PSNR = 20 log10(max|x*| / RMSE) in dB. "
    "SSIM is the structural similarity of scikit-image (7x7 window, data range max|x*|). "
    "NRMSE = ||x* - x|| / ||x*||. "
    "Each table gives the mean and, for SNR, the standard deviation over the slices; seconds are "
    "reconstruction time per slice without start-up or file I/O.")


def write_report(records: list[dict], out: Path, options: CompareOptions, shape,
                 is_3d: bool = False) -> None:
    """A self-contained ``report.html``: per case a metric table naming each method's model and
    precision, the CS lambdas as a table, the Fig.-3 picture; the mask (axes ky-kx for 2-D
    slices, ky-kz for 3-D planes), metric definitions in prose, hardware."""
    machine = describe_hardware(pick_device(options.device))
    mask_png = out / "mask.png"
    save_png(make_mask(options.mask, shape, options.accel, seed=options.seed), mask_png,
             axes_labels=("ky", "kz") if is_3d else ("ky", "kx"))
    parts = ["<!doctype html><meta charset='utf-8'><title>npgd-compare report</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #999;padding:3px 8px}"
             "img{max-width:100%}</style>", "<h1>npgd-compare</h1>",
             f"<p>Hardware: {html.escape(machine)}. Undersampling: "
             f"{options.mask}, R = {options.accel:g}, seed {options.seed}. "
             "Seconds are reconstruction time per slice (no start-up, no I/O).</p>"]
    for case in dict.fromkeys(r["case"] for r in records):
        mine = [r for r in records if r["case"] == case]
        rows = summarise(mine)
        first = {r["method"]: r for r in reversed(mine)}
        parts.append(f"<h2>{html.escape(case)}</h2><table><tr><th>method</th><th>model</th>"
                     "<th>precision</th><th>slices</th><th>SNR (dB)</th><th>PSNR (dB)</th>"
                     "<th>SSIM</th><th>NRMSE</th><th>s / slice</th></tr>")
        for e in rows:
            r = first[e["method"]]
            model = html.escape(r["model"]) if r["model"] else "-"
            precision = r["precision"] if r["model"] else "-"
            parts.append(f"<tr><td>{reconstructor_class(e['method']).label}</td>"
                         f"<td>{model}</td><td>{precision}</td>"
                         f"<td>{e['slices']}</td><td>{e['snr_db']:.2f} ± {e['snr_db_std']:.2f}"
                         f"</td><td>{e['psnr_db']:.2f}</td><td>{e['ssim']:.4f}</td>"
                         f"<td>{e['nrmse']:.4f}</td><td>{e['seconds']:.3f}</td></tr>")
        parts.append("</table>")
        lams = [(m, r["lam"]) for m, r in first.items() if r["lam"]]
        if lams:
            parts.append("<h3>CS regularisation</h3><table><tr><th>method</th><th>lambda "
                         "(normalised units)</th><th>chosen by</th></tr>"
                         + "".join(f"<tr><td>{reconstructor_class(m).label}</td>"
                                   f"<td>{lam:.3g}</td><td>best SNR on the first "
                                   f"{options.tune_slices} slices</td></tr>" for m, lam in lams)
                         + "</table>")
        parts.append(_img(out / f"{case}.png"))
    parts.append("<h2>Mask</h2>" + _img(mask_png))
    parts.append(f"<h2>Metric definitions</h2><p>{html.escape(METRIC_PROSE)}</p>")
    (out / "report.html").write_text("\n".join(parts))

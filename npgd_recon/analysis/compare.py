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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from npgd_recon.analysis.evaluation import evaluate, markdown_table, summarise, tuned_lambdas
from npgd_recon.analysis.figures import save_comparison
from npgd_recon.core.device import describe_hardware, pick_device
from npgd_recon.core.metrics import __doc__ as METRIC_DEFINITIONS
from npgd_recon.io.ismrmrd_file import read_raw
from npgd_recon.recon.methods import make_reconstructor, reconstructor_class
from npgd_recon.recon.pipeline import espirit_coil_maps, undersample
from sampling import make_mask
from sampling.export import save_png

DEFAULT_METHODS = ("zerofill", "cswv", "cstv", "resnet", "npgd")


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
                 options: CompareOptions) -> tuple[list[dict], tuple[int, int]]:
    """Run every method on every volume of one file and write its pictures.

    Returns the metric records and the shape of the sampled plane."""
    study = read_raw(path)
    records = []
    for v, volume in enumerate(study.volumes):
        case = f"{path.stem}" + (f"-v{v}" if len(study.volumes) > 1 else "")
        kspace, mask = undersample(volume, options.accel, options.mask, options.seed)
        maps = espirit_coil_maps(kspace)
        full = make_reconstructor("zerofill")
        reference = full(volume.kspace, np.ascontiguousarray(volume.mask), maps)
        lams = tuned_lambdas(kspace, mask, reference, maps, options.methods,
                             options.tune_slices)
        recons = []
        for method in options.methods:
            lam = lams.get(method)
            weights = {"npgd": options.npgd_weights, "resnet": options.resnet_weights}.get(method)
            recons.append(make_reconstructor(method, weights, options.device, lam=lam,
                                             precision=options.precision))
        case_records, outputs = evaluate(reference, kspace, mask, maps, recons, case,
                                         options.progress)
        for record in case_records:
            recon = next(r for r in recons if r.method == record["method"])
            record.update(lam=getattr(recon, "lam", None), model=recon.model_name,
                          accel=options.accel, mask=options.mask)
        records += case_records
        k = len(reference) // 2
        save_comparison({reconstructor_class(m).label: o[k] for m, o in outputs.items()},
                        reference[k], out / f"{case}.png",
                        suptitle=f"{case}, slice {k}, R={options.accel:g} {options.mask}")
    return records, study.volumes[0].mask.shape[1:]


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


def write_report(records: list[dict], out: Path, options: CompareOptions, shape) -> None:
    """A self-contained ``report.html``: tables, pictures, mask, metric definitions, hardware."""
    machine = describe_hardware(pick_device(options.device))
    mask_png = out / "mask.png"
    save_png(make_mask(options.mask, shape, options.accel, seed=options.seed), mask_png)
    parts = ["<!doctype html><meta charset='utf-8'><title>npgd-compare report</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #999;padding:3px 8px}"
             "img{max-width:100%}</style>", "<h1>npgd-compare</h1>",
             f"<p>Hardware: {html.escape(machine)}. Undersampling: "
             f"{options.mask}, R = {options.accel:g}, seed {options.seed}. "
             "Seconds are reconstruction time per slice (no start-up, no I/O).</p>"]
    for case in dict.fromkeys(r["case"] for r in records):
        rows = summarise([r for r in records if r["case"] == case])
        lams = {r["method"]: r["lam"] for r in records if r["case"] == case and r["lam"]}
        parts.append(f"<h2>{html.escape(case)}</h2><table><tr><th>method</th><th>slices</th>"
                     "<th>SNR (dB)</th><th>PSNR (dB)</th><th>SSIM</th><th>NRMSE</th>"
                     "<th>s / slice</th></tr>")
        for e in rows:
            parts.append(f"<tr><td>{reconstructor_class(e['method']).label}</td>"
                         f"<td>{e['slices']}</td><td>{e['snr_db']:.2f} ± {e['snr_db_std']:.2f}"
                         f"</td><td>{e['psnr_db']:.2f}</td><td>{e['ssim']:.4f}</td>"
                         f"<td>{e['nrmse']:.4f}</td><td>{e['seconds']:.3f}</td></tr>")
        parts.append(f"</table><p>CS lambdas (tuned for best SNR): {html.escape(str(lams))}</p>")
        parts.append(_img(out / f"{case}.png"))
    parts.append("<h2>Mask</h2>" + _img(mask_png))
    parts.append(f"<h2>Metric definitions</h2><pre>{html.escape(METRIC_DEFINITIONS)}</pre>")
    (out / "report.html").write_text("\n".join(parts))

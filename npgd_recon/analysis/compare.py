"""Side-by-side comparison runs on ISMRMRD inputs with fully sampled data (``npgd-compare``).

Per input file and volume: the fully sampled data give the reference (the SENSE-combined
adjoint with a full mask); the same data undersampled retrospectively (one mask, seeded) are
reconstructed by every method on the same operator and coil maps. Each CS method's lambda is
given (``cs_lambda``), tuned for best SNR against the reference on a few slices (``tune_cs``,
the default, as the paper did: about 13 BART runs per method,
:func:`bart_baselines.tuning.expected_runs`), or the data-driven one of ``npgd-recon``; the
value and the rule are recorded. Slices whose reference is empty have no metrics and are
skipped and counted (:data:`~npgd_recon.analysis.evaluation.EMPTY_RULE`).

Outputs in ``DIR``: ``metrics.json`` (the metric definitions, the empty-slice rule, per case
the slices skipped and the CS lambdas with how each was chosen, and one record per measured
slice and method), ``metrics.csv`` (the records), ``summary.md``, one Fig.-3-style PNG per case
(its central measured slice), one per measured slice in ``slices/``, the mask picture, and
``report.html``: self-contained but for the per-slice pictures, which it links.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bart_baselines.runner import default_threads
from npgd_recon.analysis.evaluation import (
    EMPTY_RULE,
    automatic_lambdas,
    evaluate,
    markdown_table,
    measured_planes,
    summarise,
    tuned_lambdas,
    tuning_planes,
)
from npgd_recon.analysis.figures import save_comparison, save_mask
from npgd_recon.core.choices import MAP_ERROR_WEIGHT
from npgd_recon.core.device import describe_hardware, pick_device
from npgd_recon.core.errors import NpgdError
from npgd_recon.io.ismrmrd_file import read_raw
from npgd_recon.recon.base import ReconOptions
from npgd_recon.recon.classic import CompressedSensing
from npgd_recon.recon.methods import METHODS, make_reconstructor, reconstructor_class
from npgd_recon.recon.pipeline import espirit_coil_maps, undersample
from sampling import make_mask

DEFAULT_METHODS = METHODS
SLICE_PICTURES = "slices"


@dataclass
class CompareOptions:
    """What a comparison run does; defaults match the paper (20 % VDRad, CS tuned for SNR).

    ``cs_lambda`` fixes CS weights (normalised units): one value for every CS method, or a
    value per method; the other CS methods are tuned against the reference (``tune_cs``) or
    take the data-driven lambda. ``map_sets = 2``: every method gets two sets of ESPIRiT maps
    (soft SENSE) and reports the first set's image; the reference keeps one set.

    Raises:
        NpgdError: a lambda that is not positive, or one for a method that is not a CS method
            among ``methods``.
    """

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
    cs_lambda: float | dict[str, float] | None = None
    tune_cs: bool = True
    map_sets: int = 1
    map_error: float = MAP_ERROR_WEIGHT

    def __post_init__(self) -> None:
        stray = sorted(set(self.fixed_lambdas) - set(self.cs_methods))
        if stray:
            raise NpgdError(f"a CS lambda is given for {', '.join(stray)}, which is not among "
                            f"the CS methods compared ({', '.join(self.cs_methods) or 'none'})")
        bad = [f"{m}={lam:g}" for m, lam in self.fixed_lambdas.items() if not lam > 0]
        if bad:
            raise NpgdError(f"CS lambdas must be positive, got {', '.join(bad)}")

    @property
    def cs_methods(self) -> tuple[str, ...]:
        """The compared methods that are CS methods."""
        return tuple(m for m in self.methods
                     if issubclass(reconstructor_class(m), CompressedSensing))

    @property
    def fixed_lambdas(self) -> dict[str, float]:
        """CS method -> the lambda ``cs_lambda`` gives it."""
        if isinstance(self.cs_lambda, dict):
            return dict(self.cs_lambda)
        return {} if self.cs_lambda is None else dict.fromkeys(self.cs_methods, self.cs_lambda)


@dataclass
class Case:
    """One volume compared: its metric records and what the report says about them.

    Attributes:
        name: file stem, with ``-v<i>`` for the volumes of a multi-volume file.
        slices: 2-D problems of the volume.
        skipped: slices whose reference is empty (no records).
        lambdas: CS method -> (lambda, how it was chosen).
        records: one per measured slice and method (:func:`evaluate`'s, with ``lam``,
            ``model``, ``accel`` and ``mask`` added).
    """

    name: str
    slices: int
    skipped: list[int]
    lambdas: dict[str, tuple[float, str]] = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)


def compare_file(path: Path, out: Path,
                 options: CompareOptions) -> tuple[list[Case], tuple[int, int], bool]:
    """Run every method on every volume of one file and write its pictures.

    Returns the cases, the shape of the sampled plane and whether it is a 3-D scan's ky-kz
    plane (else a 2-D slice's ky-kx plane).

    Raises:
        NpgdError: a volume whose reference is empty everywhere.
    """
    say = _status(options.progress)
    say(f"{path}: reading")
    study = read_raw(path)
    cases = []
    for v, volume in enumerate(study.volumes):
        name = f"{path.stem}" + (f"-v{v}" if len(study.volumes) > 1 else "")
        kspace, mask = undersample(volume, options.accel, options.mask, options.seed)
        kspace = np.asarray(kspace)  # a 3-D HybridStack made dense: compare holds whole volumes
        if kspace.shape[1] > 1:
            say(f"{name}: ESPIRiT coil maps (bart ecalib, {len(kspace)} planes)")
        maps = espirit_coil_maps(kspace, sets=options.map_sets)
        full = make_reconstructor("zerofill")  # the reference: one set (the first, ESPIRiT's)
        reference = full(volume.kspace, np.ascontiguousarray(volume.mask),
                         maps if maps is None or maps.ndim == 4 else maps[:, 0]).images
        kept = measured_planes(reference)
        if not kept.any():
            raise NpgdError(f"{name}: the fully sampled reference is empty (all zero)")
        # the methods run on the measured slices only: an empty one has no metric, and BART
        # refuses a slice without signal
        measured = np.flatnonzero(kept)
        kspace, mask, reference = kspace[measured], mask[measured], reference[measured]
        maps = None if maps is None else maps[measured]
        case = Case(name, len(kept), np.flatnonzero(~kept).tolist(),
                    choose_lambdas(kspace, mask, reference, maps, options, measured))
        recons = []
        for method in options.methods:
            lam = case.lambdas.get(method, (None, ""))[0]
            weights = {"npgd": options.npgd_weights, "resnet": options.resnet_weights}.get(method)
            recons.append(make_reconstructor(method, ReconOptions(
                weights=weights, device=options.device, lam=lam, precision=options.precision,
                plane=kspace.shape[-2:], coils=kspace.shape[1], map_sets=options.map_sets,
                map_error=options.map_error)))
        case.records, outputs = evaluate(reference, kspace, mask, maps, recons, name,
                                         options.progress)
        for record in case.records:
            recon = next(r for r in recons if r.method == record["method"])
            record.update(slice=int(measured[record["slice"]]), lam=getattr(recon, "lam", None),
                          model=recon.model_name, accel=options.accel, mask=options.mask)
        say(f"{name}: writing pictures ({len(measured)} slices)")
        (out / SLICE_PICTURES).mkdir(exist_ok=True)
        for j, k in enumerate(measured):
            save_comparison({m: o[j] for m, o in outputs.items()}, reference[j],
                            out / _picture(name, k),
                            labels={m: reconstructor_class(m).label for m in outputs},
                            mask=mask[j], suptitle=f"{name}, slice {k} of {len(kept)}, "
                                     f"R={options.accel:g} {options.mask}")
        shutil.copyfile(out / _picture(name, measured[len(measured) // 2]), out / f"{name}.png")
        cases.append(case)
    return cases, study.volumes[0].mask.shape[1:], study.is_3d


def choose_lambdas(kspace: np.ndarray, mask: np.ndarray, reference: np.ndarray,
                   maps: np.ndarray | None, options: CompareOptions,
                   slices: np.ndarray) -> dict[str, tuple[float, str]]:
    """Each compared CS method's lambda and how it was chosen: given, tuned for best SNR
    against ``reference`` on :func:`tuning_planes`, or data-driven (see
    :class:`CompareOptions`). Shapes as for :func:`evaluate`; ``slices`` numbers the problems
    in the volume, for the report."""
    chosen = {m: (lam, "given (--cs-lambda)") for m, lam in options.fixed_lambdas.items()}
    rest = tuple(m for m in options.cs_methods if m not in chosen)
    if rest and options.tune_cs:
        planes = ", ".join(str(slices[i]) for i in tuning_planes(reference, options.tune_slices))
        lams = tuned_lambdas(kspace, mask, reference, maps, rest, options.tune_slices,
                             progress=options.progress)
        chosen |= {m: (lam, f"best SNR against the reference on slices {planes}")
                   for m, lam in lams.items()}
    elif rest:
        chosen |= {m: (lam, "automatic, from the data's noise level (as npgd-recon)")
                   for m, lam in automatic_lambdas(kspace, mask, maps, rest).items()}
    return {m: chosen[m] for m in options.cs_methods}


def _picture(case: str, k: int) -> str:
    """A case's picture of slice ``k``, relative to the output folder."""
    return f"{SLICE_PICTURES}/{case}-{k:04d}.png"


def _status(enabled: bool):
    """A function printing one status line to stderr (nothing when ``enabled`` is False)."""
    def say(text: str) -> None:
        if enabled:
            tqdm.write(f"npgd-compare: {text}", file=sys.stderr)
    return say


def _ranges(indices: list[int]) -> str:
    """``[0, 1, 2, 5]`` as ``0-2, 5``."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def _coverage(case: Case) -> str:
    """Which slices the metrics cover, in words."""
    measured = case.slices - len(case.skipped)
    if not case.skipped:
        return f"metrics over all {case.slices} slices"
    return (f"metrics over {measured} of {case.slices} slices; {len(case.skipped)} with an "
            f"empty reference skipped ({_ranges(case.skipped)})")


def write_tables(cases: list[Case], out: Path) -> str:
    """``metrics.json``, ``metrics.csv`` and ``summary.md``; returns the Markdown tables."""
    records = [r for case in cases for r in case.records]
    (out / "metrics.json").write_text(json.dumps({
        "definitions": METRIC_PROSE, "empty_slices": EMPTY_RULE,
        "cases": [{"case": c.name, "slices": c.slices, "skipped_slices": c.skipped,
                   "cs_lambda": {m: {"lambda": lam, "chosen_by": how}
                                 for m, (lam, how) in c.lambdas.items()}} for c in cases],
        "records": records}, indent=1))
    keys = ["case", "slice", "method", "snr_db", "psnr_db", "ssim", "nrmse", "seconds",
            "device", "precision", "lam", "model", "accel", "mask"]
    with open(out / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
    markdown = "\n".join(f"### {c.name}\n\n{_coverage(c)}\n\n"
                         f"{markdown_table(summarise(c.records))}\n" for c in cases)
    (out / "summary.md").write_text(markdown)
    return markdown


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


_MAP_SETS = {1: "one set of ESPIRiT maps",
             2: "two sets of ESPIRiT maps for every method (soft SENSE, each reports the first "
                "set's image; the reference keeps one set)"}

METRIC_PROSE = (
    "All metrics compare magnitude images with the fully sampled reference x* (the zero-filled "
    "reconstruction of all of k-space, coil-combined with the same ESPIRiT maps). "
    "SNR = 20 log10(||x*|| / ||x* - x||) in dB, over the whole image. "
    "PSNR = 20 log10(max|x*| / RMSE) in dB. "
    "SSIM is the structural similarity of scikit-image (7x7 window, data range max|x*|). "
    "NRMSE = ||x* - x|| / ||x*||. "
    "Each table gives the mean and, for SNR, the standard deviation over the measured slices; "
    "seconds are reconstruction time per slice without start-up or file I/O.")


def _slice_table(case: Case) -> str:
    """Per-slice SNR of every method, each measured slice linked to its picture."""
    methods = list(dict.fromkeys(r["method"] for r in case.records))
    snr = {(r["slice"], r["method"]): r["snr_db"] for r in case.records}
    head = "".join(f"<th>{reconstructor_class(m).label}</th>" for m in methods)
    rows = []
    for k in range(case.slices):
        if k in case.skipped:
            rows.append(f"<tr><td>{k}</td><td colspan='{len(methods)}'>empty reference, "
                        "skipped</td></tr>")
        else:
            cells = "".join(f"<td>{snr[k, m]:.2f}</td>" for m in methods)
            rows.append(f"<tr><td><a href='{_picture(case.name, k)}'>{k}</a></td>{cells}</tr>")
    return (f"<details><summary>Every slice: SNR (dB) per method; a slice number opens its "
            f"picture (in {SLICE_PICTURES}/ next to this report)</summary><table><tr>"
            f"<th>slice</th>{head}</tr>{''.join(rows)}</table></details>")


def write_report(cases: list[Case], out: Path, options: CompareOptions, shape,
                 is_3d: bool = False) -> None:
    """``report.html``: per case which slices the metrics cover, a metric table naming each
    method's model and precision, the CS lambdas with how each was chosen, the Fig.-3 picture
    of the central measured slice and every slice's SNR with a link to its picture; the mask
    (ky-kz with its view order for 3-D planes, ky-kx alone for 2-D slices), metric definitions
    and the empty-slice rule in prose, hardware and BART threads."""
    machine = describe_hardware(pick_device(options.device))
    mask_png = out / "mask.png"
    save_mask(make_mask(options.mask, shape, options.accel, seed=options.seed), mask_png,
              ky_kz=is_3d)
    parts = ["<!doctype html><meta charset='utf-8'><title>npgd-compare report</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #999;padding:3px 8px}"
             "img{max-width:100%}</style>", "<h1>npgd-compare</h1>",
             f"<p>Hardware: {html.escape(machine)}; BART threads: {default_threads()}. "
             f"Undersampling: {options.mask}, R = {options.accel:g}, seed {options.seed}. "
             f"Coil maps: {_MAP_SETS[options.map_sets]}. "
             "Seconds are reconstruction time per slice (no start-up, no I/O).</p>"]
    for case in cases:
        rows = summarise(case.records)
        first = {r["method"]: r for r in reversed(case.records)}
        parts.append(f"<h2>{html.escape(case.name)}</h2><p>{html.escape(_coverage(case)).capitalize()}.</p>"
                     "<table><tr><th>method</th><th>model</th><th>precision</th><th>slices</th>"
                     "<th>SNR (dB)</th><th>PSNR (dB)</th><th>SSIM</th><th>NRMSE</th>"
                     "<th>s / slice</th></tr>")
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
        if case.lambdas:
            parts.append("<h3>CS regularisation</h3><table><tr><th>method</th><th>lambda "
                         "(normalised units)</th><th>chosen by</th></tr>"
                         + "".join(f"<tr><td>{reconstructor_class(m).label}</td>"
                                   f"<td>{lam:.3g}</td><td>{html.escape(how)}</td></tr>"
                                   for m, (lam, how) in case.lambdas.items())
                         + "</table>")
        parts.append(_img(out / f"{case.name}.png"))
        parts.append(_slice_table(case))
    parts.append("<h2>Mask</h2>" + _img(mask_png))
    parts.append(f"<h2>Metric definitions</h2><p>{html.escape(METRIC_PROSE)}</p>"
                 f"<p>{html.escape(EMPTY_RULE)}</p>")
    (out / "report.html").write_text("\n".join(parts))

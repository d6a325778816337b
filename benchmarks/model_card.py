"""The model card's evaluation: networks against zero filling and BART CS, with its automatic
lambda and with lambda tuned on the truth, on scans no model trained, tuned or was selected on,
acquired as ``npgd-simulate`` does.

Scans: 12 axial slices of the Colin27 brain (Debian ``mricron-data``, validation subject only)
and the MR images that ``pydicom`` and ``pydicom-data`` ship for their own tests (abdomen,
shoulder, head, ``MR_small``; reserved for evaluation by the project's data rules), magnitudes
given a seeded smooth phase and a peak of 1. Each is written as ISMRMRD raw data by the
simulator (``sim.scan_writer.write_scan``: 1 or 8 birdcage coils, Colin27 also 4; correlated
coil noise of std ``--noise`` per k-space sample, 32 noise readouts, no oversampling) and read
back by the reader (prewhitening), then undersampled 5x with VDRad (seed 0) and reconstructed
with ESPIRiT maps for every method, as ``npgd-recon`` does. CS-WV / CS-TV run twice, 300
iterations each: with the automatic lambda from the known (prewhitened) noise level, as
``npgd-recon`` runs them, and with the lambda of best SNR against the reference on three of the
scan's slices (``npgd_recon.analysis.evaluation.tuned_lambdas``, as ``npgd-compare``: what a
careful user gets; the strongest CS, and the one the margins are taken against). Reference: the
noiseless fully sampled scan reconstructed the same way (same whitening, same coils).
``--map-sets 2``: every method gets two sets of ESPIRiT maps of the undersampled scan (soft
SENSE) and reports the first set's image; the reference stays the one-set image of the full
scan, which is what the first set's image estimates. ``--scans`` / ``--coils``: only these.

Networks run on the CPU in ``--precision`` (default ``auto``, as ``npgd-recon`` runs them:
bf16 where the CPU computes it natively, fp32 elsewhere; the JSON records the precision that
ran, and the cards before the evening of 2026-12-06 ran fp32). ``--npgd default`` is the product's
default for each scan's matrix (``registry.default_weights``: the small-matrix arm up to 64x64);
its rows name the model that ran.

Metrics on magnitudes, no rescaling (``npgd_recon.core.metrics``). The last column is CS-WV's
time per slice (automatic lambda) over the network's, both on this machine's CPU: a same-run
ratio only when CS-WV was not taken from ``--reuse`` (drop its entries from the reused JSON to
rerun it; the tuned columns are the slow part). The timed methods (CS-WV and the NPGD models) run
``--repeat`` times per scan, in turns (CS-WV, each network, CS-WV, ...: a drift of a shared
machine's speed slows each alike); their time is the median call (every call
counts: the first pays a network's per-shape kernel set-up, each BART call its process start),
the metrics are the first call's (both are deterministic); the other methods run once. One
call per method made a one-slice scan's ratio swing by 2-3x between runs of the same card.
Prints one Markdown table per model (SNR / SSIM per scan and coil count) and writes
``OUT/model_card.json`` and one picture per scan and coil count. Not a test: about 10 minutes
per model set on 2 idle cores (``--repeat 3`` adds CS-WV's two extra calls, about 4 minutes).

    python benchmarks/model_card.py --npgd npgd-t10k1-f32 npgd-t10k1-f32-mc npgd-t10k1-f32-dc \
        npgd-t10k1-f32-dcn \
        --out docs/model_card
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from quality import RESERVED, reserved_case
from tqdm import tqdm

from npgd_recon.analysis.evaluation import tuned_lambdas, volume_test_slices
from npgd_recon.analysis.figures import save_comparison
from npgd_recon.core.choices import PRECISIONS
from npgd_recon.core.metrics import all_metrics
from npgd_recon.io.ismrmrd_file import read_raw
from npgd_recon.models.inference import resolve_precision
from npgd_recon.models.registry import CPU_DEFAULT, default_weights
from npgd_recon.recon.base import ReconOptions
from npgd_recon.recon.methods import make_reconstructor
from npgd_recon.recon.pipeline import espirit_coil_maps, undersample
from npgd_recon.sim.scan_writer import ScanSettings, write_scan

CH2 = "/usr/share/mricron/templates/ch2.nii.gz"
COILS = {"colin27": (1, 4, 8)}


def scans(colin_slices: int) -> dict[str, np.ndarray]:
    """Complex image stacks ``[n, y, x]`` with a peak magnitude of 1, by scan name."""
    out = {"colin27": volume_test_slices(CH2, colin_slices, axis=2, seed=3)}
    out.update({name: reserved_case(file) for name, file in RESERVED.items()})
    return {k: (v / np.abs(v).max()).astype(np.complex64) for k, v in out.items()}


def problem(images: np.ndarray, coils: int, noise: float, accel: float, folder: Path,
            sets: int = 1):
    """The undersampled scan ``(kspace, mask, maps)`` and its reference image ``[n, y, x]``.

    The noisy scan is read with its noise readouts (prewhitened); the reference is the
    noiseless scan, whitened by the same matrix and reconstructed fully sampled with one set of
    ESPIRiT maps (the first-set image that soft SENSE, ``sets = 2``, also reports).
    """
    studies = []
    for level, readouts in ((noise, 32), (0.0, 0)):
        path = folder / f"scan-{coils}-{level}.h5"
        write_scan(path, images, settings=ScanSettings(coils=coils, noise=level,
                                                       noise_readouts=readouts, oversampling=1,
                                                       seed=7))
        studies.append(read_raw(path))
    noisy, clean = (s.volumes[0] for s in studies)
    whitened = np.einsum("cd,ndyx->ncyx", studies[0].whitener, clean.kspace)
    reference = make_reconstructor("zerofill")(whitened, np.ascontiguousarray(clean.mask),
                                               espirit_coil_maps(whitened)).images
    kspace, mask = undersample(noisy, accel, seed=0)
    return (kspace, np.ascontiguousarray(mask), espirit_coil_maps(kspace, sets=sets),
            reference)


ROUTED = "default"  # --npgd name of the product's default for each scan's matrix


def methods(networks: list[str], resnet: str, precision: str) -> dict[str, object]:
    """The reconstructors by label: zero filling, BART CS (automatic lambda), the named
    networks (not :data:`ROUTED`: :func:`routed` builds it per scan)."""
    recons = {m: make_reconstructor(m) for m in ("zerofill", "cswv", "cstv")}
    def cpu(weights: str) -> ReconOptions:
        return ReconOptions(weights=weights, device="cpu", precision=precision)

    recons[f"resnet:{resnet}"] = make_reconstructor("resnet", cpu(resnet))
    recons.update({f"npgd:{w}": make_reconstructor("npgd", cpu(w)) for w in networks
                   if w != ROUTED})
    return recons


def routed(plane: tuple[int, int], coils: int, precision: str, built: dict,
           map_sets: int = 1) -> object:
    """The default NPGD reconstructor ``npgd-recon`` builds on the CPU for ``plane``-pixel
    problems of ``coils`` coils and ``map_sets`` sets of maps, one per model (``built`` caches
    them by name)."""
    name = default_weights("npgd", "cpu", plane, coils, map_sets)
    if name not in built:
        built[name] = make_reconstructor("npgd", ReconOptions(
            device="cpu", precision=precision, plane=plane, coils=coils, map_sets=map_sets))
    return built[name]


TUNED = ("cswv-tuned", "cstv-tuned")


def tuned_cs(kspace: np.ndarray, mask: np.ndarray, maps: np.ndarray | None,
             reference: np.ndarray) -> dict[str, tuple[float, object]]:
    """CS-WV and CS-TV with the lambda of best SNR against ``reference`` (three slices), by
    label: ``(lambda, reconstructor)``."""
    lams = tuned_lambdas(kspace, mask, reference, maps, ("cswv", "cstv"), slices=3)
    return {f"{m}-tuned": (lam, make_reconstructor(m, ReconOptions(lam=lam)))
            for m, lam in lams.items()}


def best_cs(row: dict, labels: tuple[str, ...]) -> dict:
    """The metrics of the CS column (among ``labels``) with the higher SNR."""
    return max((row[c] for c in labels), key=lambda m: m["snr_db"])


def tables(rows: list[dict], networks: list[str], resnet: str) -> str:
    """One Markdown table per NPGD model: SNR / SSIM per scan and coil count, its margins over
    the better CS with the automatic and with the tuned lambda, and their means."""
    text = []
    for network in networks:
        npgd = f"npgd:{network}"
        columns = ["zerofill", "cswv", "cstv", *TUNED, f"resnet:{resnet}", npgd]
        text += [f"\n#### `{network}`\n",
                 "| scan | coils | zero filling | CS-WV auto | CS-TV auto | CS-WV tuned "
                 "| CS-TV tuned | deep ResNet | NPGD | NPGD - best auto CS "
                 "| NPGD - best tuned CS (SNR / SSIM) | CS-WV s / NPGD s |",
                 "|---|---:|---|---|---|---|---|---|---|---:|---:|---:|"]
        margins = {"auto": [], "tuned": [], "ssim": []}
        seconds = {"cswv": 0.0, npgd: 0.0}
        for row in rows:
            cells = [f"{row[c]['snr_db']:.2f} / {row[c]['ssim']:.3f}" for c in columns]
            auto, tuned = best_cs(row, ("cswv", "cstv")), best_cs(row, TUNED)
            margins["auto"].append(row[npgd]["snr_db"] - auto["snr_db"])
            margins["tuned"].append(row[npgd]["snr_db"] - tuned["snr_db"])
            margins["ssim"].append(row[npgd]["ssim"] - tuned["ssim"])
            for label in seconds:
                seconds[label] += row[label]["seconds_per_slice"] * row["slices"]
            speed = row["cswv"]["seconds_per_slice"] / row[npgd]["seconds_per_slice"]
            text.append(f"| {row['scan']} | {row['coils']} | " + " | ".join(cells)
                        + f" | {margins['auto'][-1]:+.2f} | {margins['tuned'][-1]:+.2f} / "
                        f"{margins['ssim'][-1]:+.3f} | {speed:.1f}x |")
        mean = {k: float(np.mean(v)) for k, v in margins.items()}
        text.append(f"| **mean** | | | | | | | | | {mean['auto']:+.2f} | {mean['tuned']:+.2f} "
                    f"/ {mean['ssim']:+.3f} | {seconds['cswv'] / seconds[npgd]:.1f}x (all "
                    "slices) |")
        ran: dict[str, list[str]] = {}
        for row in rows:
            if "model" in row[npgd]:
                ran.setdefault(row[npgd]["model"], []).append(f"{row['scan']} {row['coils']}")
        if ran:
            text.append("\nThe model that ran: " + "; ".join(
                f"`{model}` on {', '.join(cases)}" for model, cases in ran.items()) + ".")
    return "\n".join(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npgd", nargs="+", default=[CPU_DEFAULT], help="NPGD models")
    parser.add_argument("--resnet", default="resnet-k10-f32", help="deep-ResNet model")
    parser.add_argument("--out", type=Path, default=Path("docs/model_card"))
    parser.add_argument("--noise", type=float, default=0.003,
                        help="k-space noise std per sample, peak 1 (make demo's level)")
    parser.add_argument("--accel", type=float, default=5.0)
    parser.add_argument("--colin-slices", type=int, default=12)
    parser.add_argument("--scans", nargs="+", help="only these scans (default all)")
    parser.add_argument("--coils", nargs="+", type=int,
                        help="only these coil counts (default each scan's)")
    parser.add_argument("--map-sets", type=int, default=1, choices=(1, 2),
                        help="sets of ESPIRiT maps every method gets (2: soft SENSE)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="the networks' precision (default auto, as npgd-recon)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="calls per timed method and scan; the median is its time")
    parser.add_argument("--reuse", type=Path, help="an earlier model_card.json (same noise and "
                        "acceleration): methods it holds are not run again")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    args.precision = resolve_precision(args.precision, torch.device("cpu"))  # what runs
    args.out.mkdir(parents=True, exist_ok=True)
    earlier = {(r["scan"], r["coils"]): r for r in
               json.loads(args.reuse.read_text())["rows"]} if args.reuse else {}
    recons = methods(args.npgd, args.resnet, args.precision)
    built: dict[str, object] = {}
    cases = [(name, images, coils) for name, images in scans(args.colin_slices).items()
             if not args.scans or name in args.scans for coils in COILS.get(name, (1, 8))
             if not args.coils or coils in args.coils]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, images, coils in tqdm(cases, desc="scans", unit="scan"):
            kspace, mask, maps, reference = problem(images, coils, args.noise, args.accel,
                                                    Path(tmp), args.map_sets)
            row = {"scan": name, "coils": coils, "slices": len(images),
                   "shape": list(images.shape[1:]), **earlier.get((name, coils), {})}
            outputs = {}
            tuned = {} if all(t in row for t in TUNED) else tuned_cs(kspace, mask, maps,
                                                                      reference)
            case = dict(recons)
            if ROUTED in args.npgd:
                case[f"npgd:{ROUTED}"] = routed(images.shape[1:], coils, args.precision, built,
                                                args.map_sets)
            todo = {label: recon for label, recon in
                    {**case, **{k: r for k, (_, r) in tuned.items()}}.items() if label not in row}
            timed = [label for label in todo if label == "cswv" or label.startswith("npgd:")]
            calls = {label: [recon(kspace, mask, maps, noise_std=1.0)]
                     for label, recon in todo.items() if label not in timed}
            for _ in range(args.repeat):  # in turns: a drift of this machine's speed slows all
                for label in timed:
                    calls.setdefault(label, []).append(
                        todo[label](kspace, mask, maps, noise_std=1.0))
            for label in todo:  # in the order of the picture's panels
                made = calls[label]
                outputs[label] = made[0].images
                per_slice = [all_metrics(r, o) for r, o in zip(reference, outputs[label])]
                row[label] = {k: float(np.mean([m[k] for m in per_slice])) for k in per_slice[0]}
                row[label]["seconds_per_slice"] = float(
                    np.median([c.seconds for c in made])) / len(images)
                if label in timed:
                    row[label]["calls_seconds"] = [c.seconds for c in made]
                if label in tuned:
                    row[label]["lambda"] = tuned[label][0]
                if label == f"npgd:{ROUTED}":
                    row[label]["model"] = todo[label].model_name
            rows.append(row)
            k = len(images) // 2
            if not earlier:
                save_comparison({m: o[k] for m, o in outputs.items()}, reference[k],
                                args.out / f"{name}-{coils}coil.png",
                                suptitle=f"{name}, {coils} coil(s), slice {k}, R={args.accel:g}")
            tqdm.write(f"{name} {coils} coils: " + ", ".join(
                f"{m} {row[m]['snr_db']:.2f}" for m in [*case, *TUNED]))
    report = tables(rows, args.npgd, args.resnet)
    print(report)
    (args.out / "model_card.md").write_text(report + "\n")
    (args.out / "model_card.json").write_text(json.dumps(
        {"noise": args.noise, "accel": args.accel, "models": args.npgd, "resnet": args.resnet,
         "precision": args.precision, "repeat": args.repeat, "map_sets": args.map_sets,
         "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()

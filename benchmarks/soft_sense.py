"""Soft SENSE on the selection set: when do two sets of ESPIRiT maps pay, and should the
network's proximal act on every set?

    python benchmarks/soft_sense.py [--planes 4] [--coils 8] [--out docs/model_card/soft-sense]

The problems are planes of the default's selection volumes (``configs/cpu-multi-t20.toml``'s
validation set: calf MESE and Dixon, ankle GRE; never the model card's scans), each posed three
ways: the whole plane (at most 128 pixels a side), its central 60 % (an object that fills the
field of view edge to edge, as the card's ``MR_small``) at most 128 pixels a side, and its
central square shrunk to at most 64 (a small matrix, as the card's 64x64 scans); ``--forms
full`` adds the whole plane at its own matrix. Each is
acquired as the model card acquires its scans (:func:`model_card.problem`: ISMRMRD through the
simulator and reader, ``--coils`` birdcage coils, 0.3 % noise, 5x VDRad, ESPIRiT maps of the
undersampled scan) with one and with two sets of maps, and reconstructed by the routed default
as ``npgd-recon`` routes it for that many sets (or ``--npgd``) and by CS-WV / CS-TV with lambda
tuned on the truth, each with one and with two sets. Also recorded: the second set's share of
the maps' energy (``sum |S_2|^2 / sum |S_1|^2``).

Writes ``OUT/selection.json`` (every problem's scores) and prints, per form and overall, the
mean SNR of each column and the mean of NPGD minus the better tuned CS for each choice of sets
(one set; two sets; two sets where the share passes each threshold). Not a test: about 20
minutes on 2 idle cores. The files in ``docs/model_card/soft-sense/selection-*.json`` were
written when the network's proximal could also act on the first set only and one model served
both set counts (``model``): their ``npgd/2-every`` is today's ``npgd/2`` for that model,
``npgd/2-first`` the variant given up (commit 2225879 has that version of this script).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from model_card import TUNED, problem, routed, tuned_cs
from tqdm import tqdm

from npgd_recon.core.metrics import all_metrics
from npgd_recon.data.resample import shrink
from npgd_recon.data.sources import build_source
from npgd_recon.recon.base import ReconOptions
from npgd_recon.recon.methods import make_reconstructor
from npgd_recon.training.config import load_config

CONFIG = "configs/cpu-multi-t20.toml"
FORMS = ("whole", "crop", "64", "full")
DEFAULT_FORMS = FORMS[:3]  # "full": only when asked (the matrix sizes of the card's large scans)


def planes(count: int) -> list[tuple[str, np.ndarray]]:
    """``count`` evenly spaced planes of each selection volume, named ``source:index``."""
    out = []
    for spec in load_config(CONFIG).data.validation:
        source = build_source(spec)
        rng = np.random.default_rng(3)
        for i in np.linspace(0, len(source) - 1, count + 2).round().astype(int)[1:-1]:
            image = source.image(int(i), rng)
            out.append((f"{spec['name']}:{i}", image))
    return out


def posed(image: np.ndarray, form: str) -> np.ndarray:
    """The plane as the problem ``form`` poses it: ``[1, y, x]``, even sizes, peak 1
    (``"full"``: the whole plane at its own matrix, up to 128x256 here)."""
    if form == "crop":
        ny, nx = (int(round(s * 0.2)) for s in image.shape)
        image = image[ny:image.shape[0] - ny, nx:image.shape[1] - nx]
    elif form == "64":
        side = min(image.shape)
        y0, x0 = ((s - side) // 2 for s in image.shape)
        image = image[y0:y0 + side, x0:x0 + side]
    if form != "full":
        image = shrink(image, 64 if form == "64" else 128)
    ny, nx = (s // 2 * 2 for s in image.shape)
    image = image[:ny, :nx]
    return (image / np.abs(image).max()).astype(np.complex64)[None]


def score(reference: np.ndarray, result) -> float:
    return float(all_metrics(reference[0], result.images[0])["snr_db"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planes", type=int, default=4, help="planes per selection volume")
    parser.add_argument("--coils", type=int, default=8)
    parser.add_argument("--forms", nargs="+", default=list(DEFAULT_FORMS), choices=FORMS)
    parser.add_argument("--npgd", help="this model (name or .safetensors) instead of the "
                        "routed default")
    parser.add_argument("--reuse", type=Path, help="an earlier selection.json (same planes and "
                        "coils): its CS columns and shares are taken, not run again")
    parser.add_argument("--out", type=Path, default=Path("docs/model_card/soft-sense"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cases = [(name, form, posed(image, form)) for name, image in planes(args.planes)
             for form in args.forms]
    cases = [c for c in cases if min(c[2].shape[1:]) >= 40]  # no sliver of a volume's edge
    earlier = {(r["plane"], r["form"]): r for r in
               json.loads(args.reuse.read_text())["rows"]} if args.reuse else {}
    given = make_reconstructor("npgd", ReconOptions(weights=args.npgd, device="cpu",
                                                    precision="fp32")) if args.npgd else None
    built: dict[str, object] = {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, form, images in tqdm(cases, desc="problems", unit="problem"):
            old = earlier.get((name, form), {})
            row = {"plane": name, "form": form, "shape": list(images.shape[1:]),
                   **{k: v for k, v in old.items() if k == "share" or k.startswith("cs")}}
            for sets in (1, 2):
                recon = given or routed(images.shape[1:], args.coils, "fp32", built, sets)
                row[f"model/{sets}"] = recon.model_name
                kspace, mask, maps, reference = problem(images, args.coils, 0.003, 5.0,
                                                        Path(tmp), sets)
                if sets == 2:
                    energy = (np.abs(maps[:, 0]) ** 2).sum(), (np.abs(maps[:, 1]) ** 2).sum()
                    row["share"] = float(energy[1] / energy[0])
                if any(f"{t}/{sets}" not in row for t in TUNED):
                    for label, (_, cs) in tuned_cs(kspace, mask, maps, reference).items():
                        row[f"{label}/{sets}"] = score(reference, cs(kspace, mask, maps,
                                                                     noise_std=1.0))
                row[f"npgd/{sets}"] = score(reference, recon(kspace, mask, maps,
                                                             noise_std=1.0))
            rows.append(row)
            tqdm.write(json.dumps(row))
    (args.out / "selection.json").write_text(json.dumps({"coils": args.coils, "rows": rows},
                                                        indent=1) + "\n")
    print(summary(rows))


def margin(row: dict, sets: int) -> float:
    """NPGD minus the better tuned CS, both with ``sets`` sets of maps."""
    return row[f"npgd/{sets}"] - max(row[f"{t}/{sets}"] for t in TUNED)


def summary(rows: list[dict]) -> str:
    """Markdown: mean SNRs per form and the margins under each choice of sets."""
    columns = ["npgd/1", "npgd/2", *(f"{t}/{s}" for s in (1, 2) for t in TUNED)]
    lines = ["| form | problems | mean share | " + " | ".join(columns) + " |",
             "|---|---:|---:|" + "---|" * len(columns)]
    for form in (*FORMS, "all"):
        part = [r for r in rows if form in ("all", r["form"])]
        if not part:
            continue
        lines.append(f"| {form} | {len(part)} | {np.mean([r['share'] for r in part]):.3f} | "
                     + " | ".join(f"{np.mean([r[c] for r in part]):.2f}" for c in columns)
                     + " |")
    lines += ["", "| sets chosen | mean NPGD - best tuned CS | scans below CS |",
              "|---|---:|---:|"]
    shares = sorted({round(r["share"], 3) for r in rows})
    choices = [("one set", lambda r: 1), ("two sets", lambda r: 2)] + [
        (f"two where share >= {t:.3f}", lambda r, t=t: 2 if r["share"] >= t else 1)
        for t in shares]
    for label, pick in choices:
        m = [margin(r, pick(r)) for r in rows]
        lines.append(f"| {label} | {np.mean(m):+.2f} | {sum(x < 0 for x in m)} / {len(m)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""Choose how much of the coil maps' model error the network is told as noise
(``ReconOptions.map_error``, :mod:`npgd_recon.core.map_error`) on the selection volumes.

    python benchmarks/map_error.py [--planes 4] [--exclude 0] [--coils 4 8] [--model NAME]
        [--weights 0 0.02 0.05 0.1 0.2] [--unroll T] [--cs [--reuse EARLIER.json]]
        [--out docs/model_card/map-error/selection.json]

The problems are those of ``benchmarks/soft_sense.py`` (planes of the calf MESE / Dixon and
ankle GRE selection volumes, never the model card's scans; posed whole, as a crop whose object
fills the field of view, and as a central 64x64 square; acquired as the card acquires its scans:
ISMRMRD, birdcage coils, 0.3 % noise, 5x VDRad, one set of ESPIRiT maps of the undersampled
scan), at each of ``--coils``. ``--exclude M`` leaves out the planes ``--planes M`` would pose
(fresh problems: ``--planes 9 --exclude 4``). Each problem is reconstructed by the routed
default (the model ``npgd-recon`` picks for its matrix and coils; ``--model``: that shipped name
or ``.safetensors`` file for every problem, e.g. a candidate; ``--unroll T``: unrolled ``T``
times instead of its own count) once per weight and, with
``--cs``, by CS with lambda tuned on the truth (CS-WV, CS-TV: the margin; 1-2 minutes a
full-matrix problem; ``--reuse`` an earlier ``--out`` to take its tuned-CS scores for the same
problems instead of rerunning them: the problems are seeded, so they are the same);
``rho`` (the maps' error fraction) is recorded. Also the real 2-coil Siemens ``gre.dat`` at 5x
VDRad (its zero-filled full scan as the reference, as ``tests/recon/test_twix_recon.py``), if
the data cache has it: its SNR over the whole image, and on the object alone
(:func:`object_mask`; the background of a noisy magnitude reference is its noise floor).

Prints the mean NPGD SNR per weight, per coil count and form, and writes every score to
``--out``. Not a test: about 15 minutes for the default set on 2 idle cores without ``--cs``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from model_card import TUNED, problem, tuned_cs
from scipy.ndimage import gaussian_filter
from soft_sense import DEFAULT_FORMS, FORMS, planes, posed, score
from tqdm import tqdm

from npgd_recon.core.map_error import map_error_fraction
from npgd_recon.core.metrics import snr_db_magnitude
from npgd_recon.models.registry import default_weights
from npgd_recon.recon.base import ReconOptions
from npgd_recon.recon.methods import make_reconstructor

NOISE = 0.003
ACCEL = 5.0


def reconstructor(plane: tuple[int, int], coils: int, weight: float, built: dict,
                  model: str | None = None, unroll: int | None = None):
    """NPGD with ``weight``: ``model``, or the routed default, unrolled ``unroll`` times
    instead of its own count (shared proximals only); cached by model and weight."""
    name = model or default_weights("npgd", "cpu", plane, coils, 1)
    if (name, weight) not in built:
        built[name, weight] = make_reconstructor("npgd", ReconOptions(
            weights=model, device="cpu", precision="fp32", plane=plane, coils=coils,
            map_error=weight))
        if unroll and built[name, weight].model.untied:  # one proximal per iteration
            raise SystemExit(f"map_error.py: --unroll needs a shared proximal; {name} has one "
                             "per iteration")
        if unroll:
            built[name, weight].model.iterations = unroll
    return built[name, weight]


def gre_row(weights: list[float], built: dict, model: str | None = None,
            unroll: int | None = None) -> dict | None:
    """NPGD on twixtools' ``gre.dat`` per weight (None without the data cache's copy)."""
    from npgd_recon.data.fetch import FetchError, find_entry
    from npgd_recon.io.ismrmrd_file import read_raw
    from npgd_recon.recon.pipeline import reconstruct_study

    try:
        path = find_entry("twixtools-gre")[1][0]
    except (FetchError, OSError):  # not fetched: the row is left out
        return None
    study = read_raw(path)
    reference = np.abs(reconstruct_study(study, make_reconstructor("zerofill"),
                                         progress=False).images[0])
    inside = object_mask(reference)
    row = {"plane": "twixtools-gre", "form": "real", "coils": study.n_coils,
           "object_fraction": float(inside.mean())}
    for weight in weights:
        recon = reconstructor(study.volumes[0].kspace.shape[-2:], study.n_coils, weight, built,
                              model, unroll)
        image = np.abs(reconstruct_study(study, recon, accel=ACCEL, progress=False).images[0])
        image = image * (reference * image).sum() / (image * image).sum()
        row[f"npgd@{weight:g}"] = float(snr_db_magnitude(reference[None], image[None])[0])
        row[f"object@{weight:g}"] = float(snr_db_magnitude((reference * inside)[None],
                                                           (image * inside)[None])[0])
    return row


def object_mask(reference: np.ndarray) -> np.ndarray:
    """The object of a magnitude image: its 2-pixel Gaussian blur above 15 % of the peak.

    The fully sampled reference's background is the magnitude of noise, whose mean is not zero
    (gre.dat: 1.9e-6 against an object mean of 2.2e-5); a reconstruction that removes it is
    charged for it by the whole-image SNR, not by the SNR on the object."""
    blurred = gaussian_filter(reference, 2.0)
    return blurred > 0.15 * blurred.max()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planes", type=int, default=4, help="planes per selection volume")
    parser.add_argument("--exclude", type=int, default=0,
                        help="leave out the planes that --planes EXCLUDE poses")
    parser.add_argument("--coils", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--forms", nargs="+", default=list(DEFAULT_FORMS), choices=FORMS)
    parser.add_argument("--weights", type=float, nargs="+", default=[0, 0.02, 0.05, 0.1, 0.2])
    parser.add_argument("--model", help="weights for every problem (default: the routed default)")
    parser.add_argument("--unroll", type=int, help="unroll every model this many times instead "
                        "of its own count (its proximal shared across iterations)")
    parser.add_argument("--cs", action="store_true", help="also CS tuned on the truth")
    parser.add_argument("--reuse", type=Path, help="with --cs: an earlier --out whose tuned-CS "
                        "scores are taken for the problems it holds")
    parser.add_argument("--out", type=Path,
                        default=Path("docs/model_card/map-error/selection.json"))
    args = parser.parse_args()
    if min(args.coils) < 2:
        parser.error("--coils: the maps' error needs at least 2 coils (one coil has no maps)")
    if args.unroll is not None and args.unroll < 1:
        parser.error(f"--unroll must be at least 1, got {args.unroll}")
    if args.reuse and not args.cs:
        parser.error("--reuse takes tuned-CS scores: it needs --cs")
    if args.reuse and not args.reuse.is_file():
        parser.error(f"--reuse: no such file {args.reuse}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    earlier = {(r["plane"], r["form"], r["coils"]): r
               for r in json.loads(args.reuse.read_text())["rows"]} if args.reuse else {}
    left_out = {name for name, _ in planes(args.exclude)} if args.exclude else set()
    cases = [(name, form, posed(image, form), coils) for name, image in planes(args.planes)
             if name not in left_out for form in args.forms for coils in args.coils]
    cases = [c for c in cases if min(c[2].shape[1:]) >= 40]  # no sliver of a volume's edge
    built: dict = {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, form, images, coils in tqdm(cases, desc="problems", unit="problem"):
            kspace, mask, maps, reference = problem(images, coils, NOISE, ACCEL, Path(tmp))
            row = {"plane": name, "form": form, "coils": coils, "shape": list(images.shape[1:]),
                   "rho": float(map_error_fraction(kspace, mask, maps, 1.0)[0])}
            for weight in args.weights:
                recon = reconstructor(images.shape[1:], coils, weight, built, args.model,
                                      args.unroll)
                row["model"] = recon.model_name
                row[f"npgd@{weight:g}"] = score(reference, recon(kspace, mask, maps,
                                                                 noise_std=1.0))
            known = earlier.get((name, form, coils), {})
            if args.cs and all(label in known for label in TUNED):
                row.update({label: known[label] for label in TUNED})
            elif args.cs:
                for label, (_, cs) in tuned_cs(kspace, mask, maps, reference).items():
                    row[label] = score(reference, cs(kspace, mask, maps, noise_std=1.0))
            rows.append(row)
            tqdm.write(json.dumps(row))
    real = gre_row(args.weights, built, args.model, args.unroll)
    args.out.write_text(json.dumps({"planes": args.planes, "exclude": args.exclude,
                                    "unroll": args.unroll,
                                    "weights": args.weights, "rows": rows, "real": real},
                                   indent=1) + "\n")
    print(summary(rows, args.weights, real))


def summary(rows: list[dict], weights: list[float], real: dict | None) -> str:
    """Markdown: mean NPGD SNR per weight, overall and per coil count and form, with the better
    tuned CS where it ran; the real scan."""
    columns = [f"npgd@{w:g}" for w in weights]
    lines = ["| problems | count | mean rho | " + " | ".join(f"weight {w:g}" for w in weights)
             + " | best tuned CS |", "|---|---:|---:|" + "---:|" * (len(weights) + 1)]
    groups = [("all", rows)] + [
        (f"{c} coils, {f}", [r for r in rows if r["coils"] == c and r["form"] == f])
        for c in sorted({r["coils"] for r in rows}) for f in FORMS]
    for label, part in groups:
        if part:
            best = (f"{np.mean([max(r[t] for t in TUNED) for r in part]):.2f}"
                    if all(t in r for r in part for t in TUNED) else "")
            lines.append(f"| {label} | {len(part)} | {np.mean([r['rho'] for r in part]):.3f} | "
                         + " | ".join(f"{np.mean([r[c] for r in part]):.2f}" for c in columns)
                         + f" | {best} |")
    if real:
        lines.append(f"| {real['plane']} ({real['coils']} coils) | 1 | | "
                     + " | ".join(f"{real[c]:.2f}" for c in columns) + " | |")
        if all(c.replace("npgd@", "object@") in real for c in columns):
            lines.append(f"| {real['plane']}, object only | 1 | | " + " | ".join(
                f"{real[c.replace('npgd@', 'object@')]:.2f}" for c in columns) + " | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

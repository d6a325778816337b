"""Calibrate and check the automatic CS lambda (``bart_baselines.cs.auto_lambda``).

    python benchmarks/cs_lambda.py [--size 128] [--out docs/cs_lambda-128.json] [--curves FILE]

Cases: a Shepp-Logan phantom (sigpy) and an axial Colin27 brain slice (mricron-data; neither is
training data), each with 1 and 8 coils, written by ``write_scan`` as a scanner would (no noise
readouts, so the noise level must be estimated from the data), at complex k-space noise 0,
1, 2 and 5 % of the image peak, undersampled 5x with VDRad (ESPIRiT maps for 8 coils).
Reference: the noiseless fully sampled reconstruction. For each case and method the script
sweeps lambda over a half-decade grid (the oracle is the best grid point), computes the
normalised noise level both as known (the simulated std) and as estimated from the data, fits
``auto_lambda``'s (floor, floor coil exponent, slope, coil exponent) to minimise the worst SNR
loss against the oracle over both noise paths at once (one rule for both; SNR interpolated in
log lambda between grid points), and prints the shipped rule (``AUTO_LAMBDA``, the joint fit
at 128x128) vs oracle vs zero filling, with its worst misses. Not a test: about 5 minutes of
BART on 2 idle cores. ``--curves docs/cs_lambda-128.json`` reuses an earlier run's SNR curves
(they do not depend on the noise estimate or the rule) and takes seconds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import nibabel
import numpy as np
from scipy import ndimage
from tqdm import tqdm

from bart_baselines.cs import AUTO_LAMBDA, cs_tv, cs_wavelet, normalised_noise
from npgd_recon.core.metrics import snr_db_magnitude
from npgd_recon.io.ismrmrd_file import read_raw
from npgd_recon.recon.methods import make_reconstructor
from npgd_recon.recon.pipeline import espirit_coil_maps, undersample
from npgd_recon.sim.phantoms import shepp_logan
from npgd_recon.sim.phase import smooth_phase
from npgd_recon.sim.scan_writer import ScanSettings, write_scan

CH2 = "/usr/share/mricron/templates/ch2.nii.gz"
NOISES = (0.0, 0.01, 0.02, 0.05)
GRID = tuple(10.0 ** np.arange(-5.0, -0.9, 0.5))
SOLVERS = {"wavelet": cs_wavelet, "tv": cs_tv}
PATHS = {"known": "sigma_true", "estimated": "sigma_normalised"}


def objects(size: int) -> dict[str, np.ndarray]:
    """Complex ``[1, size, size]`` images with peak magnitude 1."""
    brain = np.asarray(nibabel.load(CH2).get_fdata(dtype=np.float32))
    axial = np.rot90(brain[:, :, 90])
    axial = ndimage.zoom(axial, (size / axial.shape[0], size / axial.shape[1]), order=1)
    axial = axial * np.exp(1j * smooth_phase(axial.shape, seed=4))
    out = {"shepp-logan": shepp_logan((size, size)), "colin27": axial}
    return {k: (v / np.abs(v).max()).astype(np.complex64)[None] for k, v in out.items()}


def problem(image: np.ndarray, coils: int, noise: float, folder: Path, maps: bool = True):
    """Undersampled k-space, mask and maps (None without ``maps``) of one simulated scan."""
    path = folder / f"scan-{coils}-{noise}.h5"
    write_scan(path, image, settings=ScanSettings(coils=coils, noise=noise, noise_readouts=0,
                                                  oversampling=1, seed=7))
    volume = read_raw(path).volumes[0]
    kspace, mask = undersample(volume, 5.0)
    return kspace, mask, espirit_coil_maps(kspace) if maps else None, volume


def noise_levels(kspace, mask, coils: int, noise: float) -> tuple[float, float]:
    """The normalised noise level as estimated from the data and as known (the simulated
    std)."""
    y, m = (kspace[:, 0] if coils == 1 else kspace), mask.astype(np.float32)
    sens = None if coils == 1 else "espirit"  # not computed: normalised_noise needs no maps
    return (normalised_noise(y, m, sens, stack=True),
            noise * normalised_noise(y, m, sens, stack=True, noise_std=1.0))


def reference(image: np.ndarray, coils: int, folder: Path) -> np.ndarray:
    """The noiseless fully sampled reconstruction."""
    _, _, _, volume = problem(image, coils, 0.0, folder)
    maps = espirit_coil_maps(volume.kspace)
    return make_reconstructor("zerofill")(volume.kspace, np.ascontiguousarray(volume.mask),
                                          maps).images


def run(kspace, mask, maps, method: str, lam: float) -> np.ndarray:
    y = kspace[:, 0] if maps is None else kspace
    return SOLVERS[method](y, mask.astype(np.float32), maps, lam=lam, stack=True)


def interpolated(curve: dict[float, float], lam: float) -> float:
    """SNR at ``lam`` by linear interpolation in log(lambda) over the grid."""
    lams = np.log10(sorted(curve))
    return float(np.interp(np.log10(lam), lams, [curve[v] for v in sorted(curve)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("docs/cs_lambda-128.json"))
    parser.add_argument("--curves", type=Path, default=None,
                        help="take the SNR curves and zero filling from this earlier output "
                             "(same size; no BART runs): re-estimate noise levels, refit, "
                             "re-check the shipped rule")
    args = parser.parse_args()
    stored = None
    if args.curves:
        earlier = json.loads(args.curves.read_text())
        if not np.allclose(earlier["grid"], GRID):
            raise SystemExit(f"{args.curves} has another lambda grid")
        stored = {(c["object"], c["coils"], c["noise"]): c for c in earlier["cases"]}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases = [(n, im, c, s) for n, im in objects(args.size).items() for c in (1, 8)
                 for s in NOISES]
        for name, image, coils, noise in tqdm(cases, desc="cases"):
            if stored is not None:
                kspace, mask, _, _ = problem(image, coils, noise, folder, maps=False)
                sigma, true = noise_levels(kspace, mask, coils, noise)
                old = stored[(name, coils, noise)]
                row = {"object": name, "coils": coils, "noise": noise, "sigma_normalised": sigma,
                       "sigma_true": true, "zerofill_db": old["zerofill_db"]}
                for method in SOLVERS:
                    curve = {lam: old[method]["curve"][f"{lam:.3g}"] for lam in GRID}
                    row[method] = {k: old[method][k] for k in ("curve", "oracle_lambda",
                                                              "oracle_db")}
                    row[method]["_curve"] = curve
                rows.append(row)
                continue
            ref = reference(image, coils, folder)
            kspace, mask, maps, _ = problem(image, coils, noise, folder)
            sigma, true = noise_levels(kspace, mask, coils, noise)
            zero = make_reconstructor("zerofill")(kspace, mask, maps).images
            row = {"object": name, "coils": coils, "noise": noise, "sigma_normalised": sigma,
                   "sigma_true": true,
                   "zerofill_db": float(np.mean(snr_db_magnitude(ref, zero)))}
            for method in SOLVERS:
                curve = {lam: float(np.mean(snr_db_magnitude(ref, run(kspace, mask, maps,
                                                                      method, lam))))
                         for lam in GRID}
                row[method] = {"curve": {f"{k:.3g}": v for k, v in curve.items()},
                               "oracle_lambda": max(curve, key=curve.get),
                               "oracle_db": max(curve.values())}
                row[method]["_curve"] = curve
            rows.append(row)
            tqdm.write(f"{name} {coils} coils noise {noise}: sigma_n {sigma:.3g}, zero filling "
                       f"{row['zerofill_db']:.2f} dB, " + ", ".join(
                           f"{m} oracle {row[m]['oracle_db']:.2f} dB at "
                           f"{row[m]['oracle_lambda']:.2g}" for m in SOLVERS))
    fits = fit(rows)
    print(f"joint fit (floor, floor coil exponent, slope, coil exponent): {fits}")
    print(f"shipped AUTO_LAMBDA: {AUTO_LAMBDA}")
    print("| object | coils | noise | zero filling | CS-WV known / estimated / oracle | "
          "CS-TV known / estimated / oracle |")
    print("|---|---:|---:|---:|---|---|")
    worst = {}
    for row in rows:
        cells = []
        for method in SOLVERS:
            found = [interpolated(row[method]["_curve"], rule(AUTO_LAMBDA[method], row, key))
                     for key in PATHS.values()]
            row[method].update(known_db=found[0], estimated_db=found[1])
            for path, value in zip(PATHS, found):
                miss = row[method]["oracle_db"] - value
                worst[(method, path)] = max(worst.get((method, path), -np.inf), miss)
                worst[("zero filling margin",)] = min(worst.get(("zero filling margin",), np.inf),
                                                      value - row["zerofill_db"])
            cells.append(" / ".join(f"{v:.2f}" for v in (*found, row[method]["oracle_db"])))
            del row[method]["_curve"]
        print(f"| {row['object']} | {row['coils']} | {row['noise']:.2f} | "
              f"{row['zerofill_db']:.2f} | {cells[0]} | {cells[1]} |")
    for key in sorted(worst, key=len, reverse=True):
        print(("worst miss vs oracle, " if len(key) == 2 else "smallest ") + " ".join(key)
              + f": {worst[key]:.2f} dB")
    args.out.write_text(json.dumps({"shipped": AUTO_LAMBDA, "fit": fits, "grid": GRID,
                                    "cases": rows}, indent=1) + "\n")


def rule(params: tuple[float, float, float, float], row: dict, key: str) -> float:
    """``auto_lambda``'s formula with given (floor, floor coil exponent, slope, coil
    exponent)."""
    floor, floor_exponent, slope, exponent = params
    coils = row["coils"]
    return max(floor * coils ** -floor_exponent, slope * row[key] * coils ** exponent)


def fit(rows: list) -> dict[str, tuple[float, float, float, float]]:
    """Per method, the rule parameters with the smallest worst-case SNR loss against the
    oracle over both noise paths (SNR interpolated between grid points), rounded to 0.1 dB;
    ties go to the largest smallest margin over zero filling (up to 1 dB), then the smallest
    mean loss."""
    grids = np.meshgrid(10.0 ** np.arange(-5.0, -1.49, 1 / 16), np.arange(0.0, 1.51, 0.05),
                        10.0 ** np.arange(-3.0, 1.51, 0.05), (0.0, 0.5, 1.0, 1.5), indexing="ij")
    floor, floor_exponent, slope, exponent = (g.ravel() for g in grids)
    best = {}
    for method in SOLVERS:
        worst, total, margin = 0.0, 0.0, np.inf
        for r in rows:
            lams = np.log10(sorted(r[method]["_curve"]))
            snrs = [r[method]["_curve"][v] for v in sorted(r[method]["_curve"])]
            for key in PATHS.values():
                lam = np.maximum(floor * r["coils"] ** -floor_exponent,
                                 slope * r[key] * r["coils"] ** exponent)
                snr = np.interp(np.log10(lam), lams, snrs)
                worst = np.maximum(worst, r[method]["oracle_db"] - snr)
                total = total + r[method]["oracle_db"] - snr
                margin = np.minimum(margin, snr - r["zerofill_db"])
        order = np.lexsort((total, -np.minimum(margin, 1.0), np.round(worst, 1)))
        best[method] = tuple(float(g[order[0]]) for g in (floor, floor_exponent, slope, exponent))
    return best


if __name__ == "__main__":
    main()

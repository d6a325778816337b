"""Calibrate and check the automatic CS lambda (``bart_baselines.cs.auto_lambda``).

    python benchmarks/cs_lambda.py [--size 128] [--out docs/cs_lambda-128.json]

Cases: a Shepp-Logan phantom (sigpy) and an axial Colin27 brain slice (mricron-data; neither is
training data), each with 1 and 8 coils, written by ``write_scan`` as a scanner would (no noise
readouts, so the noise level must be estimated from the data), at complex k-space noise 0,
1, 2 and 5 % of the image peak, undersampled 5x with VDRad (ESPIRiT maps for 8 coils).
Reference: the noiseless fully sampled reconstruction. For each case and method the script
sweeps lambda over a half-decade grid (the oracle is the best grid point), computes the
normalised noise level both as known (the simulated std) and as estimated from the data, fits
``auto_lambda``'s (floor, slope, coil exponent) for each to minimise the worst SNR loss against
the oracle (SNR interpolated in log lambda between grid points), and prints rule vs oracle vs
zero filling. The shipped ``AUTO_LAMBDA`` is the known-noise fit at 128x128, used for estimated
noise levels too. Not a test: about 5 minutes of BART on 2 idle cores.
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

from bart_baselines.cs import cs_tv, cs_wavelet, normalised_noise
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


def objects(size: int) -> dict[str, np.ndarray]:
    """Complex ``[1, size, size]`` images with peak magnitude 1."""
    brain = np.asarray(nibabel.load(CH2).get_fdata(dtype=np.float32))
    axial = np.rot90(brain[:, :, 90])
    axial = ndimage.zoom(axial, (size / axial.shape[0], size / axial.shape[1]), order=1)
    axial = axial * np.exp(1j * smooth_phase(axial.shape, seed=4))
    out = {"shepp-logan": shepp_logan((size, size)), "colin27": axial}
    return {k: (v / np.abs(v).max()).astype(np.complex64)[None] for k, v in out.items()}


def problem(image: np.ndarray, coils: int, noise: float, folder: Path):
    """Undersampled k-space, mask and maps of one simulated scan."""
    path = folder / f"scan-{coils}-{noise}.h5"
    write_scan(path, image, settings=ScanSettings(coils=coils, noise=noise, noise_readouts=0,
                                                  oversampling=1, seed=7))
    volume = read_raw(path).volumes[0]
    kspace, mask = undersample(volume, 5.0)
    return kspace, mask, espirit_coil_maps(kspace), volume


def reference(image: np.ndarray, coils: int, folder: Path) -> np.ndarray:
    """The noiseless fully sampled reconstruction."""
    _, _, _, volume = problem(image, coils, 0.0, folder)
    maps = espirit_coil_maps(volume.kspace)
    return make_reconstructor("zerofill")(volume.kspace, np.ascontiguousarray(volume.mask), maps)


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
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases = [(n, im, c, s) for n, im in objects(args.size).items() for c in (1, 8)
                 for s in NOISES]
        for name, image, coils, noise in tqdm(cases, desc="cases"):
            ref = reference(image, coils, folder)
            kspace, mask, maps, _ = problem(image, coils, noise, folder)
            y = kspace[:, 0] if maps is None else kspace
            sigma = normalised_noise(y, mask.astype(np.float32), maps, stack=True)
            zero = make_reconstructor("zerofill")(kspace, mask, maps)
            true = noise * normalised_noise(y, mask.astype(np.float32), maps, stack=True,
                                            noise_std=1.0)
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
            rows.append((row, kspace, mask, maps, ref))
            tqdm.write(f"{name} {coils} coils noise {noise}: sigma_n {sigma:.3g}, zero filling "
                       f"{row['zerofill_db']:.2f} dB, " + ", ".join(
                           f"{m} oracle {row[m]['oracle_db']:.2f} dB at "
                           f"{row[m]['oracle_lambda']:.2g}" for m in SOLVERS))
    fits = {"known": fit(rows, "sigma_true"), "estimated": fit(rows, "sigma_normalised")}
    for path, params in fits.items():
        print(f"{path} noise level: (floor, slope, coil exponent) {params}")
    print("| object | coils | noise | zero filling | CS-WV known / estimated / oracle | "
          "CS-TV known / estimated / oracle |")
    print("|---|---:|---:|---:|---|---|")
    for row, *_ in rows:
        cells = []
        for method in SOLVERS:
            found = [interpolated(row[method]["_curve"], rule(fits[p][method], row, key))
                     for p, key in (("known", "sigma_true"), ("estimated", "sigma_normalised"))]
            row[method].update(known_db=found[0], estimated_db=found[1])
            cells.append(" / ".join(f"{v:.2f}" for v in (*found, row[method]["oracle_db"])))
            del row[method]["_curve"]
        print(f"| {row['object']} | {row['coils']} | {row['noise']:.2f} | "
              f"{row['zerofill_db']:.2f} | {cells[0]} | {cells[1]} |")
    args.out.write_text(json.dumps({"fits": fits, "grid": GRID, "cases": [r for r, *_ in rows]},
                                   indent=1) + "\n")


def rule(params: tuple[float, float, float], row: dict, key: str) -> float:
    """``auto_lambda``'s formula with given (floor, slope, coil exponent)."""
    floor, slope, exponent = params
    return max(floor, slope * row[key] * row["coils"] ** exponent)


def fit(rows: list, key: str) -> dict[str, tuple[float, float, float]]:
    """Per method, the (floor, slope, coil exponent) with the smallest worst-case SNR loss
    against the oracle (ties: the smallest mean loss), SNR interpolated between grid points."""
    floors = 10.0 ** np.arange(-5.0, -1.49, 0.25)
    slopes = 10.0 ** np.arange(-3.0, 1.51, 0.1)
    best = {}
    for method in SOLVERS:
        scores = []
        for params in ((f, s, a) for f in floors for s in slopes for a in (0.0, 0.5, 1.0, 1.5)):
            losses = [r[method]["oracle_db"] - interpolated(r[method]["_curve"],
                                                            rule(params, r, key))
                      for r, *_ in rows]
            scores.append((max(losses), float(np.mean(losses)), params))
        best[method] = tuple(float(v) for v in min(scores)[2])
    return best


if __name__ == "__main__":
    main()

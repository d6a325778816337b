"""Calibrate and check the automatic CS lambda (``bart_baselines.cs.auto_lambda``).

    python benchmarks/cs_lambda.py [--size 96] [--out docs/cs_lambda.json]

Cases: a Shepp-Logan phantom (sigpy) and an axial Colin27 brain slice (mricron-data; neither is
training data), each with 1 and 8 coils, written by ``write_scan`` as a scanner would (no noise
readouts, so the noise level must be estimated from the data), at complex k-space noise 0,
1, 2 and 5 % of the image peak, undersampled 5x with VDRad (ESPIRiT maps for 8 coils).
Reference: the noiseless fully sampled reconstruction. For each case and method the script
sweeps lambda over a half-decade grid (the oracle is the best grid point), estimates the
normalised noise level, fits ``auto_lambda``'s slope (the floor is the tuned noiseless default)
to minimise the worst SNR loss against the oracle, then runs CS at the rule's lambda and prints
rule vs oracle vs zero filling. Not a test: minutes of BART.
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
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("docs/cs_lambda.json"))
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
            row = {"object": name, "coils": coils, "noise": noise, "sigma_normalised": sigma,
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
    fitted = {}
    for method in SOLVERS:
        floor = AUTO_LAMBDA[method][0]
        slopes = 10.0 ** np.arange(-1.0, 3.01, 0.05)
        losses = [max(r[method]["oracle_db"] - interpolated(
            r[method]["_curve"], max(floor, s * r["sigma_normalised"])) for r, *_ in rows)
            for s in slopes]
        fitted[method] = float(slopes[int(np.argmin(losses))])
    print(f"fitted slopes: {fitted} (floors: "
          f"{ {m: AUTO_LAMBDA[m][0] for m in SOLVERS} })")
    print("| object | coils | noise | sigma_n | zero filling | CS-WV rule / oracle (dB) | "
          "CS-TV rule / oracle (dB) |")
    print("|---|---:|---:|---:|---:|---|---|")
    results = []
    for row, kspace, mask, maps, ref in rows:
        cells = []
        for method in SOLVERS:
            lam = max(AUTO_LAMBDA[method][0], fitted[method] * row["sigma_normalised"])
            rule = float(np.mean(snr_db_magnitude(ref, run(kspace, mask, maps, method, lam))))
            row[method].update(rule_lambda=lam, rule_db=rule)
            del row[method]["_curve"]
            cells.append(f"{rule:.2f} / {row[method]['oracle_db']:.2f} "
                         f"(lambda {lam:.2g} / {row[method]['oracle_lambda']:.2g})")
        results.append(row)
        print(f"| {row['object']} | {row['coils']} | {row['noise']:.3f} | "
              f"{row['sigma_normalised']:.2e} | {row['zerofill_db']:.2f} | {cells[0]} | "
              f"{cells[1]} |")
    args.out.write_text(json.dumps({"slopes": fitted, "grid": GRID, "cases": results},
                                   indent=1) + "\n")


if __name__ == "__main__":
    main()

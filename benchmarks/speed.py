"""Reconstruction speed, side by side in one run on one machine, printed as ratios to CS-WV.

Two cases: a volume of ``--slices`` 200x100 single-coil problems (MNI template slices resized,
20 % VDRad; the paper's volume) and a knee-size 3-D case, ``--knee-slices`` planes of 320x256
(ky x kz of a 3-D scan after the readout FFT), whose per-volume time is the per-plane time times
``--knee-planes``. Every method gets one call per case (BART loops over slices inside one
process; the networks batch ``--batch`` slices, BN folded, channels-last, in the precision the
row names). Network timings are medians of ``--repeats`` runs after a warm-up; CS runs once, on
the CPU (it takes seconds). Networks run on ``--device``; the copy back to the host ends each
timed call, so CUDA work is complete when the clock stops. ``F128`` rows use untrained weights:
speed depends on the architecture only. The SNR change of bf16 against fp32 is measured on the
trained models' outputs.

    python benchmarks/speed.py --slices 151

End to end (``--end-to-end``, instead of the rows above): the wall time of the whole
``npgd-recon`` command (interpreter start-up and imports included) and its seconds per stage
(``--timings`` JSON) on simulated Shepp-Logan files, fully sampled with noise readouts and
retrospectively undersampled ``--e2e-accel`` (VDRad): a 2-D multi-slice file (``--e2e-2d``,
slices x ny x nx) and a 3-D file (``--e2e-3d``, kz x ky x readout: readout planes of ky x kz),
each with 1, 8 and 16 coils (``--e2e-coils``), for npgd (the shipped default model), zerofill
and cswv in one run, with the ratio of CS-WV's wall time to each method's. Medians of
``--e2e-repeats`` runs; stage columns by their key in :data:`npgd_recon.recon.pipeline.STAGES`,
"start-up, imports, rest" the wall time outside every stage.

    python benchmarks/speed.py --end-to-end --e2e-2d 16x128x96 --e2e-3d 32x128x64

``--e2e-file RAW ...`` times the same three methods on files as acquired, e.g. the issue-28
case, a 3-D 8-coil Colin27 scan undersampled 5x at acquisition:

    npgd-simulate --nifti /usr/share/mricron/templates/ch2.nii.gz --3d --matrix 192x160x32 \
      --coils 8 --undersample 5 --noise 0.003 --out colin8.h5
    python benchmarks/speed.py --e2e-file colin8.h5
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from npgd_recon.analysis.evaluation import retrospective
from npgd_recon.core.device import describe_hardware, pick_device
from npgd_recon.core.metrics import snr_db_magnitude
from npgd_recon.core.transforms import NORMALISATION
from npgd_recon.data.sources import VolumeSlices
from npgd_recon.models.inference import prepare_for_inference
from npgd_recon.models.npgd import NeuralPGD
from npgd_recon.recon.base import ReconOptions, Reconstructor
from npgd_recon.recon.methods import make_reconstructor
from npgd_recon.recon.network import NetworkReconstructor, NPGDReconstructor
from npgd_recon.recon.pipeline import STAGES
from npgd_recon.sim.phantoms import shepp_logan
from npgd_recon.sim.phase import random_phase
from npgd_recon.sim.scan_writer import ScanSettings, write_scan

MNI = "../shared/data/mni_icbm152_t1_2009a_1mm.nii.gz"
END_TO_END_METHODS = ("npgd", "zerofill", "cswv")


def volume(count: int, shape: tuple[int, int] = (200, 100)) -> np.ndarray:
    """``count`` axial MNI slices resized to ``shape``, complex."""
    source = VolumeSlices(MNI, axes=(2,))
    rng = np.random.default_rng(0)
    picks = np.linspace(0, len(source) - 1, count).round().astype(int)
    images = []
    for i in picks:
        image = source.image(int(i), rng)
        factor = (shape[0] / image.shape[0], shape[1] / image.shape[1])
        images.append(np.abs(ndimage.zoom(np.abs(image), factor, order=1))
                      * random_phase(shape, rng))
    return np.stack(images).astype(np.complex64)


def timed(recon: Reconstructor, kspace, masks, repeats: int) -> tuple[float, np.ndarray]:
    """Median seconds for the whole stack (after one warm-up run for networks), and the output."""
    runs = []
    warm = isinstance(recon, NetworkReconstructor)
    for _ in range(repeats + warm):
        start = time.perf_counter()
        out = recon(kspace, masks).images
        runs.append(time.perf_counter() - start)
    return float(np.median(runs[1:] if warm else runs)), out


def untrained(iterations: int, blocks: int, precision: str, batch: int,
              device: torch.device) -> Reconstructor:
    """A paper-size (F=128) network with random weights, prepared like a shipped one."""
    model = NeuralPGD(iterations=iterations, blocks=blocks, features=128).eval().to(device)
    return NPGDReconstructor(device, prepare_for_inference(model, precision),
                             {"normalisation": NORMALISATION}, "f128", batch, precision)


def conv_flops(model: torch.nn.Module, pixels: int) -> float:
    """Floating-point operations (2 per multiply-add) of every convolution of one
    reconstruction of ``pixels`` pixels: the arithmetic floor the FFTs come on top of."""
    iterations = getattr(model, "iterations", 1)
    per_pixel = sum(2 * m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1]
                    // m.groups for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    return float(iterations * per_pixel * pixels)


def compiled(recon: Reconstructor) -> Reconstructor:
    """``recon`` with its proximal network compiled by ``torch.compile`` (inductor)."""
    recon.model.prox = torch.compile(recon.model.prox, dynamic=False)
    return recon


def size(text: str) -> tuple[int, int, int]:
    """``"16x128x96"`` -> ``(16, 128, 96)``."""
    return tuple(int(n) for n in text.lower().split("x"))


def command_run(tool: str, source: Path, method: str, accel: float | None,
                folder: Path) -> tuple[float, dict]:
    """Wall seconds of one ``npgd-recon --timings`` run and its timings record (``accel``:
    retrospective undersampling, None for the file as acquired)."""
    out = folder / f"{source.stem}-{method}"
    undersample = [] if accel is None else ["--undersample", f"{accel:g}"]
    start = time.perf_counter()
    done = subprocess.run([tool, str(source), "--out", str(out), "--method", method,
                           *undersample, "--timings", "--quiet", "--force"],
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{source.name} {method}: {done.stderr.strip()}")
    return wall, json.loads(out.with_name(out.name + ".timings.json").read_text())


def recon_tool() -> str:
    """The ``npgd-recon`` beside this interpreter (else the one on PATH)."""
    tool = shutil.which("npgd-recon", path=str(Path(sys.executable).parent))
    return tool or shutil.which("npgd-recon") or "npgd-recon"


def print_stage_table(rows: list, title: str) -> None:
    """Rows ``(case, method, wall, ratio, rest, stages)`` as a Markdown table."""
    keys = [key for key in STAGES if any(row[5][key] > 0 for row in rows)]
    print(f"\n{title}, {time.strftime('%Y-%m-%d')}\n")
    print("| case | method | wall s | CS-WV / method | start-up, imports, rest | "
          + " | ".join(keys) + " |")
    print("|---|---|---:|---:|---:|" + "---:|" * len(keys))
    for case, method, wall, ratio, rest, stages in rows:
        print(f"| {case} | {method} | {wall:.2f} | {ratio:.1f}x | {rest:.2f} | "
              + " | ".join(f"{stages[key]:.2f}" for key in keys) + " |")


def file_rows(source: Path, case: str, accel: float | None, repeats: int,
              folder: Path) -> list:
    """Table rows of every end-to-end method on one file (medians of ``repeats`` runs)."""
    tool = recon_tool()
    runs = {m: [command_run(tool, source, m, accel, folder) for _ in range(repeats)]
            for m in END_TO_END_METHODS}
    walls = {m: statistics.median(wall for wall, _ in r) for m, r in runs.items()}
    rows = []
    for method, results in runs.items():
        stages = {key: statistics.median(r["seconds"].get(key, 0.0) for _, r in results)
                  for key in STAGES}
        rows.append((case, method, walls[method], walls["cswv"] / walls[method],
                     walls[method] - sum(stages.values()), stages))
        print(f"{case} | {method}: {walls[method]:.2f} s", flush=True)
    return rows


def end_to_end_files(files: list[Path], repeats: int) -> None:
    """The end-to-end table for files as acquired (``--e2e-file``)."""
    with tempfile.TemporaryDirectory() as name:
        rows = [row for path in files
                for row in file_rows(path, path.name, None, repeats, Path(name))]
    print_stage_table(rows, f"end to end, files as acquired, medians of {repeats} run(s)")


def end_to_end(shape_2d: tuple[int, int, int], shape_3d: tuple[int, int, int], accel: float,
               repeats: int, coil_counts: tuple[int, ...] = (1, 8, 16)) -> None:
    """The end-to-end table (module docstring) as Markdown."""
    rows = []
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for volumetric, shape in ((False, shape_2d), (True, shape_3d)):
            for coils in coil_counts:
                source = folder / f"{'3d' if volumetric else '2d'}-{coils}.h5"
                write_scan(source, shepp_logan(shape), volumetric=volumetric,
                           settings=ScanSettings(coils=coils, noise=0.002))
                planes = shape[2] if volumetric else shape[0]
                case = (f"3-D {planes} planes of {shape[1]}x{shape[0]}" if volumetric
                        else f"2-D {shape[0]} slices of {shape[1]}x{shape[2]}")
                rows += file_rows(source, f"{case}, {coils} coil{'s' * (coils > 1)}", accel,
                                  repeats, folder)
    print_stage_table(rows, f"end to end, {accel:g}x VDRad, medians of {repeats} run(s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=151)
    parser.add_argument("--big-slices", type=int, default=8, help="slices for F=128 models")
    parser.add_argument("--knee-slices", type=int, default=8, help="3-D planes timed")
    parser.add_argument("--knee-planes", type=int, default=256, help="3-D planes per volume")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="where the networks run (cpu, cuda)")
    parser.add_argument("--end-to-end", action="store_true",
                        help="time whole npgd-recon runs instead (module docstring)")
    parser.add_argument("--e2e-2d", type=size, default=(16, 128, 96), metavar="SxYxX")
    parser.add_argument("--e2e-3d", type=size, default=(32, 128, 64), metavar="ZxYxX")
    parser.add_argument("--e2e-accel", type=float, default=4.0)
    parser.add_argument("--e2e-repeats", type=int, default=1)
    parser.add_argument("--e2e-coils", type=lambda text: tuple(int(n) for n in text.split(",")),
                        default=(1, 8, 16), metavar="N,N,...", help="coil counts simulated")
    parser.add_argument("--e2e-file", type=Path, nargs="+", metavar="RAW",
                        help="end to end on these files as acquired (no retrospective "
                             "undersampling) instead of the simulated ones")
    args = parser.parse_args()
    if args.e2e_file:
        end_to_end_files(args.e2e_file, args.e2e_repeats)
        return
    if args.end_to_end:
        end_to_end(args.e2e_2d, args.e2e_3d, args.e2e_accel, args.e2e_repeats, args.e2e_coils)
        return
    device = pick_device(args.device)
    cases = {"200x100": volume(args.slices), "knee 320x256": volume(args.knee_slices, (320, 256))}
    b = args.batch

    def network(method: str, weights: str, precision: str) -> Reconstructor:
        return make_reconstructor(method, ReconOptions(weights=weights, device=args.device,
                                                       batch=b, precision=precision))

    methods = {
        "NPGD npgd-t10k1-f32, fp32": lambda: network("npgd", "npgd-t10k1-f32", "fp32"),
        "NPGD npgd-t10k1-f32, bf16 (CPU default)": lambda: network(
            "npgd", "npgd-t10k1-f32", "bf16"),
        "NPGD npgd-t10k1-f32, bf16 + torch.compile": lambda: compiled(network(
            "npgd", "npgd-t10k1-f32", "bf16")),
        "deep ResNet resnet-k10-f32, fp32": lambda: network("resnet", "resnet-k10-f32", "fp32"),
        "deep ResNet resnet-k10-f32, bf16": lambda: network("resnet", "resnet-k10-f32", "bf16"),
        "NPGD T10/K1/F128, bf16": lambda: untrained(10, 1, "bf16", b, device),
        "NPGD T5/K2/F128, bf16": lambda: untrained(5, 2, "bf16", b, device),
        "CS-WV (BART, FISTA 300)": lambda: make_reconstructor("cswv"),
        "CS-TV (BART, ADMM 300)": lambda: make_reconstructor("cstv"),
    }
    results: dict[str, dict[str, float]] = {}
    snr: dict[str, float] = {}
    gflops: dict[str, float] = {}
    for case, images in cases.items():
        kspace, masks = retrospective(images, 5.0, seed=1)
        for name, factory in methods.items():
            recon = factory()
            count = args.big_slices if "F128" in name and case == "200x100" else len(images)
            start = time.perf_counter()
            if isinstance(recon, NetworkReconstructor) and "compile" in name:
                recon(kspace[:b], masks[:b])
                print(f"{name}: compilation and first batch {time.perf_counter() - start:.1f} s")
            seconds, out = timed(recon, kspace[:count], masks[:count],
                                 args.repeats if isinstance(recon, NetworkReconstructor) else 1)
            results.setdefault(name, {})[case] = seconds / count
            if isinstance(recon, NetworkReconstructor) and case == "200x100":
                gflops[name] = conv_flops(recon.model, 200 * 100) / 1e9
            if case == "200x100" and "F128" not in name:
                snr[name] = float(np.mean(snr_db_magnitude(images[:count], out)))
            print(f"{case} | {name}: {seconds / count:.4f} s / slice", flush=True)

    print(f"\n{describe_hardware(device)}, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d')}; 20 % VDRad; 200x100 volume = {args.slices} slices, "
          f"knee volume = {args.knee_planes} planes of 320x256 ({args.knee_slices} timed)\n")
    cs = "CS-WV (BART, FISTA 300)"
    print("| method | s / slice 200x100 | s / volume | vs CS-WV | s / plane 320x256 "
          "| s / knee volume | vs CS-WV | SNR 200x100 (dB) | GFLOP / slice | GFLOP/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, times in results.items():
        small, knee = times["200x100"], times["knee 320x256"]
        print(f"| {name} | {small:.4f} | {small * args.slices:.1f} "
              f"| {results[cs]['200x100'] / small:.1f}x | {knee:.4f} "
              f"| {knee * args.knee_planes:.0f} | {results[cs]['knee 320x256'] / knee:.1f}x "
              f"| {snr.get(name, float('nan')):.3f} | {gflops.get(name, float('nan')):.2f} "
              f"| {gflops.get(name, float('nan')) / small:.1f} |")


if __name__ == "__main__":
    main()

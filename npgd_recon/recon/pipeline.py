"""The main job: ISMRMRD raw data -> reconstruction -> DICOM series (and optional extras).

Shared by ``npgd-recon`` and the streaming server. Steps per volume (contrast, repetition, ...):
optional retrospective undersampling of fully sampled data, ESPIRiT maps for multi-coil data
(``bart ecalib`` on the calibration region: one call per slice of a 2-D multi-slice volume, one
for a whole 3-D volume), the reconstructor on batches of 2-D problems, and magnitude images
placed by the acquisition geometry. :class:`Reconstruction` holds the wall time of the whole
study, its seconds per stage (:data:`STAGES`; the CLI adds reading, set-up and writing and
prints them with :func:`format_timings`) and the part spent inside the reconstructor (the sum of
its calls' ``seconds``); a caller may pass ``before_call`` to stop between calls (the server's
cancellation).

The reconstructor may still be on its way: ``npgd-recon`` reads the file (torch-free: numpy and
h5py) and then hands :func:`reconstruct_study` a :class:`PendingReconstructor`, built in a
background thread (importing torch and loading the model, about a second on the CPU) while the
main thread waits for ``bart ecalib``'s coil maps of the first volume, a separate process. Only
then does the study wait for it (stage ``setup``). Started before the read, the build would slow
it down instead: the reader's per-readout Python loop and torch's import share one GIL.

Progress goes to stderr: a tqdm bar on a terminal (counting slices, or planes of a 3-D volume,
with the total from the start); in a log (stderr not a terminal) one line per stage when it
ends, instead of the bar's carriage-return updates.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import ismrmrd.xsd
import numpy as np
from tqdm import tqdm

from bart_baselines.cs import espirit_maps
from bart_baselines.espirit import VolumeMaps, calibrate_volume
from bart_baselines.runner import BartInputError
from npgd_recon.core.errors import NpgdError
from npgd_recon.io.assembly import RawStudy, RawVolume
from npgd_recon.io.atomic import Outputs
from npgd_recon.io.dicom_writer import (
    LONG_STRING,
    StudyInfo,
    study_info_from_header,
    write_series_files,
)
from npgd_recon.io.geometry import VolumeIndex
from npgd_recon.io.hybrid import HybridStack
from npgd_recon.io.ismrmrd_images import image_meta, to_ismrmrd_image, write_ismrmrd_images
from npgd_recon.io.preview import save_montage
from npgd_recon.recon.coils import VIRTUAL_COILS, coil_compression, compress
from npgd_recon.recon.methods import METHODS
from sampling import make_mask, multicoil_calib

if TYPE_CHECKING:
    from npgd_recon.recon.base import Reconstructor

STAGES = {  # stage key (as in the timings JSON) -> label of the --timings table
    "read": "read and assemble (noise whitening included)",
    "undersampling": "retrospective undersampling",
    "coil_maps": "coil maps (compression, ESPIRiT)",
    "setup": "waiting for the reconstructor (torch, model; built during the coil maps)",
    "reconstruction": "reconstruction",
    "writing": "writing outputs",
}


@dataclass
class Reconstruction:
    """Images of one study: ``images`` complex ``[n, y, x]`` over all volumes, their geometry,
    the volume (contrast, phase, repetition, set) of each image, the study's wall time
    ``seconds``, the same split into ``stages`` (seconds by :data:`STAGES` key, summed over
    volumes: ``undersampling`` when asked for, ``coil_maps``, ``reconstruction``) and
    ``recon_seconds``, the part inside the reconstructor's calls."""

    images: np.ndarray
    geometry: list
    volumes: list[VolumeIndex] = field(default_factory=list)
    seconds: float = 0.0
    recon_seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)


@contextmanager
def timed(stages: dict[str, float], stage: str) -> Iterator[None]:
    """Add the seconds the block takes to ``stages[stage]``."""
    start = time.perf_counter()
    yield
    stages[stage] = stages.get(stage, 0.0) + time.perf_counter() - start


class PendingReconstructor:
    """A reconstructor being built in a background thread (module docstring).

    ``method`` names it until it is ready; :meth:`result` waits for it (re-raising whatever the
    build raised) and, the first time, calls ``on_ready`` with it in the caller's thread (the
    CLI's line naming the model, so that it comes out in order).
    """

    def __init__(self, method: str, build: Callable[[], Reconstructor],
                 on_ready: Callable[[Reconstructor], None] | None = None) -> None:
        self.method, self._on_ready = method, on_ready
        pool = ThreadPoolExecutor(1, thread_name_prefix="npgd-build")
        self._future = pool.submit(build)
        pool.shutdown(wait=False)

    def result(self) -> Reconstructor:
        """The reconstructor, once built."""
        recon = self._future.result()
        if self._on_ready is not None:
            on_ready, self._on_ready = self._on_ready, None
            on_ready(recon)
        return recon


class UndersamplingError(NpgdError):
    """Retrospective undersampling is impossible for these data or this acceleration."""


def undersample(volume: RawVolume, accel: float, kind: str = "vdrad",
                seed: int = 0) -> tuple[np.ndarray | HybridStack, np.ndarray]:
    """Retrospectively undersample a fully sampled volume with one mask for every problem.

    Returns the k-space (a :class:`~npgd_recon.io.hybrid.HybridStack` for a 3-D volume, as
    :class:`RawVolume` holds it) and the mask ``[problem, y, x]``.

    Raises:
        UndersamplingError: the volume is already undersampled, or the mask generator cannot
            reach ``accel`` on its plane (the message is the generator's, with its own terms).
    """
    if not volume.fully_sampled:
        rate = float(volume.mask.mean())
        raise UndersamplingError(f"retrospective undersampling needs fully sampled data, but "
                                 f"this volume is already undersampled (rate {rate:.1%})")
    shape = volume.mask.shape[1:]
    options = {"seed": seed}
    if volume.kspace.shape[1] > 1:
        options["calib"] = multicoil_calib(shape)
    try:
        pattern = make_mask(kind, shape, accel, **options).mask
    except ValueError as error:
        raise UndersamplingError(f"{kind} mask on the {shape[0]}x{shape[1]} plane: "
                                 f"{error}") from None
    mask = volume.mask & pattern[None]
    if isinstance(volume.kspace, HybridStack):
        return volume.kspace.masked(pattern), mask
    return volume.kspace * mask[:, None], mask


def espirit_coil_maps(kspace: np.ndarray | HybridStack, volumetric: bool = False,
                      sets: int = 1) -> np.ndarray | VolumeMaps | None:
    """ESPIRiT maps ``[n, coil, y, x]`` for multi-coil k-space, None for a single coil.

    ``volumetric``: the stack is one 3-D volume's readout positions (hybrid space, one mask),
    calibrated by one ``bart ecalib`` (:func:`bart_baselines.espirit.calibrate_volume`); the
    maps are then a :class:`~bart_baselines.espirit.VolumeMaps`, interpolated from their coarse
    grid for the planes indexed. Otherwise one ``ecalib`` per plane, and an array.

    ``sets``: soft SENSE with ``sets > 1``: ``[n, set, coil, y, x]``, every method then solves
    for one image per set and reports the first (:class:`~npgd_recon.core.operators.
    SoftSenseOp`). 2-D planes only: a 3-D volume keeps its one set of volumetric maps.
    """
    if kspace.shape[1] == 1:
        return None
    if volumetric and len(kspace) > 1:
        try:
            maps = calibrate_volume(kspace)
        except BartInputError as error:
            raise NpgdError(str(error)) from None
        found = maps.supported()
    else:
        maps = espirit_maps(np.asarray(kspace), stack=True, sets=sets)
        found = bool(np.any(np.abs(maps) > 0))
    if not found:  # planes without signal may have none; all is an error
        raise NpgdError("ESPIRiT found no coil sensitivities: the fully sampled calibration "
                         "region is too small (it needs more than 6x6 k-space samples)")
    return maps


def reconstruct_study(study: RawStudy, recon: Reconstructor | PendingReconstructor, *,
                      accel: float | None = None, mask_kind: str = "vdrad", seed: int = 0,
                      progress: bool = True, virtual_coils: int = VIRTUAL_COILS,
                      map_sets: int = 1,
                      before_call: Callable[[], None] | None = None) -> Reconstruction:
    """Reconstruct every volume of a study with ``recon`` (a :class:`PendingReconstructor` is
    waited for after the first volume's coil maps).

    A volume of more than ``virtual_coils`` coils (0: no limit) is compressed to that many
    virtual coils before its coil maps (:mod:`npgd_recon.recon.coils`; stage ``coil_maps``).
    ``map_sets``: sets of ESPIRiT maps per plane (2: soft SENSE, :func:`espirit_coil_maps`).

    ``before_call`` runs before every call of ``recon``; whatever it raises ends the study.
    ``progress``: report progress on stderr (module docstring).
    """
    total = sum(len(v.kspace) for v in study.volumes)
    unit = "plane" if study.is_3d else "slice"
    bar_shown = progress and sys.stderr.isatty()
    multicoil = study.n_coils > 1
    images, geometry, volumes, compressed = [], [], [], []
    recon_seconds = 0.0
    stages: dict[str, float] = {}
    start = time.perf_counter()
    with tqdm(total=total, desc=recon.method, unit=unit, disable=not bar_shown) as bar:
        for volume in study.volumes:
            if accel is None:
                kspace, mask = volume.kspace, np.ascontiguousarray(volume.mask)
            else:
                with timed(stages, "undersampling"):
                    kspace, mask = undersample(volume, accel, mask_kind, seed)
            if multicoil:
                bar.set_description(f"{recon.method}: coil maps")
            with timed(stages, "coil_maps"):
                if 0 < virtual_coils < kspace.shape[1]:
                    compression = coil_compression(kspace, virtual_coils)
                    kspace = compress(kspace, compression)
                    compressed.append(compression.describe())
                maps = espirit_coil_maps(kspace, volumetric=study.is_3d, sets=map_sets)
            if isinstance(recon, PendingReconstructor):
                with timed(stages, "setup"):
                    recon = recon.result()
            bar.set_description(recon.method)
            chunk = recon.chunk(len(kspace), kspace.shape[1])
            # prewhitened data have unit noise per sample; otherwise CS estimates it
            noise_std = 1.0 if study.whitener is not None else None
            with timed(stages, "reconstruction"):
                for i in range(0, len(kspace), chunk):
                    part = slice(i, i + chunk)
                    if before_call is not None:
                        before_call()
                    result = recon(kspace[part], mask[part],
                                   None if maps is None else maps[part], noise_std)
                    images.append(result.images)
                    recon_seconds += result.seconds
                    bar.update(len(result.images))
            geometry += volume.geometry
            volumes += [volume.index] * len(kspace)
    if progress and not bar_shown:
        if multicoil:
            _log_stage("coil maps", total, unit, stages["coil_maps"],
                       f" ({compressed[0]})" if compressed else "")
        _log_stage(recon.method, total, unit, stages["reconstruction"])
    return Reconstruction(np.concatenate(images), geometry, volumes,
                          time.perf_counter() - start, recon_seconds, stages)


def _log_stage(name: str, count: int, unit: str, seconds: float, note: str = "") -> None:
    """One line on stderr for a finished stage (progress in a log)."""
    print(f"{name}: {count} {unit}{'s' if count != 1 else ''} in {seconds:.2f} s{note}",
          file=sys.stderr, flush=True)


def series_description(recon: Reconstructor, accel: float | None = None) -> str:
    """DICOM SeriesDescription: method, model (a shipped name or the file's stem), precision and
    the retrospective acceleration, e.g. ``NPGD npgd-t16k1-f32-untied bf16 R=5`` or ``CSWV R=3``.
    At most 64 characters: a model name too long for the rest to fit is cut, ending in ``~``."""
    model = Path(recon.model_name).name.removesuffix(".safetensors")
    tail = [recon.precision] if model else []
    if accel is not None:
        tail.append(f"R={accel:g}")
    room = LONG_STRING - len(" ".join([recon.method.upper(), *tail])) - 1
    if len(model) > room:
        model = model[:room - 1] + "~"
    return " ".join(part for part in (recon.method.upper(), model, *tail) if part)


def default_series_number(method: str, info: StudyInfo) -> int:
    """The default DICOM SeriesNumber: the method's place in :data:`METHODS` (zerofill 1,
    cswv 2, cstv 3, resnet 4, npgd 5), plus 100 x the raw measurement's series number when the
    header has one (initialSeriesNumber 7: 701 ... 705)."""
    measured = info.initial_series_number
    base = 100 * measured if measured is not None and 0 < measured < 10_000_000 else 0
    return base + METHODS.index(method) + 1


def preview_path(out: Path) -> Path:
    """Where ``--png`` writes its preview: beside the series folder, ``OUT.png``."""
    return out.with_name(out.name + ".png")


def preview_titles(result: Reconstruction, is_3d: bool, picks: np.ndarray) -> list[str]:
    """Tile titles of the images ``picks``: ``slice k`` (3-D: ``plane k``, the readout
    position) within its volume, and on a second line the counters (repetition, contrast,
    phase, set) that vary in the study; all from 0, as in the raw data and DICOM ImageComments."""
    position, seen = [], {}
    for volume in result.volumes:
        position.append(seen.get(volume, 0))
        seen[volume] = position[-1] + 1
    varying = [name for name in VolumeIndex._fields
               if len({getattr(v, name) for v in result.volumes}) > 1]
    titles = []
    for i in picks:
        volume = result.volumes[i]
        title = f"{'plane' if is_3d else 'slice'} {position[i]}"
        if varying:
            title += "\n" + ", ".join(f"{name} {getattr(volume, name)}" for name in varying)
        titles.append(title)
    return titles


def timings_path(out: Path) -> Path:
    """Where ``--timings`` writes its JSON: beside the series folder, ``OUT.timings.json``."""
    return out.with_name(out.name + ".timings.json")


def format_timings(stages: dict[str, float]) -> str:
    """The ``--timings`` table: seconds of each stage run (:data:`STAGES` order), then the
    total."""
    rows = [(label, stages[key]) for key, label in STAGES.items() if key in stages]
    rows.append(("total", sum(stages.values())))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"  {label:<{width}}  {seconds:8.2f} s" for label, seconds in rows)


def write_timings(path: Path, stages: dict[str, float], study: RawStudy,
                  recon: Reconstructor, images: int) -> None:
    """The ``--timings`` JSON: what ran (method, model, device, images, coils, 3-D or not),
    ``seconds`` by stage key (:data:`STAGES`) and ``total_seconds``."""
    record = {"method": recon.method, "model": recon.model_name, "precision": recon.precision,
              "device": recon.device.type, "images": images, "coils": study.n_coils,
              "is_3d": study.is_3d,
              "seconds": {k: round(stages[k], 4) for k in STAGES if k in stages},
              "total_seconds": round(sum(stages.values()), 4)}
    path.write_text(json.dumps(record, indent=2) + "\n")


def plan_outputs(out: Path, *, force: bool = False, png: bool = False,
                 also_ismrmrd: Path | None = None,
                 timings: bool = False) -> tuple[Outputs, dict[str, Path]]:
    """Check every output path before any work and stage them (:mod:`npgd_recon.io.atomic`).

    Returns the :class:`~npgd_recon.io.atomic.Outputs` to commit and the staging path of each
    output (``series``, and ``png`` / ``ismrmrd`` / ``timings`` when asked for).
    """
    outputs = Outputs(force)
    try:
        staging = {"series": outputs.folder(out)}
        if png:
            staging["png"] = outputs.file(preview_path(out))
        if timings:
            staging["timings"] = outputs.file(timings_path(out))
        if also_ismrmrd is not None:
            staging["ismrmrd"] = outputs.file(also_ismrmrd)
    except BaseException:
        outputs.discard()
        raise
    return outputs, staging


def write_outputs(result: Reconstruction, study: RawStudy, recon: Reconstructor,
                  staging: dict[str, Path], *, series_number: int | None = None,
                  description: str | None = None) -> list[str]:
    """Write the DICOM series (and the PNG preview, ISMRMRD images when staged) into the staging
    paths of :func:`plan_outputs`; returns the DICOM file names. The preview goes beside the
    series (``OUT.png``) so that the series folder holds DICOM only. The series is numbered
    ``series_number`` (default :func:`default_series_number`) and described by ``description``
    (default :func:`series_description`)."""
    magnitude = np.abs(result.images)
    info = study_info_from_header(study.header, study.is_3d, source=study.source,
                                  fingerprint=study.fingerprint)
    number = series_number or default_series_number(recon.method, info)
    names = write_series_files(magnitude, result.geometry, staging["series"],
                               series_description=description or series_description(recon),
                               series_number=number, info=info, volumes=result.volumes)
    if "png" in staging:
        picks = np.linspace(0, len(magnitude) - 1, min(len(magnitude), 12)).round().astype(int)
        save_montage(magnitude[picks], staging["png"],
                     titles=preview_titles(result, study.is_3d, picks),
                     suptitle=series_description(recon))
    if "ismrmrd" in staging:
        meta = image_meta(magnitude, recon.method)
        images = [to_ismrmrd_image(m, plane, i, meta=meta, contrast=v.contrast,
                                   repetition=v.repetition)
                  for i, (m, plane, v) in enumerate(zip(magnitude, result.geometry,
                                                        result.volumes))]
        write_ismrmrd_images(staging["ismrmrd"], ismrmrd.xsd.ToXML(study.header), images)
    return names

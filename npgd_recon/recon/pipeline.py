"""The main job: ISMRMRD raw data -> reconstruction -> DICOM series (and optional extras).

Shared by ``npgd-recon`` and the streaming server. Steps per volume (contrast, repetition, ...):
optional retrospective undersampling of fully sampled data, ESPIRiT maps for multi-coil data
(``bart ecalib`` on the calibration region), the reconstructor on batches of 2-D problems, and
magnitude images placed by the acquisition geometry. :class:`Reconstruction` holds the wall time
of the whole study and the part of it spent in the reconstructor (the sum of its calls'
``seconds``); a caller may pass ``before_call`` to stop between calls (the server's
cancellation).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import ismrmrd.xsd
import numpy as np
from tqdm import tqdm

from bart_baselines.cs import espirit_maps
from npgd_recon.core.errors import NpgdError
from npgd_recon.io.assembly import RawStudy, RawVolume
from npgd_recon.io.atomic import Outputs
from npgd_recon.io.dicom_writer import study_info_from_header, write_series_files
from npgd_recon.io.geometry import VolumeIndex
from npgd_recon.io.ismrmrd_images import image_meta, to_ismrmrd_image, write_ismrmrd_images
from npgd_recon.io.preview import save_montage
from npgd_recon.recon.base import Reconstructor
from sampling import make_mask, multicoil_calib


@dataclass
class Reconstruction:
    """Images of one study: ``images`` complex ``[n, y, x]`` over all volumes, their geometry,
    the volume (contrast, phase, repetition, set) of each image, the study's wall time
    ``seconds`` (undersampling, coil maps, reconstruction) and ``recon_seconds``, the part of it
    inside the reconstructor."""

    images: np.ndarray
    geometry: list
    volumes: list[VolumeIndex] = field(default_factory=list)
    seconds: float = 0.0
    recon_seconds: float = 0.0


class UndersamplingError(NpgdError):
    """Retrospective undersampling is impossible for these data or this acceleration."""


def undersample(volume: RawVolume, accel: float, kind: str = "vdrad",
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Retrospectively undersample a fully sampled volume with one mask for every problem.

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
    return volume.kspace * mask[:, None], mask


def espirit_coil_maps(kspace: np.ndarray) -> np.ndarray | None:
    """ESPIRiT maps ``[n, coil, y, x]`` for multi-coil k-space, None for a single coil."""
    if kspace.shape[1] == 1:
        return None
    maps = espirit_maps(kspace, stack=True)
    if not np.any(np.abs(maps) > 0):  # planes without signal may have none; all is an error
        raise NpgdError("ESPIRiT found no coil sensitivities: the fully sampled calibration "
                         "region is too small (it needs more than 6x6 k-space samples)")
    return maps


def reconstruct_study(study: RawStudy, recon: Reconstructor, *, accel: float | None = None,
                      mask_kind: str = "vdrad", seed: int = 0, progress: bool = True,
                      before_call: Callable[[], None] | None = None) -> Reconstruction:
    """Reconstruct every volume of a study with ``recon``.

    ``before_call`` runs before every call of ``recon``; whatever it raises ends the study.
    """
    total = sum(len(v.kspace) for v in study.volumes)
    images, geometry, volumes = [], [], []
    recon_seconds = 0.0
    start = time.perf_counter()
    with tqdm(total=total, desc=recon.method, unit="slice", disable=not progress) as bar:
        for volume in study.volumes:
            if accel is None:
                kspace, mask = volume.kspace, np.ascontiguousarray(volume.mask)
            else:
                kspace, mask = undersample(volume, accel, mask_kind, seed)
            maps = espirit_coil_maps(kspace)
            chunk = recon.chunk(len(kspace))
            # prewhitened data have unit noise per sample; otherwise CS estimates it
            noise_std = 1.0 if study.whitener is not None else None
            for i in range(0, len(kspace), chunk):
                part = slice(i, i + chunk)
                if before_call is not None:
                    before_call()
                result = recon(kspace[part], mask[part], None if maps is None else maps[part],
                               noise_std)
                images.append(result.images)
                recon_seconds += result.seconds
                bar.update(len(result.images))
            geometry += volume.geometry
            volumes += [volume.index] * len(kspace)
    return Reconstruction(np.concatenate(images), geometry, volumes,
                          time.perf_counter() - start, recon_seconds)


def series_description(recon: Reconstructor) -> str:
    """DICOM SeriesDescription naming method, model and precision (at most 64 characters)."""
    model = f"{recon.model_name} {recon.precision}" if recon.model_name else ""
    text = f"{recon.method.upper()} {model}".strip()
    return text[:64]


def preview_path(out: Path) -> Path:
    """Where ``--png`` writes its preview: beside the series folder, ``OUT.png``."""
    return out.with_name(out.name + ".png")


def plan_outputs(out: Path, *, force: bool = False, png: bool = False,
                 also_ismrmrd: Path | None = None) -> tuple[Outputs, dict[str, Path]]:
    """Check every output path before any work and stage them (:mod:`npgd_recon.io.atomic`).

    Returns the :class:`~npgd_recon.io.atomic.Outputs` to commit and the staging path of each
    output (``series``, and ``png`` / ``ismrmrd`` when asked for).
    """
    outputs = Outputs(force)
    try:
        staging = {"series": outputs.folder(out)}
        if png:
            staging["png"] = outputs.file(preview_path(out))
        if also_ismrmrd is not None:
            staging["ismrmrd"] = outputs.file(also_ismrmrd)
    except BaseException:
        outputs.discard()
        raise
    return outputs, staging


def write_outputs(result: Reconstruction, study: RawStudy, recon: Reconstructor,
                  staging: dict[str, Path]) -> list[str]:
    """Write the DICOM series (and the PNG preview, ISMRMRD images when staged) into the staging
    paths of :func:`plan_outputs`; returns the DICOM file names. The preview goes beside the
    series (``OUT.png``) so that the series folder holds DICOM only."""
    magnitude = np.abs(result.images)
    names = write_series_files(magnitude, result.geometry, staging["series"],
                               series_description=series_description(recon),
                               info=study_info_from_header(study.header, study.is_3d),
                               volumes=result.volumes)
    if "png" in staging:
        picks = np.linspace(0, len(magnitude) - 1, min(len(magnitude), 12)).round().astype(int)
        save_montage(magnitude[picks], staging["png"],
                     titles=[f"image {i + 1}" for i in picks],
                     suptitle=series_description(recon))
    if "ismrmrd" in staging:
        meta = image_meta(magnitude, recon.method)
        images = [to_ismrmrd_image(m, plane, i, meta=meta, contrast=v.contrast,
                                   repetition=v.repetition)
                  for i, (m, plane, v) in enumerate(zip(magnitude, result.geometry,
                                                        result.volumes))]
        write_ismrmrd_images(staging["ismrmrd"], ismrmrd.xsd.ToXML(study.header), images)
    return names

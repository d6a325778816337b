"""Reconstructed images as ISMRMRD ``Image`` objects (for files and the streaming server).

:func:`image_meta` is the one definition of the attributes every image carries (data role,
processing history, display window), for ``npgd-recon --also-ismrmrd`` and ``npgd-serve`` alike.
"""

from __future__ import annotations

from pathlib import Path

import ismrmrd
import numpy as np

from npgd_recon.io.geometry import PlaneGeometry

WINDOW_PERCENTILE = 99.5  # the display window spans 0 to this percentile of the magnitudes


def image_meta(magnitude: np.ndarray, method: str) -> dict[str, object]:
    """The attributes of a series' images: ``DataRole``, ``ImageProcessingHistory``
    (``NPGD-RECON`` and the method) and a display window over ``magnitude`` (any shape, the
    pixel values as sent)."""
    window = float(np.percentile(magnitude, WINDOW_PERCENTILE))
    return {"DataRole": "Image", "ImageProcessingHistory": ["NPGD-RECON", method.upper()],
            "WindowCenter": window / 2, "WindowWidth": window}


def to_ismrmrd_image(magnitude: np.ndarray, plane: PlaneGeometry, index: int, *,
                     series_index: int = 1, dtype=np.float32, meta: dict | None = None,
                     contrast: int = 0, repetition: int = 0) -> ismrmrd.Image:
    """One magnitude image ``[y, x]`` with its geometry; ``meta`` goes into the attribute XML."""
    data = np.asarray(magnitude, dtype=dtype)
    image = ismrmrd.Image.from_array(data[None, None], transpose=False)
    image.image_type = ismrmrd.IMTYPE_MAGNITUDE
    image.image_index = index + 1
    image.image_series_index = series_index
    image.slice = index
    image.contrast, image.repetition = contrast, repetition
    fov_y, fov_x = plane.field_of_view
    image.field_of_view[:] = (fov_x, fov_y, plane.thickness)
    image.position[:] = plane.centre
    image.read_dir[:] = plane.x_dir
    image.phase_dir[:] = plane.y_dir
    image.slice_dir[:] = plane.normal
    image.patient_table_position[:] = plane.table_position
    if meta:
        attributes = ismrmrd.Meta()
        for key, value in meta.items():
            attributes[key] = [str(v) for v in value] if isinstance(value, list) else str(value)
        image.attribute_string = attributes.serialize()
    return image


def write_ismrmrd_images(path: Path, header_xml: str, images: list[ismrmrd.Image]) -> None:
    """Write images to a new ISMRMRD file at ``path`` (replaced if present; callers that need
    all-or-nothing pass a staging path of :class:`npgd_recon.io.atomic.Outputs`)."""
    Path(path).unlink(missing_ok=True)
    dataset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    try:
        dataset.write_xml_header(header_xml)
        for image in images:
            dataset.append_image("image_0", image)
    finally:
        dataset.close()

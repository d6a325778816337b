"""npgd-simulate: a NIfTI's field of view is kept whatever the matrix; the summary echoes the
matrix as typed; --help shows every default."""

import nibabel
import numpy as np
import pydicom
import pytest

from npgd_recon.cli.recon import main as recon
from npgd_recon.cli.simulate import build_parser
from npgd_recon.cli.simulate import main as simulate

ZOOMS = (1.0, 1.5, 2.0)  # NIfTI x, y, z in mm
SHAPE = (20, 24, 16)  # NIfTI x, y, z voxels


@pytest.fixture(scope="module")
def nifti(tmp_path_factory):
    path = tmp_path_factory.mktemp("nifti") / "head.nii.gz"
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in SHAPE), indexing="ij")
    data = (x ** 2 / 0.8 + y ** 2 / 0.7 + z ** 2 / 0.9 < 1).astype(np.float32) * 100
    image = nibabel.Nifti1Image(data, np.diag([*ZOOMS, 1.0]))
    image.header.set_zooms(ZOOMS)
    nibabel.save(image, path)
    return path


def series_extent(folder):
    """(rows, columns, stack) extents in mm: spacing x count along each axis of the series."""
    datasets = [pydicom.dcmread(f) for f in sorted(folder.glob("*.dcm"))]
    first = datasets[0]
    rows = first.Rows * float(first.PixelSpacing[0])
    columns = first.Columns * float(first.PixelSpacing[1])
    positions = np.array([[float(v) for v in d.ImagePositionPatient] for d in datasets])
    step = np.linalg.norm(positions[1] - positions[0])
    assert step == pytest.approx(float(first.SpacingBetweenSlices), rel=1e-3)
    assert float(first.SliceThickness) == pytest.approx(step, rel=1e-3)
    return rows, columns, step * len(datasets)


@pytest.mark.parametrize("options, source_extents", [
    # 3-D, NYxNZxNX resampled: rows = y (NIfTI y), columns = z (NIfTI z), stack = x (readout)
    (["--3d", "--matrix", "30x12x10"], (SHAPE[1] * ZOOMS[1], SHAPE[2] * ZOOMS[2],
                                         SHAPE[0] * ZOOMS[0])),
    # 2-D slices resampled in-plane: rows = y, columns = x, slices along z at the source spacing
    (["--matrix", "16x32"], (SHAPE[1] * ZOOMS[1], SHAPE[0] * ZOOMS[0], SHAPE[2] * ZOOMS[2])),
])
def test_series_covers_the_source_field_of_view(nifti, tmp_path, options, source_extents):
    raw = tmp_path / "raw.h5"
    assert simulate(["--nifti", str(nifti), *options, "--out", str(raw)]) == 0
    assert recon([str(raw), "--out", str(tmp_path / "s"), "--method", "zerofill",
                  "--quiet"]) == 0
    extents = series_extent(tmp_path / "s")
    voxel = max(ZOOMS)
    for written, source in zip(extents, source_extents):
        assert abs(written - source) <= voxel, (extents, source_extents)


@pytest.mark.parametrize("options, echoed", [
    (["--matrix", "40x24", "--slices", "3"], "3-slice 2-D 40x24 (NYxNX)"),
    (["--3d", "--matrix", "24x8x16"], "3-D 24x8x16 (NYxNZxNX)"),
])
def test_matrix_is_echoed_in_the_order_typed(tmp_path, capsys, options, echoed):
    assert simulate(["--phantom", "shepp-logan", *options, "--out", str(tmp_path / "s.h5")]) == 0
    assert capsys.readouterr().out.startswith(f"{echoed}, 1 coil(s)")


def test_help_shows_every_default():
    parser = build_parser()
    text = " ".join(parser.format_help().split())
    sources = [a for g in parser._mutually_exclusive_groups if g.required for a in g._group_actions]
    for action in parser._actions:
        if action.required or action in sources or action.nargs == 0:  # flags: off by default
            continue
        help_text = " ".join(action.help.split())
        if "default" not in help_text:  # then the formatter adds the value
            assert action.default is not None, action.option_strings
            assert f"{help_text} (default: {action.default})" in text, action.option_strings

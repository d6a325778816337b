"""Comparison figures: no empty panel, readable titles with the SNR of each method, and a
view-order panel only where samples have an acquisition order (a 3-D scan's ky-kz plane)."""

import numpy as np
import pytest

from npgd_recon.analysis.figures import save_comparison, save_mask
from npgd_recon.core.metrics import snr_db_magnitude
from npgd_recon.io.preview import pyplot
from npgd_recon.sim.phantoms import shepp_logan
from sampling import vdrad

LABELS = {"zerofill": "zero-filled", "cswv": "CS-WV", "cstv": "CS-TV", "resnet": "deep ResNet",
          "npgd": "NPGD"}


@pytest.fixture
def figures(monkeypatch):
    """The figures the functions under test close, kept open for inspection."""
    plt = pyplot()
    kept = []
    monkeypatch.setattr(plt, "close", kept.append)
    yield kept
    for figure in kept:
        figure.clf()


def overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("shape", [(64, 32), (40, 48)])
def test_every_panel_shows_an_image_and_titles_are_readable(figures, tmp_path, shape):
    reference = shepp_logan(shape).astype(np.complex64)
    rng = np.random.default_rng(0)
    outputs = {m: reference + 0.05 * (i + 1) * rng.standard_normal(shape)
               for i, m in enumerate(LABELS)}
    mask = vdrad(shape, 4.0, seed=0).mask
    save_comparison(outputs, reference, tmp_path / "a.png", labels=LABELS, suptitle="case",
                    mask=mask)
    save_comparison(outputs, reference, tmp_path / "b.png", labels=LABELS)
    with_mask, without = figures
    assert len(with_mask.axes) == 12 and len(without.axes) == 11  # never an empty panel
    assert all(axis.images for figure in figures for axis in figure.axes)
    top = [axis for axis in with_mask.axes if axis.get_title()][:len(LABELS)]
    for axis, (method, label) in zip(top, LABELS.items()):
        snr = snr_db_magnitude(reference, outputs[method])
        assert axis.get_title() == f"{label}\nSNR {snr:.1f} dB"
    renderer = with_mask.canvas.get_renderer()
    titles = [axis.title for axis in with_mask.axes if axis.get_title()]
    assert all(t.get_fontsize() >= 10 for t in titles)
    boxes = [t.get_window_extent(renderer) for t in titles]
    assert not any(overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_the_view_order_is_drawn_for_ky_kz_planes_only(figures, tmp_path):
    pattern = vdrad((40, 32), 4.0, seed=0)
    save_mask(pattern, tmp_path / "3d.png", ky_kz=True)
    save_mask(pattern, tmp_path / "2d.png", ky_kz=False)
    ky_kz, ky_kx = figures
    assert "view order" in [axis.get_title() for axis in ky_kz.axes]
    assert [axis.get_title() for axis in ky_kx.axes] == ["vdrad mask, rate 25.00% (R=4)"]
    assert ky_kx.axes[0].get_xlabel() == "kx"
    assert (tmp_path / "2d.png").read_bytes()[:4] == b"\x89PNG"

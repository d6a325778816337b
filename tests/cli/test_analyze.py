"""npgd-analyze: the runs write their JSON and pictures; bad input is one line, exit 2 and no
output."""

import json

import numpy as np
import pytest
from skimage.io import imsave

from npgd_recon.cli.analyze import main
from npgd_recon.core.transforms import NORMALISATION
from npgd_recon.models.checkpoint import save_checkpoint
from npgd_recon.models.npgd import NeuralPGD
from npgd_recon.sim.phantoms import shepp_logan
from npgd_recon.sim.scan_writer import ScanSettings, write_scan
from sampling import vdrad
from tests.conftest import save_tiny_model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("analyze")
    write_scan(root / "full.h5", shepp_logan((3, 32, 24)), settings=ScanSettings(coils=1))
    write_scan(root / "under.h5", shepp_logan((2, 32, 24)), pattern=vdrad((32, 24), 3.0),
               settings=ScanSettings(coils=1))
    save_tiny_model(root / "tiny.safetensors", iterations=3)
    sr = NeuralPGD(iterations=5, features=4, proximal="linear-swish", kernel=4,
                   global_skip=False)
    save_checkpoint(sr, root / "sr.safetensors",
                    {"normalisation": NORMALISATION, "operator": "block-average-2x2",
                     "config": {"data": {"shape": [16, 16]}}})
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        imsave(images / f"{i}.png", (rng.uniform(size=(20, 20)) * 255).astype(np.uint8))
    return root


def test_contraction_writes_curves_and_figure(files, tmp_path, capsys):
    out = tmp_path / "c"
    code = main(["contraction", str(files / "full.h5"), "--undersample", "3", "--seeds", "0",
                 "1", "--problems", "2", "--weights", str(files / "tiny.safetensors"),
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "contraction.json").read_text())
    assert result["problems"] == 4  # 2 problems x 2 mask seeds
    assert len(result["nrmse"]) == 4 and len(result["eta1"]) == len(result["eta2"]) == 3
    assert all(v >= 0 for v in result["eta1"] + result["eta2"])
    assert (out / "contraction.png").read_bytes()[:4] == b"\x89PNG"
    assert "contraction ->" in capsys.readouterr().out


def test_superres_on_a_folder_writes_fig4_and_fig5(files, tmp_path):
    out = tmp_path / "sr"
    assert main(["superres", "--weights", str(files / "sr.safetensors"), "--images",
                 str(files / "images"), "--out", str(out)]) == 0
    result = json.loads((out / "superres.json").read_text())
    assert result["problems"] == 2 and len(result["eta1"]) == 5
    assert {p.name for p in out.iterdir()} == {"superres.json", "fig4.png", "fig5.png"}


@pytest.mark.parametrize("case", ["missing", "undersampled", "not-sr", "bad-count"])
def test_bad_input_is_one_line_exit_2_and_nothing_written(files, tmp_path, capsys, case):
    out = tmp_path / "new" / "result"
    args = {
        "missing": ["contraction", str(files / "absent.h5"), "--undersample", "3"],
        "undersampled": ["contraction", str(files / "under.h5"), "--undersample", "3",
                         "--weights", str(files / "tiny.safetensors")],
        "not-sr": ["superres", "--weights", str(files / "tiny.safetensors")],
        "bad-count": ["superres", "--count", "0"],
    }[case]
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("npgd-analyze: error: ") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_existing_out_is_refused_without_force(files, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["superres", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]

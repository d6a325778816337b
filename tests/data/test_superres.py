"""Super-resolution data and the linear-CNN + Swish proximal: splits, pairs, checkpoints."""

import numpy as np
import pytest
import torch
from skimage.io import imsave

from npgd_recon.core.operators import BlockAverageOp
from npgd_recon.data.superres import (
    BlockAveragedSet,
    folder_images,
    image_source,
    lfw_faces,
)
from npgd_recon.models.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from npgd_recon.models.npgd import NeuralPGD


def test_bundled_faces_split_into_disjoint_train_and_test():
    train, test = lfw_faces("train"), lfw_faces("test")
    assert train.shape == (80, 24, 24) and test.shape == (20, 24, 24)
    assert not any(np.array_equal(a, b) for a in test for b in train)
    assert 0 <= train.min() and train.max() <= 1


def test_folder_images_hold_out_every_fifth_file(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(10):
        imsave(tmp_path / f"im{i}.png", (rng.uniform(size=(40, 30, 3)) * 255).astype(np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    assert folder_images(tmp_path, (16, 16), "train").shape == (8, 16, 16)
    assert folder_images(tmp_path, (16, 16), "test").shape == (2, 16, 16)
    with pytest.raises(ValueError, match="not found"):
        folder_images(tmp_path / "absent", (16, 16))
    with pytest.raises(ValueError, match="shape"):
        image_source({"kind": "lfw-faces"}, (32, 32))


def test_pairs_are_block_averages_of_their_targets():
    data = BlockAveragedSet([lfw_faces("test")], 5)
    item = data[3]
    assert item.target.shape == (24, 24) and item.lowres.shape == (12, 12)
    torch.testing.assert_close(item.lowres, BlockAverageOp().forward(item.target))
    noisy = BlockAveragedSet([lfw_faces("test")], 5, noise=(0.05, 0.05), augment=True)[0]
    assert noisy.target.dtype == torch.complex64 and noisy.lowres.shape == (12, 12)


def test_linear_swish_model_round_trips_through_a_checkpoint(tmp_path):
    model = NeuralPGD(iterations=3, features=4, proximal="linear-swish", layers=5, kernel=8,
                      global_skip=False).eval()
    with torch.no_grad():
        model.prox.act.beta.fill_(1.7)
    save_checkpoint(model, tmp_path / "sr.safetensors", {"operator": "block-average-2x2"})
    arch = read_metadata(tmp_path / "sr.safetensors")["architecture"]
    assert arch["proximal"] == "linear-swish" and arch["kernel"] == 8 and arch["layers"] == 5
    loaded, _ = load_checkpoint(tmp_path / "sr.safetensors")
    op, y = BlockAverageOp(), torch.randn(1, 12, 12, dtype=torch.complex64)
    torch.testing.assert_close(loaded(y, op), model(y, op))
    assert loaded(y, op).shape == (1, 24, 24)


def test_resnet_checkpoints_write_no_proximal_key(tmp_path):
    save_checkpoint(NeuralPGD(iterations=1, blocks=1, features=4), tmp_path / "r.safetensors", {})
    assert "proximal" not in read_metadata(tmp_path / "r.safetensors")["architecture"]


def test_npgd_train_trains_a_super_resolution_model(tmp_path):
    from npgd_recon.training.config import load_config
    from npgd_recon.training.loop import train

    config_path = tmp_path / "sr.toml"
    config_path.write_text(
        "[model]\niterations = 2\nfeatures = 2\nproximal = 'linear-swish'\nkernel = 4\n"
        "global_skip = false\nalpha_init = 4.0\n"
        "[data]\noperator = 'block-average'\ntrain = [{kind = 'lfw-faces', split = 'train'}]\n"
        "validation = [{kind = 'lfw-faces', split = 'test'}]\nvalidation_slices = 2\n"
        "shape = [24, 24]\n"
        "[train]\nsteps = 2\nbatch_size = 2\ncheckpoint_every = 2\nvalidate_every = 2\n")
    metrics = train(load_config(config_path), tmp_path / "run", progress=False)
    assert np.isfinite(metrics["snr_db"])
    meta = read_metadata(tmp_path / "run" / "model.safetensors")
    assert meta["operator"] == "block-average-2x2" and meta["mask"] is None
    assert meta["architecture"]["proximal"] == "linear-swish"
    loaded, _ = load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert loaded.alpha.item() != 1.0  # alpha_init reached the model (4, then trained)

"""The training loop's time budget: stop early, validated and checkpointed, resumable."""

from npgd_recon.models.checkpoint import read_metadata
from npgd_recon.training.config import load_config
from npgd_recon.training.loop import train

CONFIG = ("[model]\niterations = 2\nfeatures = 4\n"
          "[data]\ntrain = [{kind = 'phantom', count = 4}]\n"
          "validation = [{kind = 'phantom', count = 1, seed = 5}]\nvalidation_slices = 1\n"
          "shape = [32, 32]\n"
          "[train]\nsteps = 1000\nbatch_size = 2\ncheckpoint_every = 500\n"
          "validate_every = 500\nmax_seconds = 0.001\n")


def test_max_seconds_stops_with_a_validated_checkpoint(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(CONFIG)
    metrics = train(load_config(path), tmp_path / "run", progress=False)
    meta = read_metadata(tmp_path / "run" / "model.safetensors")
    assert meta["steps"] == 1 and "snr_db" in metrics and meta["validation"] == metrics
    assert (tmp_path / "run" / "train_state.pt").exists()
    train(load_config(path), tmp_path / "run", resume=True, progress=False)
    assert read_metadata(tmp_path / "run" / "model.safetensors")["steps"] == 2

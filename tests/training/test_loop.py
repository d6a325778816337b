"""The training loop: its time budget (stop early, validated and checkpointed), resuming."""

from dataclasses import replace

from npgd_recon.models.checkpoint import load_checkpoint, read_metadata
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


def test_a_cg_model_fine_tunes_from_a_gradient_model_on_a_coil_range(tmp_path):
    """train.init loads a model whose data consistency differs (the weights are the same
    network); the metadata names the coil range."""
    path = tmp_path / "c.toml"
    path.write_text(CONFIG.replace("max_seconds = 0.001", "max_seconds = 0"))
    first = tmp_path / "grad"
    config = load_config(path)
    config = replace(config, train=replace(config.train, steps=1))
    train(config, first, progress=False)
    config = replace(config, model=replace(config.model, data_consistency="cg", cg_iterations=2,
                                           alpha_init=5.0),
                     data=replace(config.data, coils=(1, 3)),
                     train=replace(config.train, init=str(first / "model.safetensors")))
    train(config, tmp_path / "cg", progress=False)
    meta = read_metadata(tmp_path / "cg" / "model.safetensors")
    assert meta["architecture"]["data_consistency"] == "cg"
    assert meta["operator"] == "sense-1-to-3-coil"
    alpha = load_checkpoint(tmp_path / "cg" / "model.safetensors", "cpu")[0].alpha.item()
    assert abs(alpha - 5.0) < 0.1  # the implicit step starts from its own alpha_init


def test_resuming_a_run_saved_before_the_step_size_group_says_what_to_do(tmp_path):
    """A train_state.pt from before train.alpha_lr has one optimiser parameter group: resuming it
    is refused in one line that names train.init, not torch's bare mismatch."""
    import pytest
    import torch

    path = tmp_path / "c.toml"
    path.write_text(CONFIG)
    train(load_config(path), tmp_path / "run", progress=False)
    state_path = tmp_path / "run" / "train_state.pt"
    state = torch.load(state_path, weights_only=True)
    groups = state["optimiser"]["param_groups"]
    groups[0]["params"] += groups.pop()["params"]
    torch.save(state, state_path)
    with pytest.raises(ValueError, match="predates train.alpha_lr.*train.init"):
        train(load_config(path), tmp_path / "run", resume=True, progress=False)


def test_amp_runs_the_convolutions_in_bf16_where_the_device_has_it_natively(tmp_path,
                                                                            monkeypatch):
    """train.amp autocasts to bf16 when native_precision says so (a CPU with AMX or
    AVX512-BF16 as well as CUDA); elsewhere, or with amp off, the network trains in float32."""
    import torch

    from npgd_recon.training import loop

    seen = []
    original = torch.nn.Conv2d.forward

    def recording(self, x):
        out = original(self, x)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Conv2d, "forward", recording)
    path = tmp_path / "c.toml"
    path.write_text(CONFIG.replace("max_seconds = 0.001", "max_seconds = 0"))
    config = load_config(path)
    config = replace(config, train=replace(config.train, steps=1, validate_every=10))
    for native, amp, expected in (("bf16", True, torch.bfloat16), ("fp32", True, torch.float32),
                                  ("bf16", False, torch.float32)):
        monkeypatch.setattr(loop, "native_precision", lambda device, n=native: n)
        seen.clear()
        train(replace(config, train=replace(config.train, amp=amp)),
              tmp_path / f"{native}-{amp}", progress=False)
        assert seen and seen[0] == expected, (native, amp, seen[:1])

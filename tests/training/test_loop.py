"""The training loop: its time budget (stop early, validated and checkpointed), resuming."""

from dataclasses import replace

import torch

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


def test_freeze_norm_trains_with_the_running_statistics_inference_uses(tmp_path):
    """train.freeze_norm: batch norm keeps the running statistics it started from (it
    normalises with them, as at inference) while its scale and the convolutions still train;
    without it the statistics follow the batches."""
    import torch

    from npgd_recon.training.loop import train_mode

    path = tmp_path / "c.toml"
    path.write_text(CONFIG.replace("max_seconds = 0.001", "max_seconds = 0"))
    config = load_config(path)
    config = replace(config, train=replace(config.train, steps=2))
    train(config, tmp_path / "start", progress=False)
    start = load_checkpoint(tmp_path / "start" / "model.safetensors")[0].state_dict()
    for freeze in (True, False):
        tuned = replace(config, train=replace(config.train, freeze_norm=freeze, lr=1e-2,
                                              init=str(tmp_path / "start" / "model.safetensors")))
        train(tuned, tmp_path / f"frozen-{freeze}", progress=False)
        after = load_checkpoint(tmp_path / f"frozen-{freeze}" / "model.safetensors")[0]
        state = after.state_dict()
        bn = "prox.blocks.0.bn1"
        assert torch.equal(state[f"{bn}.running_mean"], start[f"{bn}.running_mean"]) == freeze
        assert not torch.equal(state[f"{bn}.weight"], start[f"{bn}.weight"])
        assert not torch.equal(state["prox.head.weight"], start["prox.head.weight"])
    train_mode(after, freeze_norm=True)
    assert after.training and after.prox.head.training
    assert not after.prox.blocks[0].bn1.training


def test_keep_best_keeps_the_model_of_the_best_validation_across_a_resume(tmp_path):
    """train.keep_best: best.safetensors holds the model at the highest validation SNR seen,
    its metadata saying which step; a resumed run compares against the file, and --force
    deletes it with the rest of the run."""
    import csv

    from npgd_recon.training.run import check_run_folder, clear_run

    path = tmp_path / "c.toml"
    path.write_text(CONFIG.replace("max_seconds = 0.001", "max_seconds = 0")
                    .replace("validate_every = 500", "validate_every = 1")
                    .replace("lr = 1e-4", "") + "keep_best = true\nlr = 0.05\n")
    config = load_config(path)
    run = tmp_path / "run"
    train(replace(config, train=replace(config.train, steps=3)), run, progress=False)
    train(replace(config, train=replace(config.train, steps=6)), run, resume=True,
          progress=False)
    with open(run / "log.csv") as f:
        snr = {int(r["step"]): float(r["val_snr_db"]) for r in csv.DictReader(f)}
    best = read_metadata(run / "best.safetensors")
    assert len(snr) == 6 and abs(best["validation"]["snr_db"] - max(snr.values())) < 1e-3
    assert snr[best["steps"]] == max(snr.values())
    assert check_run_folder(run, resume=False, force=True) is False
    clear_run(run)
    assert not (run / "best.safetensors").exists()


def test_ema_writes_the_moving_average_and_resumes_both_weights(tmp_path):
    """train.ema: model.safetensors is the moving average (decay d: after one step the average
    is the trained weights, after two d * w1 + (1 - d) * w2); train_state.pt keeps the trained
    weights, so a resumed run continues both, equal to a run without the stop; switching ema
    off on resume is one clear error."""
    import pytest
    import torch

    from npgd_recon.core.errors import NpgdError

    path = tmp_path / "c.toml"
    path.write_text(CONFIG.replace("max_seconds = 0.001", "max_seconds = 0")
                    .replace("checkpoint_every = 500", "checkpoint_every = 1")
                    + "ema = 0.5\namp = false\n")
    config = load_config(path)
    steps = lambda n, c=config: replace(c, train=replace(c.train, steps=n))  # noqa: E731
    train(steps(1), tmp_path / "one", progress=False)
    one_state = torch.load(tmp_path / "one" / "train_state.pt", weights_only=True)["weights"]
    one_model = load_checkpoint(tmp_path / "one" / "model.safetensors")[0].state_dict()
    torch.testing.assert_close(one_model["prox.head.weight"], one_state["prox.head.weight"])
    train(steps(2), tmp_path / "one", resume=True, progress=False)
    train(steps(2), tmp_path / "two", progress=False)
    resumed = load_checkpoint(tmp_path / "one" / "model.safetensors")[0].state_dict()
    straight = load_checkpoint(tmp_path / "two" / "model.safetensors")[0].state_dict()
    trained = torch.load(tmp_path / "two" / "train_state.pt", weights_only=True)["weights"]
    for name in ("prox.head.weight", "prox.blocks.0.bn1.running_mean"):
        torch.testing.assert_close(resumed[name], straight[name])
        torch.testing.assert_close(straight[name], 0.5 * one_state[name] + 0.5 * trained[name])
    assert not torch.equal(straight["prox.head.weight"], trained["prox.head.weight"])
    with pytest.raises(NpgdError, match="train.ema must stay"):
        train(replace(steps(3), train=replace(steps(3).train, ema=0.0)), tmp_path / "two",
              resume=True, progress=False)


def test_validation_coils_poses_every_problem_at_each_count(tmp_path):
    """data.validation_coils = [1, 3]: each validation image is posed once per count, with
    the same image and mask; empty: one count per problem from data.coils."""
    from npgd_recon.training.loop import datasets

    path = tmp_path / "c.toml"
    path.write_text(CONFIG.replace("validation_slices = 1", "validation_slices = 2\n"
                                   "validation_coils = [1, 3]\ncoils = [1, 4]"))
    _, val = datasets(load_config(path).data, 1, 0)
    items = [val[i] for i in range(len(val))]
    assert [item.kspace.shape[0] if item.kspace.ndim == 3 else 1 for item in items] == [1, 1,
                                                                                       3, 3]
    for single, multi in zip(items[:2], items[2:]):
        assert torch.equal(single.target, multi.target) and torch.equal(single.mask, multi.mask)
    _, drawn = datasets(replace(load_config(path).data, validation_coils=()), 1, 0)
    assert len(drawn) == 2

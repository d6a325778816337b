"""The networks: shapes, iterates, gradients, data consistency, checkpoints, training steps."""

import json
import os
import subprocess
import sys

import pytest
import torch

from npgd_recon.core.operators import BlockAverageOp, CartesianOp, SenseOp, SoftSenseOp
from npgd_recon.models.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from npgd_recon.models.inference import prepare_for_inference
from npgd_recon.models.npgd import NeuralPGD, architecture, conjugate_gradient
from npgd_recon.training.loop import p2_loss
from sampling import vdrad
from tests.conftest import randc

torch.manual_seed(0)
MASK = torch.from_numpy(vdrad((24, 16), 4.0).mask)


def small(**kwargs):
    return NeuralPGD(**{"iterations": 3, "blocks": 1, "features": 8, **kwargs})


@pytest.mark.parametrize("op, y_shape", [
    (CartesianOp(MASK), (2, 24, 16)),
    (SenseOp(MASK, randc(3, 24, 16) / 2), (2, 3, 24, 16)),
    (BlockAverageOp(), (2, 12, 8)),
])
def test_output_shape_and_iterates_for_every_operator(op, y_shape):
    model = small().eval()
    y = randc(*y_shape)
    out = model(y, op)
    assert out.shape == (2, 24, 16) and out.dtype == torch.complex64
    iterates = model(y, op, return_iterates=True)
    assert len(iterates) == 3
    torch.testing.assert_close(iterates[-1], out)


def test_deep_resnet_is_one_pass_with_ten_blocks():
    model = NeuralPGD(iterations=1, blocks=10, features=8)
    assert len(model.prox.blocks) == 10
    assert len(model(randc(1, 24, 16), CartesianOp(MASK), return_iterates=True)) == 1


def test_gradient_reaches_alpha_and_proximal_weights():
    model = small(global_skip=False)
    op = CartesianOp(MASK)
    y = op.forward(randc(2, 24, 16))
    p2_loss(model(y, op, return_iterates=True), randc(2, 24, 16), y, op, 0.75).backward()
    assert model.alpha_raw.grad is not None and model.alpha_raw.grad.abs() > 0
    for name, parameter in model.prox.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_alpha_stays_positive():
    model = small()
    with torch.no_grad():
        model.alpha_raw.fill_(-50.0)
    assert model.alpha > 0


def test_hard_data_consistency_keeps_measured_samples():
    """With alpha = 1 and an identity proximal (untrained, global skip), each iterate keeps
    the measured k-space exactly."""
    model = small(data_consistency="hard").eval()
    assert model.alpha.item() == 1.0
    op = CartesianOp(MASK)
    y = op.forward(randc(1, 24, 16))
    for x in model(y, op, return_iterates=True):
        torch.testing.assert_close(op.forward(x), y, rtol=1e-4, atol=1e-5)


def test_checkpoint_round_trip(tmp_path):
    model = small().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_checkpoint(model, tmp_path / "m.safetensors", {"steps": 7})
    loaded, meta = load_checkpoint(tmp_path / "m.safetensors")
    assert meta["steps"] == 7 and meta["architecture"]["features"] == 8
    op = CartesianOp(MASK)
    y = randc(1, 24, 16)
    torch.testing.assert_close(loaded(y, op), model(y, op))


def test_corrupt_and_mismatched_checkpoints_are_clear_errors(tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(small(), path, {})
    data = path.read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 64)
    (tmp_path / "pickle.pt").write_bytes(b"\x80\x04\x95" + b"\x00" * 40)
    for name in ["truncated.safetensors", "garbage.safetensors", "pickle.pt", "absent"]:
        with pytest.raises(CheckpointError):
            load_checkpoint(tmp_path / name)
    # metadata claiming another architecture than the weights hold
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    meta = json.loads(header["__metadata__"]["npgd"])
    meta["architecture"]["features"] = 16
    header["__metadata__"]["npgd"] = json.dumps(meta)
    body = json.dumps(header).encode()
    body += b" " * (-len(body) % 8)
    mismatched = tmp_path / "mismatched.safetensors"
    mismatched.write_bytes(len(body).to_bytes(8, "little") + body + data[8 + size:])
    assert read_metadata(mismatched)["architecture"]["features"] == 16
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(mismatched)


def test_a_few_steps_lower_the_loss():
    torch.manual_seed(1)
    model = small(features=16)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    op = CartesianOp(MASK)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 24), torch.linspace(-1, 1, 16), indexing="ij")
    target = ((yy**2 + xx**2 < 0.5).float() + 0.5 * (yy.abs() < 0.2).float())
    target = target.to(torch.complex64)[None].repeat(2, 1, 1)
    y = op.forward(target)
    losses = []
    for _ in range(40):
        loss = p2_loss(model(y, op, return_iterates=True), target, y, op, 0.75)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_train_cli_runs_resumes_and_rejects_bad_config(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(
        "[model]\niterations = 2\nfeatures = 4\n"
        "[data]\ntrain = [{kind = 'phantom', count = 4}]\n"
        "validation = [{kind = 'phantom', count = 1, seed = 5}]\nvalidation_slices = 1\n"
        "shape = [32, 32]\n"
        "[train]\nsteps = 4\nbatch_size = 2\ncheckpoint_every = 2\nvalidate_every = 2\n")
    cmd = [sys.executable, "-m", "npgd_recon.cli.train", str(config), "--out",
           str(tmp_path / "run"), "--no-progress"]
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    meta = read_metadata(tmp_path / "run" / "model.safetensors")
    assert meta["steps"] == 4 and "snr_db" in meta["validation"]
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert len(rows) == 5
    config.write_text(config.read_text().replace("steps = 4", "steps = 6"))
    assert subprocess.run(cmd + ["--resume"], capture_output=True).returncode == 0
    assert read_metadata(tmp_path / "run" / "model.safetensors")["steps"] == 6
    assert len((tmp_path / "run" / "log.csv").read_text().splitlines()) == 7

    config.write_text("[model]\ndepth = 3\n")
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 2 and "unknown config key" in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("shape", [(24, 16), (23, 13)])
def test_unet_proximal_starts_as_gradient_descent_keeps_odd_planes_and_round_trips(
        tmp_path, shape):
    model = small(proximal="unet", blocks=2, features=4).eval()
    s = randc(2, *shape)
    torch.testing.assert_close(model.proximal(s), s)  # zero-initialised tail: the identity
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert (model.proximal(s) - s).abs().max() > 1e-3
    save_checkpoint(model, tmp_path / "u.safetensors", {})
    arch = read_metadata(tmp_path / "u.safetensors")["architecture"]
    assert arch["proximal"] == "unet" and arch["blocks"] == 2 and arch["features"] == 4
    loaded, _ = load_checkpoint(tmp_path / "u.safetensors")
    op = CartesianOp(torch.from_numpy(vdrad(shape, 4.0).mask))
    y = op.forward(randc(1, *shape))
    torch.testing.assert_close(loaded(y, op), model(y, op))
    with torch.inference_mode():
        torch.testing.assert_close(prepare_for_inference(model)(y, op), model(y, op),
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(24, 16), (23, 17)])
def test_unshuffled_resnet_starts_as_gradient_descent_keeps_odd_planes_and_round_trips(
        tmp_path, shape):
    model = small(features=8, unshuffle=2).eval()
    assert model.prox.head.in_channels == 8  # 2 channels x 2 x 2 pixels
    s = randc(2, *shape)
    torch.testing.assert_close(model.proximal(s), s)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    out = model.proximal(s)
    assert out.shape == s.shape and (out - s).abs().max() > 1e-3
    save_checkpoint(model, tmp_path / "r.safetensors", {})
    assert read_metadata(tmp_path / "r.safetensors")["architecture"]["unshuffle"] == 2
    loaded, _ = load_checkpoint(tmp_path / "r.safetensors")
    op = CartesianOp(torch.from_numpy(vdrad(shape, 4.0).mask))
    y = op.forward(randc(1, *shape))
    torch.testing.assert_close(loaded(y, op), model(y, op))
    with torch.inference_mode():
        torch.testing.assert_close(prepare_for_inference(model)(y, op), model(y, op),
                                   rtol=1e-4, atol=1e-5)


def test_a_plain_resnet_writes_no_unshuffle_and_only_the_resnet_takes_one():
    assert "unshuffle" not in architecture(small())
    with pytest.raises(ValueError, match="unshuffle is an option of the resnet"):
        small(proximal="unet", unshuffle=2)


def test_unet_proximal_needs_a_level():
    with pytest.raises(ValueError, match="levels >= 1"):
        small(proximal="unet", blocks=0)


def test_folded_inference_model_computes_the_same_function():
    model = small(features=8).train()
    op = CartesianOp(MASK)
    for _ in range(3):  # give BN non-trivial running statistics
        model(op.forward(randc(4, 24, 16)), op)
    model.eval()
    fast = prepare_for_inference(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert all(m.inplace for m in fast.modules() if isinstance(m, torch.nn.ReLU))
    assert not any(m.inplace for m in model.modules() if isinstance(m, torch.nn.ReLU))
    y = op.forward(randc(2, 24, 16))
    with torch.inference_mode():
        torch.testing.assert_close(fast(y, op), model(y, op), rtol=1e-4, atol=1e-5)


def test_train_fine_tunes_from_init_weights_on_multicoil_problems(tmp_path):
    base = ("[data]\ntrain = [{kind = 'phantom', count = 4}]\ncoils = 2\n"
            "validation = [{kind = 'phantom', count = 1, seed = 5}]\nvalidation_slices = 1\n"
            "shape = [32, 32]\n[train]\nsteps = 2\nbatch_size = 2\nvalidate_every = 2\n")
    start = small(iterations=2, features=4)
    save_checkpoint(start, tmp_path / "start.safetensors", {"normalisation": {}})
    config = tmp_path / "c.toml"
    config.write_text("[model]\niterations = 2\nfeatures = 4\n" + base
                      + f"init = '{tmp_path / 'start.safetensors'}'\n")
    cmd = [sys.executable, "-m", "npgd_recon.cli.train", str(config), "--out",
           str(tmp_path / "run"), "--no-progress"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    meta = read_metadata(tmp_path / "run" / "model.safetensors")
    assert meta["operator"] == "sense-2-coil" and meta["steps"] == 2
    config.write_text("[model]\niterations = 3\nfeatures = 4\n" + base
                      + f"init = '{tmp_path / 'start.safetensors'}'\n")
    new_run = subprocess.run(cmd[:-3] + ["--out", str(tmp_path / "run2"), "--no-progress"],
                             capture_output=True, text=True)  # T=3 from T=2: shared weights
    assert new_run.returncode == 0, new_run.stderr
    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True)
    config.write_text("[model]\niterations = 3\nfeatures = 8\n" + base
                      + f"init = '{tmp_path / 'start.safetensors'}'\n")
    wider = subprocess.run(cmd[:-3] + ["--out", str(tmp_path / "run3"), "--no-progress"],
                           capture_output=True, text=True)
    for result in (resumed, wider):  # resuming the T=2 run as T=3; other weights from init
        assert result.returncode == 2 and "architecture" in result.stderr
        assert result.stderr.count("\n") == 1


def test_torchrun_data_parallel_training_on_cpu(tmp_path):
    """Two processes through torchrun (DDP over gloo, the GPU code path without GPUs): one
    log, one checkpoint, one report."""
    config = tmp_path / "c.toml"
    config.write_text(
        "[model]\niterations = 2\nfeatures = 4\n"
        "[data]\ntrain = [{kind = 'phantom', count = 4}]\n"
        "validation = [{kind = 'phantom', count = 1, seed = 5}]\nvalidation_slices = 1\n"
        "shape = [32, 32]\n[train]\nsteps = 4\nbatch_size = 2\nvalidate_every = 2\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "npgd_recon.cli.train", str(config), "--out", str(tmp_path / "run"),
           "--no-progress"]
    result = subprocess.run(cmd, capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("trained ->") == 1
    assert read_metadata(tmp_path / "run" / "model.safetensors")["steps"] == 4
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and [r.split(",")[0] for r in rows[1:]] == list("1234")


def test_conjugate_gradient_solves_each_batch_system():
    """Batched CG on (I + a Phi^H Phi) x = b for a 3-coil SENSE operator (condition <= 1 + a)
    matches a dense solve of each system."""
    maps = randc(2, 3, 6, 4) / 2
    op = SenseOp(MASK[:6, :4].expand(2, 6, 4), maps)
    a = 3.0
    b = randc(2, 6, 4)
    x = conjugate_gradient(lambda v: v + a * op.normal(v), b, torch.zeros_like(b), 30)
    for i in range(2):
        single = SenseOp(MASK[:6, :4], maps[i])
        columns = torch.eye(24, dtype=torch.complex64).reshape(24, 6, 4)
        dense = (columns + a * single.normal(columns)).reshape(24, 24).T
        exact = torch.linalg.solve(dense, b[i].reshape(24))
        torch.testing.assert_close(x[i].reshape(24), exact, rtol=1e-4, atol=1e-4)


def test_cg_data_consistency_is_the_implicit_step():
    """With an identity proximal the first CG iterate solves (I + alpha Phi^H Phi) s = alpha
    Phi^H y, so for a large alpha it keeps the measured k-space; the gradient step with the
    same alpha does not."""
    op = CartesianOp(MASK)
    y = op.forward(randc(1, 24, 16))
    for dc, keeps in (("cg", True), ("gradient", False)):
        model = small(data_consistency=dc, alpha_init=50.0).eval()
        first = model(y, op, return_iterates=True)[0]
        residual = (op.forward(first) - y).abs().max() / y.abs().max()
        assert (residual < 0.05) == keeps, (dc, float(residual))


def test_cg_model_trains_and_records_its_solver():
    model = small(data_consistency="cg", cg_iterations=3)
    assert architecture(model)["cg_iterations"] == 3
    assert "cg_iterations" not in architecture(small())
    op = SenseOp(MASK, randc(4, 24, 16) / 2)
    y = op.forward(randc(2, 24, 16))
    p2_loss(model(y, op, return_iterates=True), randc(2, 24, 16), y, op, 0.75).backward()
    assert model.alpha_raw.grad is not None and model.alpha_raw.grad.abs() > 0
    with pytest.raises(ValueError, match="cg_iterations"):
        small(data_consistency="cg", cg_iterations=0)
    with pytest.raises(ValueError, match="data_consistency"):
        small(data_consistency="exact")


def test_final_dc_makes_the_output_data_consistent_as_far_as_its_alpha_says():
    """With a large final alpha the output keeps the measured k-space (an untrained proximal
    would not); the final step's alpha is its own parameter and learns."""
    torch.manual_seed(3)
    op = CartesianOp(MASK)
    y = op.forward(randc(1, 24, 16))
    plain = small(global_skip=False).eval()
    final = small(global_skip=False, final_dc=True, alpha_init=50.0, cg_iterations=30).eval()
    final.load_state_dict({**plain.state_dict(), "final_alpha_raw": final.final_alpha_raw},
                          strict=True)
    def residual(model):
        with torch.no_grad():
            return float((op.forward(model(y, op)) - y).norm() / y.norm())

    assert residual(final) < 0.05 < residual(plain), (residual(final), residual(plain))
    assert architecture(final)["final_dc"] is True and "final_dc" not in architecture(plain)
    model = small(final_dc=True, alpha_init=0.5).train()  # at alpha 1 an idle proximal is
    # data-consistent already, and both alphas would be stationary
    p2_loss(model(y, op, return_iterates=True), randc(1, 24, 16), y, op, 0.75).backward()
    assert model.final_alpha_raw.grad is not None and model.final_alpha_raw.grad.abs() > 0


def test_final_noise_alpha_follows_the_noise_level_and_learns():
    """alpha(sigma) = alpha_0 / (1 + (sigma / sigma_0)^2): alpha_0 when noiseless, half at
    sigma_0, per problem of a batch; a noisier measurement gets a less data-consistent output;
    alpha_0 and sigma_0 both learn; final_noise without final_dc is refused."""
    torch.manual_seed(4)
    model = small(final_dc=True, final_noise=True, alpha_init=8.0, sigma_init=0.02,
                  cg_iterations=20).eval()
    assert torch.isclose(model.final_alpha(None), torch.tensor(8.0))
    alpha = model.final_alpha(torch.tensor([0.0, 0.02, 0.2]))
    assert alpha.shape == (3, 1, 1)
    assert torch.allclose(alpha.flatten(), torch.tensor([8.0, 4.0, 8.0 / 101]), rtol=1e-5)
    op = CartesianOp(MASK)
    y = op.forward(randc(1, 24, 16)).expand(2, 24, 16)

    def residuals(noise):
        out = model(y, op, noise=noise)
        return (op.forward(out) - y).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)

    quiet, loud = residuals(torch.tensor([0.0, 0.5]))
    assert quiet < 0.5 * loud, (quiet, loud)
    assert torch.allclose(residuals(None), residuals(torch.zeros(2)))
    assert architecture(model)["final_noise"] is True
    assert "final_noise" not in architecture(small(final_dc=True))
    model.train()
    p2_loss(model(y, op, return_iterates=True, noise=torch.tensor([0.01, 0.03])),
            randc(2, 24, 16), y, op, 0.75).backward()
    assert model.final_log_sigma.grad.abs() > 0 and model.final_alpha_raw.grad.abs() > 0
    with pytest.raises(ValueError, match="final_noise needs final_dc"):
        small(final_noise=True)


def test_a_final_noise_checkpoint_round_trips(tmp_path):
    model = small(final_dc=True, final_noise=True, sigma_init=0.03)
    save_checkpoint(model, tmp_path / "m.safetensors", {})
    loaded, meta = load_checkpoint(tmp_path / "m.safetensors")
    assert meta["architecture"]["final_noise"] is True
    assert torch.isclose(loaded.final_log_sigma.exp(), torch.tensor(0.03))


def test_fine_tuning_into_a_final_noise_model_moves_the_step_sizes_at_alpha_lr(tmp_path):
    """train.init from a final_dc model without sigma_0; the step sizes learn at train.alpha_lr
    (Adam moves a parameter about its learning rate a step), the weights at train.lr."""
    start = small(iterations=2, features=4, final_dc=True, alpha_init=5.0)
    save_checkpoint(start, tmp_path / "start.safetensors", {"normalisation": {}})
    config = tmp_path / "c.toml"
    config.write_text(
        "[model]\niterations = 2\nfeatures = 4\nfinal_dc = true\nfinal_noise = true\n"
        "cg_iterations = 4\n[data]\ntrain = [{kind = 'phantom', count = 4}]\ncoils = [1, 3]\n"
        "validation = [{kind = 'phantom', count = 1, seed = 5}]\nvalidation_slices = 1\n"
        "shape = [32, 32]\n[train]\nsteps = 3\nbatch_size = 2\nvalidate_every = 3\n"
        f"lr = 1e-6\nalpha_lr = 0.05\ninit = '{tmp_path / 'start.safetensors'}'\n")
    result = subprocess.run([sys.executable, "-m", "npgd_recon.cli.train", str(config), "--out",
                             str(tmp_path / "run"), "--no-progress"], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    trained, meta = load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert meta["architecture"]["final_noise"] is True
    moved = {n: float((p - start.state_dict()[n]).abs().max()) if n in start.state_dict()
             else float((p - torch.tensor(0.01).log()).abs())
             for n, p in trained.state_dict().items() if p.is_floating_point()}
    assert moved["final_alpha_raw"] > 0.05 and moved["final_log_sigma"] > 0.05, moved
    weights = [v for n, v in moved.items() if "prox" in n and "running" not in n]
    assert max(weights) < 1e-4, moved


class _SeesAll(SenseOp):
    """SENSE without the support projection, for comparison."""

    @property
    def support(self):
        return None


@pytest.mark.parametrize("final_dc", [False, True])
def test_the_output_is_zero_where_no_coil_sees_and_unchanged_elsewhere(final_dc):
    """Pixels outside the maps' support are in Phi's null space: the network's output is 0
    there (without the projection it keeps whatever the proximal painted) and the same as
    without the projection inside."""
    model = small(final_dc=final_dc).eval()
    with torch.no_grad():  # a proximal that paints: a non-zero bias everywhere
        model.prox.tail[-1].bias.fill_(0.05)
    maps = randc(3, 24, 16) / 2
    maps[:, :4] = 0
    y = randc(2, 3, 24, 16) * MASK
    with torch.no_grad():
        out = model(y, SenseOp(MASK, maps))
        painted = model(y, _SeesAll(MASK, maps))
    assert torch.count_nonzero(out[:, :4]) == 0
    assert bool((painted[:, :4].abs() > 1e-3).all())
    torch.testing.assert_close(out[:, 4:], painted[:, 4:])


def test_noise_input_starts_as_the_plain_network_then_follows_the_noise_level(tmp_path):
    """noise_input: the head takes a third, constant channel sigma / NOISE_UNIT whose weights
    start at zero (the same function as the network without it, for any noise); once they are
    not zero the output depends on the level, through inference (folded, bf16), de-biasing,
    linearisation and a checkpoint round trip; only the ResNet proximal takes it."""
    from npgd_recon.models.linearise import LinearisedProximal
    from npgd_recon.recon.debias import debiased

    plain, noisy = small(features=8, unshuffle=2).eval(), small(
        features=8, unshuffle=2, noise_input=True).eval()
    assert noisy.noise_input and not plain.noise_input
    assert noisy.prox.head.in_channels == plain.prox.head.in_channels + 1
    state = plain.state_dict()
    with torch.no_grad():
        for p in state.values():
            if p.is_floating_point():
                p.add_(0.05 * torch.randn_like(p))
    plain.load_state_dict(state)
    head = state["prox.head.weight"]
    noisy.load_state_dict({**state, "prox.head.weight": torch.cat(
        [head, head.new_zeros(head.shape[0], 1, *head.shape[2:])], dim=1)})
    op = CartesianOp(MASK)
    y = op.forward(randc(2, 24, 16))
    level = torch.tensor([0.0, 0.03])
    with torch.no_grad():
        torch.testing.assert_close(noisy(y, op, noise=level), plain(y, op))
        noisy.prox.head.weight[:, -1] = 0.1
        quiet, loud = noisy(y, op, noise=torch.zeros(2)), noisy(y, op, noise=level)
    torch.testing.assert_close(quiet[0], loud[0])
    assert (quiet[1] - loud[1]).abs().max() > 1e-3
    torch.testing.assert_close(noisy(y, op), quiet)  # None: noiseless
    with torch.inference_mode():
        torch.testing.assert_close(prepare_for_inference(noisy)(y, op, noise=level), loud,
                                   rtol=1e-4, atol=1e-5)
        fast = prepare_for_inference(noisy, "bf16")(y, op, noise=level)
        assert (fast - loud).abs().max() < 0.05 * loud.abs().max()
        torch.testing.assert_close(debiased(noisy, y, op, iterations=0, noise=level), loud)
    s = randc(2, 24, 16)
    with torch.no_grad():
        torch.testing.assert_close(LinearisedProximal(noisy, s, level).affine(s),
                                   noisy.proximal(s, level))
    save_checkpoint(noisy, tmp_path / "n.safetensors", {})
    assert read_metadata(tmp_path / "n.safetensors")["architecture"]["noise_input"] is True
    assert "noise_input" not in architecture(plain)
    loaded, _ = load_checkpoint(tmp_path / "n.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(loaded(y, op, noise=level), loud)
    with pytest.raises(ValueError, match="noise_input is an option of the resnet"):
        small(proximal="unet", noise_input=True)


def test_fine_tuning_into_a_noise_input_model_starts_from_the_plain_one(tmp_path):
    """train.init from the same network without noise_input: its noise channel starts at zero,
    so the model starts as the one it came from; the reverse is refused in one line."""
    from npgd_recon.core.errors import NpgdError
    from npgd_recon.training.run import initialise

    start = small(features=4)
    with torch.no_grad():
        for p in start.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_checkpoint(start.eval(), tmp_path / "start.safetensors", {"normalisation": {}})
    model = small(features=4, noise_input=True)
    initialise(model, str(tmp_path / "start.safetensors"), 1.0, torch.device("cpu"))
    op = CartesianOp(MASK)
    y = op.forward(randc(2, 24, 16))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(y, op, noise=torch.tensor([0.01, 0.02])),
                                   start(y, op))
    save_checkpoint(model, tmp_path / "noisy.safetensors", {"normalisation": {}})
    with pytest.raises(NpgdError, match="differs from the config"):
        initialise(small(features=4), str(tmp_path / "noisy.safetensors"), 1.0,
                   torch.device("cpu"))


def test_fine_tuning_to_more_iterations_starts_from_the_same_shared_weights(tmp_path):
    """train.init into a model with more unrolled iterations: the proximal and step sizes are
    shared, so every weight loads unchanged."""
    from npgd_recon.training.run import initialise

    start = small(features=4, iterations=3)
    with torch.no_grad():
        for p in start.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_checkpoint(start.eval(), tmp_path / "start.safetensors", {"normalisation": {}})
    model = small(features=4, iterations=5)
    initialise(model, str(tmp_path / "start.safetensors"), 1.0, torch.device("cpu"))
    for ours, theirs in zip(model.state_dict().values(), start.state_dict().values()):
        torch.testing.assert_close(ours, theirs)
    assert model.iterations == 5


@pytest.mark.parametrize("dc", ["gradient", "cg"])
def test_soft_sense_with_an_empty_second_set_is_sense(dc):
    """With soft SENSE the proximal sees each set's image (with its problem's noise level) and
    CG solves the joint system of all sets: a second set of zero maps changes nothing (the
    output's first set is the one-set output, its second set zero), for both data-consistency
    steps, the final noise-following step and a noise-input proximal."""
    model = small(data_consistency=dc, final_dc=True, final_noise=True, noise_input=True).eval()
    maps = randc(2, 3, 24, 16) / 2
    one = SenseOp(MASK, maps)
    soft = SoftSenseOp(MASK, torch.stack([maps, torch.zeros_like(maps)], dim=1))
    y = one.forward(randc(2, 24, 16))
    noise = torch.tensor([0.01, 0.02])
    with torch.no_grad():
        expected, out = model(y, one, noise=noise), model(y, soft, noise=noise)
    assert out.shape == (2, 2, 24, 16) and not bool(out[:, 1].any())
    torch.testing.assert_close(soft.output_image(out), expected, rtol=1e-4, atol=1e-5)


def test_the_proximal_sees_each_set_as_an_image_with_its_problem_s_noise_level():
    """Soft SENSE: the proximal gets ``[batch * set, y, x]`` (each problem's sets in a row),
    its result goes back to each set, and each image's noise level is its problem's."""
    from npgd_recon.models.npgd import set_levels, set_proximal

    soft = SoftSenseOp(MASK, randc(2, 3, 4, 24, 16))
    seen = []
    prox = set_proximal(lambda s: seen.append(s) or s * torch.arange(1, 7).reshape(6, 1, 1), soft)
    x = randc(2, 3, 24, 16)
    out = prox(x)
    assert seen[0].shape == (6, 24, 16) and torch.equal(seen[0][4], x[1, 1])
    torch.testing.assert_close(out[1, 2], 6 * x[1, 2])
    assert torch.equal(set_levels(torch.tensor([0.1, 0.2]), soft),
                       torch.tensor([0.1, 0.1, 0.1, 0.2, 0.2, 0.2]))
    assert set_levels(None, soft) is None
    assert set_proximal(torch.neg, SenseOp(MASK, randc(2, 4, 24, 16))) is torch.neg


def test_soft_sense_second_set_takes_what_the_first_cannot_explain():
    """Data made with two sets of maps: the network with both sets fits them (its output's
    measurement residual) better than with the first set alone, and its second set is not
    empty."""
    model = small(data_consistency="cg", cg_iterations=20, alpha_init=20.0).eval()
    maps = randc(1, 2, 4, 24, 16)
    maps = maps / maps.abs().square().sum(dim=(1, 2), keepdim=True).sqrt()
    soft = SoftSenseOp(MASK, maps)
    y = soft.forward(randc(1, 2, 24, 16))
    with torch.no_grad():
        both = model(y, soft)
        first = model(y, SenseOp(MASK, maps[:, 0]))
    residual = [float((op.forward(x) - y).norm() / y.norm())
                for op, x in ((soft, both), (SenseOp(MASK, maps[:, 0]), first))]
    assert residual[0] < 0.5 * residual[1], residual
    assert bool(both[:, 1].abs().sum() > 0)


def _perturbed(model):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def test_untied_model_has_one_proximal_per_iteration_and_round_trips(tmp_path):
    """untied: T proximals, each iteration its own (changing one changes only what follows
    it), written in the architecture and reloaded as it was; unrolling past T is refused."""
    model = _perturbed(small(features=4, iterations=3, untied=True, noise_input=True))
    assert architecture(model)["untied"] is True and len(model.prox.steps) == 3
    assert "untied" not in architecture(small())
    op = CartesianOp(MASK)
    y, noise = op.forward(randc(2, 24, 16)), torch.tensor([0.01, 0.02])
    with torch.no_grad():
        before = model(y, op, return_iterates=True, noise=noise)
        model.prox.steps[2].tail[-1].bias.add_(0.1)
        after = model(y, op, return_iterates=True, noise=noise)
    for t in (0, 1):
        torch.testing.assert_close(after[t], before[t])
    assert not torch.allclose(after[2], before[2])
    save_checkpoint(model, tmp_path / "untied.safetensors", {"normalisation": {}})
    loaded, meta = load_checkpoint(tmp_path / "untied.safetensors")
    assert meta["architecture"]["untied"] is True
    with torch.no_grad():
        torch.testing.assert_close(loaded(y, op, noise=noise), model(y, op, noise=noise))
        folded = prepare_for_inference(loaded)
        torch.testing.assert_close(folded(y, op, noise=noise), model(y, op, noise=noise))
    with pytest.raises(ValueError, match="3 proximals"):
        list(model.iterate(y, op, iterations=4))
    with pytest.raises(ValueError, match="untied is an option of the resnet"):
        small(proximal="unet", untied=True)


def test_fine_tuning_a_shared_model_untied_starts_as_it(tmp_path):
    """train.init from the shared network into an untied one: every iteration's proximal starts
    as the shared one, so the model computes what it did; the reverse, and an untied start with
    another iteration count, are refused in one line."""
    from npgd_recon.core.errors import NpgdError
    from npgd_recon.training.run import initialise

    start = _perturbed(small(features=4, iterations=3))
    save_checkpoint(start, tmp_path / "start.safetensors", {"normalisation": {}})
    model = small(features=4, iterations=3, untied=True)
    initialise(model, str(tmp_path / "start.safetensors"), 1.0, torch.device("cpu"))
    op = CartesianOp(MASK)
    y = op.forward(randc(2, 24, 16))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(y, op), start(y, op))
    save_checkpoint(model, tmp_path / "untied.safetensors", {"normalisation": {}})
    with pytest.raises(NpgdError, match="differs from the config"):
        initialise(small(features=4), str(tmp_path / "untied.safetensors"), 1.0,
                   torch.device("cpu"))
    with pytest.raises(NpgdError, match="3 untied proximals"):
        initialise(small(features=4, iterations=4, untied=True),
                   str(tmp_path / "untied.safetensors"), 1.0, torch.device("cpu"))


def test_a_shorter_untied_unrolling_starts_from_evenly_spaced_proximals(tmp_path):
    """train.init from an untied model with more iterations: iteration t gets the proximal of
    iteration round(t (L-1) / (T-1)) of L (the first and last kept), the step sizes as they
    were, so it starts as the longer model's first iteration."""
    from npgd_recon.training.run import initialise

    longer = _perturbed(small(features=4, iterations=5, untied=True))
    save_checkpoint(longer, tmp_path / "longer.safetensors", {"normalisation": {}})
    model = small(features=4, iterations=3, untied=True)
    initialise(model, str(tmp_path / "longer.safetensors"), 1.0, torch.device("cpu"))
    for t, kept in enumerate((0, 2, 4)):
        for ours, theirs in zip(model.prox.steps[t].parameters(),
                                longer.prox.steps[kept].parameters(), strict=True):
            torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(model.alpha_raw, longer.alpha_raw)
    op = CartesianOp(MASK)
    y = op.forward(randc(2, 24, 16))
    with torch.no_grad():  # the first iteration is the longer model's own first one
        (_, ours), = model.eval().iterate(y, op, iterations=1)
        (_, theirs), = longer.iterate(y, op, iterations=1)
    torch.testing.assert_close(ours, theirs)

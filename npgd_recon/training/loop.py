"""Training NPGD with the paper's loss (P2), checkpoints, resume, validation and a CSV log.

``data.operator`` picks the problem: ``"cartesian"`` (single-coil MRI, :class:`UndersampledSet`)
or ``"block-average"`` (2x2 super resolution,
:class:`~npgd_recon.data.superres.BlockAveragedSet`).

Loss per batch, all terms means over pixels and the batch::

    beta * |x_T - x*|^2  +  (1 - beta) * sum_t |y - Phi x_t|^2

Runs on CPU or CUDA (AMP in bfloat16 on CUDA); under ``torchrun`` it uses
DistributedDataParallel (one process per GPU, each drawing its own samples; rank 0 writes).
``train.workers`` > 0 prepares batches in that many persistent loader processes (one torch
thread each; :func:`make_loader`); every sample is drawn from its own ``(seed, index)``
generator, so a run's batches do not depend on the worker count.
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from npgd_recon.core.device import describe_hardware, pick_device
from npgd_recon.core.metrics import snr_db_magnitude, ssim_magnitude
from npgd_recon.core.operators import BlockAverageOp, CartesianOp, SenseOp
from npgd_recon.core.transforms import NORMALISATION, normalise
from npgd_recon.data.sources import build_source
from npgd_recon.data.superres import BlockAveragedSet, image_source
from npgd_recon.data.undersampled import Augment, UndersampledSet
from npgd_recon.models.checkpoint import load_checkpoint, save_checkpoint
from npgd_recon.models.npgd import STEP_PARAMETERS, NeuralPGD, architecture
from npgd_recon.models.registry import resolve_weights


def p2_loss(iterates: list[torch.Tensor], target: torch.Tensor, y: torch.Tensor, op,
            beta: float) -> torch.Tensor:
    """The paper's training loss (P2) on normalised data."""
    image_term = (iterates[-1] - target).abs().pow(2).mean()
    data_term = sum((op.forward(x) - y).abs().pow(2).mean() for x in iterates)
    return beta * image_term + (1 - beta) * data_term


def normalised_problem(batch: dict, device) -> tuple:
    """Move a batch to ``device`` and normalise it: ``(op, y, target, noise)``.

    A batch with ``lowres`` is super resolution; otherwise k-space with ``mask``, single-coil
    or, with ``maps``, multi-coil through the SENSE operator. ``noise`` is the batch's noise std
    per k-space sample ``[batch]`` in the units of ``y`` (``None`` when the batch has none).
    """
    target = batch["target"].to(device)
    if "lowres" in batch:
        op, y = BlockAverageOp(), batch["lowres"].to(device)
    elif "maps" in batch:
        op = SenseOp(batch["mask"].to(device), batch["maps"].to(device))
        y = batch["kspace"].to(device)
    else:
        op, y = CartesianOp(batch["mask"].to(device)), batch["kspace"].to(device)
    y, scale = normalise(y, op)
    noise = batch["noise"].to(device) / scale.flatten() if "noise" in batch else None
    return op, y, target / scale, noise


def _datasets(dc: dict, length: int, seed: int, batch_size: int = 1) -> tuple:
    """Training and validation sets for ``config["data"]``."""
    if dc["operator"] == "block-average":
        shape = tuple(dc["shape"])
        train_set = BlockAveragedSet([image_source(s, shape) for s in dc["train"]], length,
                                     noise=tuple(dc["noise"]), augment=True, seed=seed)
        val_set = BlockAveragedSet([image_source(s, shape) for s in dc["validation"]],
                                   dc["validation_slices"], noise=(dc["validation_noise"],) * 2)
        return train_set, val_set
    if dc["operator"] != "cartesian":
        raise ValueError(f"data.operator must be 'cartesian' or 'block-average', got "
                         f"{dc['operator']!r}")
    augment = Augment(tuple(dc["shape"]), tuple(dc["zoom"]), gamma=tuple(dc["gamma"]),
                      invert=float(dc["invert"]), bias=float(dc["bias"]))
    coils = coil_range(dc["coils"])
    train_set = UndersampledSet([build_source(s) for s in dc["train"]], length, mask=dc["mask"],
                                accel=dc["accel"], noise=tuple(dc["noise"]), augment=augment,
                                seed=seed, coils=coils, coil_group=batch_size)
    val_set = UndersampledSet([build_source(s) for s in dc["validation"]],
                              dc["validation_slices"], mask=dc["mask"], accel=dc["accel"],
                              noise=(dc["validation_noise"],) * 2, seed=99, coils=coils)
    return train_set, val_set


def _worker_init(worker: int) -> None:
    """A loader worker: one torch thread, numpy's and torch's global seeds from the worker's.

    Samples do not depend on these (each item draws from its own ``(seed, index)`` generator);
    they make any global random draw in a worker reproducible too.
    """
    torch.set_num_threads(1)
    seed = torch.utils.data.get_worker_info().seed % 2**32
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_loader(dataset, indices: list[int], batch_size: int, workers: int = 0,
                seed: int = 0, pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """Batches of ``dataset[indices]`` in order; with ``workers`` > 0 from that many persistent
    worker processes (one torch thread each). The batches are the same for any worker count."""
    if int(workers) != workers or workers < 0:
        raise ValueError(f"train.workers must be a whole number >= 0, got {workers}")
    workers = int(workers)
    extra = {"persistent_workers": True, "worker_init_fn": _worker_init,
             "prefetch_factor": 4} if workers else {}
    return torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices),
                                       batch_size=batch_size, shuffle=False,
                                       num_workers=workers, pin_memory=pin_memory,
                                       generator=torch.Generator().manual_seed(seed), **extra)


@torch.no_grad()
def validate(model: NeuralPGD, dataset: UndersampledSet, device) -> dict[str, float]:
    """Mean magnitude SNR / SSIM of the network and of zero filling over ``dataset``."""
    model.eval()
    snr, ssim, zf = [], [], []
    for i in range(len(dataset)):
        batch = {k: v[None] for k, v in dataset[i].items()}
        op, y, target, noise = normalised_problem(batch, device)
        out = model(y, op, noise=noise)
        snr.append(snr_db_magnitude(target[0].cpu(), out[0].cpu()))
        ssim.append(ssim_magnitude(target[0].cpu(), out[0].cpu()))
        zf.append(snr_db_magnitude(target[0].cpu(), op.adjoint(y)[0].cpu()))
    model.train()
    return {"snr_db": float(np.mean(snr)), "ssim": float(np.mean(ssim)),
            "zerofill_snr_db": float(np.mean(zf))}


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def train(config: dict, out: Path, *, resume: bool = False, device: str = "auto",
          progress: bool = True) -> dict:
    """Train a model as ``config`` says, writing ``out/model.safetensors`` and ``out/log.csv``.

    Returns the final validation metrics.
    """
    rank, world = _distributed()
    dev = pick_device(device, rank)
    tc, dc = config["train"], config["data"]
    if tc["threads"]:
        torch.set_num_threads(int(tc["threads"]))
    torch.manual_seed(tc["seed"] + rank)
    out.mkdir(parents=True, exist_ok=True)

    model = NeuralPGD(**config["model"]).to(dev)
    optimiser = torch.optim.Adam(_parameter_groups(model, tc), lr=tc["lr"], betas=(0.9, 0.999))
    schedule = torch.optim.lr_scheduler.StepLR(optimiser, tc["lr_halve_every"], gamma=0.5)
    start, elapsed, metrics = 0, 0.0, {}
    state_path, model_path = out / "train_state.pt", out / "model.safetensors"
    if resume and model_path.exists() and state_path.exists():
        loaded, meta = load_checkpoint(model_path, dev)
        if meta["architecture"] != architecture(model):
            raise ValueError(f"--resume {out}: the run's architecture {meta['architecture']} "
                             f"differs from the config's {architecture(model)}")
        model.load_state_dict(loaded.state_dict())
        state = torch.load(state_path, map_location=dev, weights_only=True)
        if len(state["optimiser"]["param_groups"]) != len(optimiser.param_groups):
            raise ValueError(f"--resume {out}: its optimiser state predates train.alpha_lr (one "
                             f"parameter group); start a new run with train.init = "
                             f"'{model_path}' instead")
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        start, elapsed = int(state["step"]), float(state["seconds"])
        metrics = meta.get("validation", {})
    elif tc["init"]:  # fine-tuning: a model with the same network (any data consistency)
        loaded, meta = load_checkpoint(resolve_weights(tc["init"]), dev)
        if _network(meta["architecture"]) != _network(architecture(model)):
            raise ValueError(f"train.init {tc['init']}: architecture {meta['architecture']} "
                             f"differs from the config's {architecture(model)}")
        keys = model.load_state_dict(loaded.state_dict(), strict=False)
        if set(keys.missing_keys + keys.unexpected_keys) - set(STEP_PARAMETERS):
            raise ValueError(f"train.init {tc['init']}: weights do not match the network")
        if meta["architecture"]["data_consistency"] != model.data_consistency:
            with torch.no_grad():  # the step means something else: start from model.alpha_init
                model.alpha_raw.fill_(float(torch.tensor(float(config["model"]["alpha_init"]))
                                            .expm1().log()))
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model

    train_set, val_set = _datasets(dc, tc["steps"] * tc["batch_size"], tc["seed"] + 1000 * rank,
                                   tc["batch_size"])
    indices = list(range(start * tc["batch_size"], tc["steps"] * tc["batch_size"]))
    loader = make_loader(train_set, indices, tc["batch_size"], tc["workers"],
                         seed=tc["seed"] + rank, pin_memory=dev.type == "cuda")
    amp = bool(tc["amp"]) and dev.type == "cuda"
    log_path = out / "log.csv"
    new_log = not (resume and log_path.exists())
    log = (open(log_path, "w" if new_log else "a", newline="") if rank == 0
           else open(os.devnull, "w"))
    writer = csv.writer(log)
    if new_log and rank == 0:
        writer.writerow(["step", "loss", "lr", "alpha", "val_snr_db", "val_ssim", "seconds"])

    bar = tqdm(loader, initial=start, total=tc["steps"], disable=not progress or rank != 0,
               desc="train", unit="step")
    tick = time.perf_counter()
    deadline = tick + tc["max_seconds"] if tc["max_seconds"] > 0 else None
    step = start
    for batch in bar:
        op, y, target, noise = normalised_problem(batch, dev)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            iterates = ddp(y, op, return_iterates=True, noise=noise)
        loss = p2_loss(iterates, target, y, op, tc["beta"])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        step += 1
        stop = _out_of_time(deadline, world, dev)
        val = step % tc["validate_every"] == 0 or step == tc["steps"] or stop
        if val and rank == 0:
            metrics = validate(model, val_set, dev)
        if rank == 0:
            seconds = elapsed + time.perf_counter() - tick
            writer.writerow([step, f"{loss.item():.6g}", f"{schedule.get_last_lr()[0]:.3g}",
                             f"{model.alpha.item():.4f}",
                             f"{metrics['snr_db']:.3f}" if val else "",
                             f"{metrics['ssim']:.4f}" if val else "", f"{seconds:.1f}"])
            bar.set_postfix(loss=f"{loss.item():.4g}",
                            val_snr=f"{metrics.get('snr_db', float('nan')):.2f}")
        if rank == 0 and (step % tc["checkpoint_every"] == 0 or step == tc["steps"] or stop):
            log.flush()
            _save(model, optimiser, schedule, out, config, step,
                  elapsed + time.perf_counter() - tick, metrics, dev)
        if stop:
            break
    log.close()
    if world > 1:  # wait for rank 0's validation and checkpoint: gloo aborts a rank whose
        torch.distributed.barrier()  # group is destroyed while a peer still holds it
        torch.distributed.destroy_process_group()
    return metrics


def coil_range(coils) -> tuple[int, int]:
    """``data.coils`` (a count or ``[low, high]``) as a range."""
    low, high = (coils, coils) if isinstance(coils, int) else tuple(coils)
    return int(low), int(high)


def _network(arch: dict) -> dict:
    """An architecture without its data-consistency keys: what the weights depend on."""
    return {k: v for k, v in arch.items()
            if k not in ("data_consistency", "cg_iterations", "final_dc", "final_noise")}


def _parameter_groups(model: NeuralPGD, tc: dict) -> list[dict]:
    """The network's weights at ``train.lr``, the step sizes (:data:`STEP_PARAMETERS`) at
    ``train.alpha_lr`` when set: a few scalars that Adam, moving each by about ``lr`` a step,
    would otherwise leave where they started (``final_alpha`` moved 5.0 -> 4.96 in 481 steps)."""
    steps = [p for n, p in model.named_parameters() if n in STEP_PARAMETERS]
    weights = [p for n, p in model.named_parameters() if n not in STEP_PARAMETERS]
    return [{"params": weights},
            {"params": steps, "lr": tc["alpha_lr"] if tc["alpha_lr"] > 0 else tc["lr"]}]


def _out_of_time(deadline: float | None, world: int, dev: torch.device) -> bool:
    """Whether ``train.max_seconds`` has run out (under torchrun: on any rank, so all stop)."""
    if deadline is None:
        return False
    stop = time.perf_counter() >= deadline
    if world > 1:
        flag = torch.tensor([float(stop)], device=dev)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        stop = bool(flag.item())
    return stop


def _operator_name(coils) -> str:
    """The operator a model trained with ``data.coils`` saw, for its metadata."""
    low, high = coil_range(coils)
    if high == 1:
        return "cartesian-single-coil"
    return f"sense-{low}-coil" if low == high else f"sense-{low}-to-{high}-coil"


def _save(model, optimiser, schedule, out: Path, config: dict, step: int, seconds: float,
          metrics: dict, dev) -> None:
    sr = config["data"]["operator"] == "block-average"
    meta = {
        "normalisation": NORMALISATION,
        "operator": "block-average-2x2" if sr else _operator_name(config["data"]["coils"]),
        "mask": None if sr else {"kind": config["data"]["mask"], "accel": config["data"]["accel"]},
        "data": {"train": config["data"]["train"], "validation": config["data"]["validation"]},
        "steps": step,
        "batch_size": config["train"]["batch_size"],
        "loss": {"name": "P2", "beta": config["train"]["beta"]},
        "validation": metrics,
        "train_seconds": round(seconds, 1),
        "hardware": describe_hardware(dev),
        "config": json.loads(json.dumps(config)),
    }
    save_checkpoint(model, out / "model.safetensors", meta)
    state = {"optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(),
             "step": step, "seconds": seconds}
    tmp = out / "train_state.pt.tmp"
    torch.save(state, tmp)
    os.replace(tmp, out / "train_state.pt")

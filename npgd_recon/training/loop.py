"""Training NPGD with the paper's loss (P2): datasets, the loader, validation and the step loop.

``data.operator`` picks the problem: ``"cartesian"`` (MRI k-space, single- or multi-coil,
:class:`~npgd_recon.data.undersampled.UndersampledSet`) or ``"block-average"`` (2x2 super
resolution, :class:`~npgd_recon.data.superres.BlockAveragedSet`). Either gives typed samples
(:mod:`npgd_recon.data.samples`) that know their operator and normalise themselves.

Loss per batch, all terms means over pixels and the batch::

    beta * |x_T - x*|^2  +  (1 - beta) * sum_t |y - Phi x_t|^2

:func:`train` is three parts: the start (the run folder checked before anything is written,
then a new model, ``train.init``'s weights, or ``--resume``'s state: :mod:`npgd_recon.training.
run`), the run log (:class:`~npgd_recon.training.logger.RunLog`, a context manager) and the
step loop (:func:`_steps`: step, validate, log, checkpoint).

Runs on CPU or CUDA (``train.amp``: bfloat16 autocast where the device has native bf16, CUDA
or a CPU with AVX512-BF16/AMX); under ``torchrun`` it uses
DistributedDataParallel (one process per GPU, each drawing its own samples; rank 0 validates,
logs and writes). ``train.workers`` > 0 prepares batches in that many persistent loader
processes (one torch thread each; :func:`make_loader`); every sample is drawn from its own
``(seed, index)`` generator, so a run's batches do not depend on the worker count.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from npgd_recon.core.device import pick_device
from npgd_recon.core.metrics import snr_db_magnitude, ssim_magnitude
from npgd_recon.data.samples import collate
from npgd_recon.data.sources import build_source
from npgd_recon.data.superres import BlockAveragedSet, image_source
from npgd_recon.data.undersampled import UndersampledSet
from npgd_recon.models.inference import native_precision
from npgd_recon.models.npgd import STEP_PARAMETERS, NeuralPGD
from npgd_recon.training.config import Config, DataConfig, TrainConfig
from npgd_recon.training.logger import RunLog
from npgd_recon.training.run import (
    LOG,
    check_run_folder,
    clear_run,
    initialise,
    restore,
    save,
    save_best,
)

__all__ = ["datasets", "make_loader", "p2_loss", "train", "train_mode", "validate"]


def p2_loss(iterates: list[torch.Tensor], target: torch.Tensor, y: torch.Tensor, op,
            beta: float) -> torch.Tensor:
    """The paper's training loss (P2) on normalised data (the image term on the operator's
    output image: the first set's for soft SENSE)."""
    image_term = (op.output_image(iterates[-1]) - target).abs().pow(2).mean()
    data_term = sum((op.forward(x) - y).abs().pow(2).mean() for x in iterates)
    return beta * image_term + (1 - beta) * data_term


def datasets(data: DataConfig, length: int, seed: int, batch_size: int = 1,
             ) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset]:
    """The training set (``length`` items drawn from ``seed``) and the validation set of
    ``data``; a coil range is drawn once per ``batch_size`` items. The validation problems are
    drawn from ``data.coils``, or, with ``data.validation_coils``, posed once at each of those
    coil counts (the same images and masks)."""
    if data.operator == "block-average":
        train_set = BlockAveragedSet([image_source(s, data.shape) for s in data.train], length,
                                     noise=data.noise, augment=True, seed=seed)
        val_set = BlockAveragedSet([image_source(s, data.shape) for s in data.validation],
                                   data.validation_slices, noise=(data.validation_noise,) * 2)
        return train_set, val_set
    train_set = UndersampledSet([build_source(s) for s in data.train], length, mask=data.mask,
                                accel=data.accel, noise=data.noise, augment=data.augment(),
                                seed=seed, coils=data.coil_range, coil_group=batch_size,
                                noise_scale=data.noise_scale, maps=data.maps,
                                maps_up_to=data.maps_up_to, map_sets=data.map_sets,
                                map_error=data.map_error, coil_geometry=data.coil_geometry,
                                texture=data.texture)
    sources = [build_source(s) for s in data.validation]
    val_sets = [UndersampledSet(sources, data.validation_slices, mask=data.mask, accel=data.accel,
                                noise=(data.validation_noise,) * 2, seed=99, coils=coils,
                                phase=data.validation_phase, maps=data.maps,
                                maps_up_to=data.maps_up_to, map_sets=data.map_sets,
                                map_error=data.map_error,
                                coil_geometry=data.validation_coil_geometry)
                for coils in data.validation_coils or (data.coil_range,)]
    return train_set, torch.utils.data.ConcatDataset(val_sets)


def _worker_init(worker: int) -> None:
    """A loader worker: one torch thread, numpy's and torch's global seeds from the worker's.

    Samples do not depend on these (each item draws from its own ``(seed, index)`` generator);
    they make any global random draw in a worker reproducible too.
    """
    torch.set_num_threads(1)
    seed = torch.utils.data.get_worker_info().seed % 2**32
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_loader(dataset: torch.utils.data.Dataset, indices: list[int], batch_size: int,
                workers: int = 0, seed: int = 0,
                pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """Batches (:func:`~npgd_recon.data.samples.collate`) of ``dataset[indices]`` in order; with
    ``workers`` > 0 from that many persistent worker processes (one torch thread each). The
    batches are the same for any worker count."""
    extra = {"persistent_workers": True, "worker_init_fn": _worker_init,
             "prefetch_factor": 4} if workers else {}
    return torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices),
                                       batch_size=batch_size, shuffle=False,
                                       num_workers=workers, collate_fn=collate,
                                       pin_memory=pin_memory,
                                       generator=torch.Generator().manual_seed(seed), **extra)


def train_mode(model: NeuralPGD, freeze_norm: bool = False) -> None:
    """Put ``model`` in training mode; with ``freeze_norm`` its batch norms stay in evaluation
    mode: they normalise with their running statistics (and stop updating them), as at
    inference, while their scale and shift still train."""
    model.train()
    if freeze_norm:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


@torch.no_grad()
def validate(model: NeuralPGD, dataset: torch.utils.data.Dataset, device,
             freeze_norm: bool = False) -> dict[str, float]:
    """Mean magnitude SNR / SSIM of the network and of zero filling over ``dataset``; the model
    is left in training mode (:func:`train_mode`)."""
    model.eval()
    snr, ssim, zf = [], [], []
    for i in range(len(dataset)):
        op, y, target, noise = collate([dataset[i]]).to(device).normalised()
        out = op.output_image(model(y, op, noise=noise))
        snr.append(snr_db_magnitude(target[0].cpu(), out[0].cpu()))
        ssim.append(ssim_magnitude(target[0].cpu(), out[0].cpu()))
        zf.append(snr_db_magnitude(target[0].cpu(), op.output_image(op.adjoint(y))[0].cpu()))
    train_mode(model, freeze_norm)
    return {"snr_db": float(np.mean(snr)), "ssim": float(np.mean(ssim)),
            "zerofill_snr_db": float(np.mean(zf))}


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


@dataclass
class _Session:
    """What the step loop works on: the model (``ddp``: wrapped under torchrun), its optimiser
    and schedule, the weights' moving average (``average``, with ``train.ema``), where it runs,
    and where the run stands (``start`` steps done, ``elapsed`` seconds, the last validation
    ``metrics``)."""

    config: Config
    out: Path
    model: NeuralPGD
    ddp: torch.nn.Module
    optimiser: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    device: torch.device
    rank: int
    world: int
    start: int
    elapsed: float
    metrics: dict
    average: torch.optim.swa_utils.AveragedModel | None = None

    @property
    def shipped(self) -> NeuralPGD:
        """The model validated and written: the moving average with ``train.ema``, else the
        trained model itself."""
        return self.model if self.average is None else self.average.module


def train(config: Config, out: Path, *, resume: bool = False, force: bool = False,
          device: str = "auto", progress: bool = True) -> dict:
    """Train a model as ``config`` says, writing ``out/model.safetensors`` and ``out/log.csv``.

    ``out`` must be new or empty unless ``resume`` (continue the run in it; a new run when it
    holds none) or ``force`` (replace the run in it); nothing is written before the model, its
    start and the data are ready. Returns the final validation metrics.
    """
    resuming = check_run_folder(out, resume=resume, force=force)  # every rank, before any write
    rank, world = _distributed()
    run = _start(config, out, resuming, pick_device(device, rank), rank, world)
    tc = config.train
    train_set, val_set = datasets(config.data, tc.steps * tc.batch_size, tc.seed + 1000 * rank,
                                  tc.batch_size)
    indices = list(range(run.start * tc.batch_size, tc.steps * tc.batch_size))
    loader = make_loader(train_set, indices, tc.batch_size, tc.workers, seed=tc.seed + rank,
                         pin_memory=run.device.type == "cuda")
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if not resuming:
            clear_run(out)
    with RunLog(out / LOG, append=resuming, enabled=rank == 0) as log:
        metrics = _steps(run, loader, val_set, log, progress)
    if world > 1:  # wait for rank 0's validation and checkpoint: gloo aborts a rank whose
        torch.distributed.barrier()  # group is destroyed while a peer still holds it
        torch.distributed.destroy_process_group()
    return metrics


def _start(config: Config, out: Path, resuming: bool, device: torch.device, rank: int,
           world: int) -> _Session:
    """The model, optimiser and schedule: new, from ``train.init``'s weights, or the run in
    ``out`` (``resuming``); wrapped in DistributedDataParallel under torchrun."""
    tc = config.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed + rank)
    model = NeuralPGD(**asdict(config.model)).to(device)
    optimiser = torch.optim.Adam(_parameter_groups(model, tc), lr=tc.lr, betas=(0.9, 0.999))
    schedule = torch.optim.lr_scheduler.StepLR(optimiser, tc.lr_halve_every, gamma=0.5)
    start, elapsed, metrics = 0, 0.0, {}
    # fine-tuning: the weights of a model with the same network (any data consistency)
    if not resuming and tc.init:
        initialise(model, tc.init, config.model.alpha_init, device)
    average = None if tc.ema == 0 else torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(tc.ema), use_buffers=True)
    if resuming:
        start, elapsed, metrics = restore(out, model, optimiser, schedule, device,
                                          None if average is None else average.module)
        if average is not None:  # the restored average continues (it is not restarted)
            average.n_averaged.fill_(max(start, 1))
    # DDP's first broadcast waits for every rank: none writes before all have checked ``out``
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    return _Session(config, out, model, ddp, optimiser, schedule, device, rank, world, start,
                    elapsed, metrics, average)


def _steps(run: _Session, loader: torch.utils.data.DataLoader,
           val_set: torch.utils.data.Dataset, log: RunLog, progress: bool) -> dict:
    """Train from ``run.start`` to ``train.steps`` (or until ``train.max_seconds``): each step
    on one batch, validating, logging and checkpointing on rank 0. Returns the last validation
    metrics."""
    tc = run.config.train
    amp = tc.amp and native_precision(run.device) == "bf16"
    tick = time.perf_counter()
    deadline = tick + tc.max_seconds if tc.max_seconds > 0 else None
    step, metrics = run.start, run.metrics
    train_mode(run.model, tc.freeze_norm)
    with tqdm(loader, initial=run.start, total=tc.steps, disable=not progress or run.rank != 0,
              desc="train", unit="step") as bar:
        for batch in bar:
            op, y, target, noise = batch.to(run.device).normalised()
            with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=amp):
                iterates = run.ddp(y, op, return_iterates=True, noise=noise)
            loss = p2_loss(iterates, target, y, op, tc.beta)
            run.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            run.optimiser.step()
            run.schedule.step()
            if run.average is not None:
                run.average.update_parameters(run.model)
            step += 1
            stop = _out_of_time(deadline, run.world, run.device)
            if run.rank == 0:
                metrics = _report(run, step, loss.item(), metrics, stop, val_set, log, tick)
                bar.set_postfix(loss=f"{loss.item():.4g}",
                                val_snr=f"{metrics.get('snr_db', float('nan')):.2f}")
            if stop:
                break
    return metrics


def _report(run: _Session, step: int, loss: float, metrics: dict, stop: bool,
            val_set: torch.utils.data.Dataset, log: RunLog, tick: float) -> dict:
    """Rank 0 after a step: validate when due, log the step, checkpoint when due. Returns the
    latest validation metrics."""
    tc = run.config.train
    last = step == tc.steps or stop
    validated = step % tc.validate_every == 0 or last
    if validated:
        metrics = validate(run.shipped, val_set, run.device, tc.freeze_norm)
    log.row(step, loss, run.schedule.get_last_lr()[0], run.shipped.alpha.item(),
            metrics if validated else None, run.elapsed + time.perf_counter() - tick)
    seconds = run.elapsed + time.perf_counter() - tick
    if step % tc.checkpoint_every == 0 or last:
        log.flush()
        save(run.out, run.config, run.shipped, run.optimiser, run.schedule, step, seconds,
             metrics, run.device, None if run.average is None else run.model)
    if validated and tc.keep_best:
        save_best(run.out, run.config, run.shipped, step, seconds, metrics, run.device)
    return metrics


def _parameter_groups(model: NeuralPGD, tc: TrainConfig) -> list[dict]:
    """The network's weights at ``train.lr``, the step sizes (:data:`STEP_PARAMETERS`) at
    ``train.alpha_lr`` when set: a few scalars that Adam, moving each by about ``lr`` a step,
    would otherwise leave where they started (``final_alpha`` moved 5.0 -> 4.96 in 481 steps)."""
    steps = [p for n, p in model.named_parameters() if n in STEP_PARAMETERS]
    weights = [p for n, p in model.named_parameters() if n not in STEP_PARAMETERS]
    return [{"params": weights},
            {"params": steps, "lr": tc.alpha_lr if tc.alpha_lr > 0 else tc.lr}]


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

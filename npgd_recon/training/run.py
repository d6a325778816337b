"""A run folder, ``RUN/``: what a training run writes, how it starts and how it is saved.

Files: ``model.safetensors`` (weights and metadata, :mod:`npgd_recon.models.checkpoint`),
``train_state.pt`` (optimiser, schedule, step, seconds: what ``--resume`` needs beside the
model) and ``log.csv`` (:mod:`npgd_recon.training.logger`). Each checkpoint replaces the two
state files atomically; every file follows the user's umask.

- :func:`check_run_folder`: a run goes into a new or empty folder; an existing non-empty one is
  refused (:class:`RunExistsError`) unless resumed (``resume``) or replaced (``force``).
- :func:`clear_run`: a new run in a used folder deletes the old run's files (and only those)
  once everything is ready to train, so a failure before that keeps them.
- :func:`restore`: continue the run in a folder (model, optimiser, schedule, step, seconds).
- :func:`initialise`: start from another model's weights (``train.init``, fine-tuning); the
  data-consistency step may differ, the network may not.
- :func:`save`: one checkpoint, with the metadata every model file carries.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from npgd_recon.core.device import describe_hardware
from npgd_recon.core.errors import NpgdError
from npgd_recon.core.transforms import NORMALISATION
from npgd_recon.models.checkpoint import load_checkpoint, save_checkpoint
from npgd_recon.models.npgd import STEP_PARAMETERS, NeuralPGD, architecture
from npgd_recon.models.registry import resolve_weights
from npgd_recon.training.config import Config

__all__ = ["LOG", "MODEL", "RUN_FILES", "STATE", "RunExistsError", "check_run_folder",
           "clear_run", "initialise", "restore", "save"]

MODEL, STATE, LOG = "model.safetensors", "train_state.pt", "log.csv"
RUN_FILES = (MODEL, STATE, LOG)


class RunExistsError(NpgdError):
    """The run folder holds something already; ``--force`` replaces it (``needs_force``)."""

    needs_force = True


def check_run_folder(out: Path, *, resume: bool, force: bool) -> bool:
    """Whether training continues the run in ``out`` (``resume`` and its checkpoint exist).

    Raises :class:`RunExistsError` for an existing non-empty ``out`` without ``resume`` or
    ``force``, and :class:`~npgd_recon.core.errors.NpgdError` when ``out`` is not a folder.
    """
    if out.exists() and not out.is_dir():
        raise NpgdError(f"run folder {out} exists and is not a folder")
    if resume:
        return (out / MODEL).exists() and (out / STATE).exists()
    if out.is_dir() and any(out.iterdir()) and not force:
        raise RunExistsError(f"run folder {out} exists and is not empty; --resume continues "
                             f"the run in it")
    return False


def clear_run(out: Path) -> None:
    """Delete the files of an earlier run in ``out`` (a forced new run); others stay."""
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)


def restore(out: Path, model: NeuralPGD, optimiser: torch.optim.Optimizer,
            schedule: torch.optim.lr_scheduler.LRScheduler,
            device: torch.device) -> tuple[int, float, dict]:
    """Load the run in ``out`` into ``model``, ``optimiser`` and ``schedule``.

    Returns the steps done, the training seconds so far and the last validation metrics.
    """
    loaded, meta = load_checkpoint(out / MODEL, device)
    if meta["architecture"] != architecture(model):
        raise NpgdError(f"--resume {out}: the run's architecture {meta['architecture']} "
                        f"differs from the config's {architecture(model)}")
    model.load_state_dict(loaded.state_dict())
    state = torch.load(out / STATE, map_location=device, weights_only=True)
    if len(state["optimiser"]["param_groups"]) != len(optimiser.param_groups):
        raise NpgdError(f"--resume {out}: its optimiser state predates train.alpha_lr (one "
                        f"parameter group); start a new run with train.init = "
                        f"'{out / MODEL}' instead")
    optimiser.load_state_dict(state["optimiser"])
    schedule.load_state_dict(state["schedule"])
    return int(state["step"]), float(state["seconds"]), meta.get("validation", {})


def initialise(model: NeuralPGD, init: str, alpha_init: float, device: torch.device) -> None:
    """Load the weights of ``init`` (a shipped model's name or a file) into ``model``.

    The network must be the same; a different data-consistency step starts from the config's
    ``alpha_init`` (the loaded step means something else), other missing step sizes from the
    model's own initial values.
    """
    loaded, meta = load_checkpoint(resolve_weights(init), device)
    if _network(meta["architecture"]) != _network(architecture(model)):
        raise NpgdError(f"train.init {init}: architecture {meta['architecture']} differs from "
                        f"the config's {architecture(model)}")
    keys = model.load_state_dict(loaded.state_dict(), strict=False)
    if set(keys.missing_keys + keys.unexpected_keys) - set(STEP_PARAMETERS):
        raise NpgdError(f"train.init {init}: weights do not match the network")
    if meta["architecture"]["data_consistency"] != model.data_consistency:
        with torch.no_grad():
            model.alpha_raw.fill_(float(torch.tensor(float(alpha_init)).expm1().log()))


def save(out: Path, config: Config, model: NeuralPGD, optimiser: torch.optim.Optimizer,
         schedule: torch.optim.lr_scheduler.LRScheduler, step: int, seconds: float,
         metrics: dict, device: torch.device) -> None:
    """Write ``model.safetensors`` (weights, metadata) and ``train_state.pt``."""
    data = config.data
    sr = data.operator == "block-average"
    meta = {
        "normalisation": NORMALISATION,
        "operator": "block-average-2x2" if sr else _operator_name(data.coil_range),
        "mask": None if sr else {"kind": data.mask, "accel": data.accel},
        "data": {"train": list(data.train), "validation": list(data.validation)},
        "steps": step,
        "batch_size": config.train.batch_size,
        "loss": {"name": "P2", "beta": config.train.beta},
        "validation": metrics,
        "train_seconds": round(seconds, 1),
        "hardware": describe_hardware(device),
        "config": config.as_dict(),
    }
    save_checkpoint(model, out / MODEL, meta)
    state = {"optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(),
             "step": step, "seconds": seconds}
    tmp = out / (STATE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, out / STATE)


def _network(arch: dict) -> dict:
    """An architecture without its data-consistency keys: what the weights depend on."""
    return {k: v for k, v in arch.items()
            if k not in ("data_consistency", "cg_iterations", "final_dc", "final_noise")}


def _operator_name(coils: tuple[int, int]) -> str:
    """The operator a model trained on ``coils`` (a range) saw, for its metadata."""
    low, high = coils
    if high == 1:
        return "cartesian-single-coil"
    return f"sense-{low}-coil" if low == high else f"sense-{low}-to-{high}-coil"

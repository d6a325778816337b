"""A run folder, ``RUN/``: what a training run writes, how it starts and how it is saved.

Files: ``model.safetensors`` (weights and metadata, :mod:`npgd_recon.models.checkpoint`),
``train_state.pt`` (optimiser, schedule, step, seconds: what ``--resume`` needs beside the
model; with ``train.ema`` also the trained weights, ``model.safetensors`` being their moving
average), ``log.csv`` (:mod:`npgd_recon.training.logger`) and, with ``train.keep_best``,
``best.safetensors`` (the model at its best validation SNR so far). Each checkpoint replaces
the state files atomically; every file follows the user's umask.

- :func:`check_run_folder`: a run goes into a new or empty folder; an existing non-empty one is
  refused (:class:`RunExistsError`) unless resumed (``resume``) or replaced (``force``).
- :func:`clear_run`: a new run in a used folder deletes the old run's files (and only those)
  once everything is ready to train, so a failure before that keeps them.
- :func:`restore`: continue the run in a folder (model, optimiser, schedule, step, seconds).
- :func:`initialise`: start from another model's weights (``train.init``, fine-tuning); the
  data-consistency step may differ, the network may not.
- :func:`save`: one checkpoint, with the metadata every model file carries.
- :func:`save_best`: the model, when its validation SNR beats the one ``best.safetensors``
  holds (so the best survives ``--resume``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from npgd_recon.core.device import describe_hardware
from npgd_recon.core.errors import NpgdError
from npgd_recon.core.transforms import NORMALISATION
from npgd_recon.models.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from npgd_recon.models.npgd import STEP_PARAMETERS, NeuralPGD, architecture
from npgd_recon.models.registry import resolve_weights
from npgd_recon.training.config import Config

__all__ = ["LOG", "MODEL", "RUN_FILES", "STATE", "RunExistsError", "check_run_folder",
           "clear_run", "initialise", "restore", "save", "save_best"]

MODEL, STATE, LOG, BEST = "model.safetensors", "train_state.pt", "log.csv", "best.safetensors"
RUN_FILES = (MODEL, STATE, LOG, BEST)


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
            schedule: torch.optim.lr_scheduler.LRScheduler, device: torch.device,
            average: NeuralPGD | None = None) -> tuple[int, float, dict]:
    """Load the run in ``out`` into ``model``, ``optimiser`` and ``schedule`` (and, for a
    ``train.ema`` run, ``average``: ``model.safetensors`` is then the average and the trained
    weights are in ``train_state.pt``).

    Returns the steps done, the training seconds so far and the last validation metrics.
    """
    loaded, meta = load_checkpoint(out / MODEL, device)
    if meta["architecture"] != architecture(model):
        raise NpgdError(f"--resume {out}: the run's architecture {meta['architecture']} "
                        f"differs from the config's {architecture(model)}")
    state = torch.load(out / STATE, map_location=device, weights_only=True)
    if (average is None) != ("weights" not in state):
        raise NpgdError(f"--resume {out}: train.ema must stay as the run started (on or off)")
    model.load_state_dict(state.get("weights", loaded.state_dict()))
    if average is not None:
        average.load_state_dict(loaded.state_dict())
    if len(state["optimiser"]["param_groups"]) != len(optimiser.param_groups):
        raise NpgdError(f"--resume {out}: its optimiser state predates train.alpha_lr (one "
                        f"parameter group); start a new run with train.init = "
                        f"'{out / MODEL}' instead")
    optimiser.load_state_dict(state["optimiser"])
    schedule.load_state_dict(state["schedule"])
    return int(state["step"]), float(state["seconds"]), meta.get("validation", {})


def initialise(model: NeuralPGD, init: str, alpha_init: float, device: torch.device) -> None:
    """Load the weights of ``init`` (a shipped model's name or a file) into ``model``.

    The network must be the same, except the number of unrolled iterations (the proximal and
    the step size are shared by all of them); a different data-consistency step starts from
    the config's
    ``alpha_init`` (the loaded step means something else), other missing step sizes from the
    model's own initial values. A ``noise_input`` model may start from the same network without
    it: its noise channel's weights start at zero, so it starts as ``init``. An ``untied`` model
    may start from the same network shared: every iteration's proximal starts as its proximal;
    from an untied one with at least as many iterations it keeps evenly spaced proximals (the
    first and the last among them), so a shorter unrolling starts from a longer one.
    """
    loaded, meta = load_checkpoint(resolve_weights(init), device)
    adds_noise = model.noise_input and not loaded.noise_input
    unties = model.untied and not loaded.untied
    theirs, ours = _network(meta["architecture"]), _network(architecture(model))
    if adds_noise:
        ours.pop("noise_input")
    if unties:
        ours.pop("untied")
    elif model.untied and loaded.iterations < model.iterations:
        raise NpgdError(f"train.init {init}: {loaded.iterations} untied proximals, the config "
                        f"has {model.iterations} iterations")
    if theirs != ours:
        raise NpgdError(f"train.init {init}: architecture {meta['architecture']} differs from "
                        f"the config's {architecture(model)}")
    state = loaded.state_dict()
    if adds_noise:
        head = state["prox.head.weight"]
        state["prox.head.weight"] = torch.cat([head, head.new_zeros(head.shape[0], 1,
                                                                    *head.shape[2:])], dim=1)
    if unties:  # prox.X -> prox.steps.t.X for every iteration t
        state = {new: value for key, value in state.items() for new in (
            [f"prox.steps.{t}.{key[5:]}" for t in range(model.iterations)]
            if key.startswith("prox.") else [key])}
    elif model.untied and loaded.iterations > model.iterations:  # keep evenly spaced ones
        kept = torch.linspace(0, loaded.iterations - 1, model.iterations).round().long()
        state = _keep_steps(state, kept.tolist())
    keys = model.load_state_dict(state, strict=False)
    if set(keys.missing_keys + keys.unexpected_keys) - set(STEP_PARAMETERS):
        raise NpgdError(f"train.init {init}: weights do not match the network")
    if meta["architecture"]["data_consistency"] != model.data_consistency:
        with torch.no_grad():
            model.alpha_raw.fill_(float(torch.tensor(float(alpha_init)).expm1().log()))


def _keep_steps(state: dict, kept: list[int]) -> dict:
    """``state`` with the proximal of iteration ``kept[t]`` as iteration ``t``
    (``prox.steps.s.X`` -> ``prox.steps.t.X``), the other iterations' dropped."""
    new = {s: t for t, s in enumerate(kept)}
    out = {}
    for key, value in state.items():
        if not key.startswith("prox.steps."):
            out[key] = value
            continue
        _, _, step, rest = key.split(".", 3)
        if int(step) in new:
            out[f"prox.steps.{new[int(step)]}.{rest}"] = value
    return out


def save(out: Path, config: Config, model: NeuralPGD, optimiser: torch.optim.Optimizer,
         schedule: torch.optim.lr_scheduler.LRScheduler, step: int, seconds: float,
         metrics: dict, device: torch.device, trained: NeuralPGD | None = None) -> None:
    """Write ``model.safetensors`` (``model``'s weights, metadata) and ``train_state.pt``
    (with ``trained``'s weights when ``model`` is their moving average, ``train.ema``)."""
    save_checkpoint(model, out / MODEL, _metadata(config, step, seconds, metrics, device))
    state = {"optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(),
             "step": step, "seconds": seconds}
    if trained is not None:
        state["weights"] = trained.state_dict()
    tmp = out / (STATE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, out / STATE)


def save_best(out: Path, config: Config, model: NeuralPGD, step: int, seconds: float,
              metrics: dict, device: torch.device) -> bool:
    """Write ``best.safetensors`` if ``metrics`` (just validated) beat the validation SNR of
    the one there (none: any). Returns whether it was written."""
    path = out / BEST
    if path.exists() and read_metadata(path)["validation"]["snr_db"] >= metrics["snr_db"]:
        return False
    save_checkpoint(model, path, _metadata(config, step, seconds, metrics, device))
    return True


def _metadata(config: Config, step: int, seconds: float, metrics: dict,
              device: torch.device) -> dict:
    """What a run's model file says besides its architecture."""
    data = config.data
    sr = data.operator == "block-average"
    return {
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


def _network(arch: dict) -> dict:
    """An architecture without its iteration count and data-consistency keys: what the weights
    depend on."""
    return {k: v for k, v in arch.items() if k not in (
        "iterations", "data_consistency", "cg_iterations", "final_dc", "final_noise")}


def _operator_name(coils: tuple[int, int]) -> str:
    """The operator a model trained on ``coils`` (a range) saw, for its metadata."""
    low, high = coils
    if high == 1:
        return "cartesian-single-coil"
    return f"sense-{low}-coil" if low == high else f"sense-{low}-to-{high}-coil"

"""Training configuration: TOML validated against the defaults, which live here and only here."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

DEFAULTS: dict = {
    "model": {
        "iterations": 10,
        "blocks": 1,
        "features": 128,
        "data_consistency": "gradient",
        "global_skip": True,
        "proximal": "resnet",
        "layers": 5,
        "kernel": 8,
        "alpha_init": 1.0,
        "cg_iterations": 8,  # conjugate-gradient steps per implicit step ("cg", final_dc)
        "final_dc": False,  # end with an implicit data-consistency step on x_T
        "final_noise": False,  # that step's alpha follows the measurement's noise level
        "sigma_init": 0.01,  # its initial sigma_0 (normalised noise std per k-space sample)
    },
    "data": {
        "operator": "cartesian",
        "coils": 1,  # a count, or [low, high]: a random count per batch
        "train": [{"kind": "phantom", "count": 1000}],
        "validation": [{"kind": "phantom", "count": 16, "seed": 12345}],
        "validation_slices": 16,
        "shape": [128, 128],
        "zoom": [0.55, 1.0],
        "mask": "vdrad",
        "accel": 5.0,
        "noise": [0.0, 0.02],
        "validation_noise": 0.01,
        "gamma": [1.0, 1.0],  # contrast augmentation (training.data.Augment), off by default:
        "invert": 0.0,  # random gamma range, inversion probability,
        "bias": 0.0,  # smooth bias-field strength
    },
    "train": {
        "steps": 10000,
        "batch_size": 4,
        "lr": 1e-4,
        "alpha_lr": 0.0,  # learning rate of the step sizes (alpha, final alpha, sigma_0); 0: lr
        "lr_halve_every": 10000,
        "beta": 0.75,
        "seed": 0,
        "checkpoint_every": 200,
        "validate_every": 200,
        "amp": True,
        "threads": 0,
        "workers": 0,  # DataLoader worker processes (0: batches made in the training process)
        "init": "",
        "max_seconds": 0,  # stop (validated, checkpointed) after this much training; 0: none
    },
}


def _merge(defaults: dict, given: dict, where: str) -> dict:
    merged = copy.deepcopy(defaults)
    for key, value in given.items():
        if key not in defaults:
            raise ValueError(f"unknown config key {where}{key!r}; known: {', '.join(defaults)}")
        if isinstance(defaults[key], dict):
            if not isinstance(value, dict):
                raise ValueError(f"config {where}{key!r} must be a table")
            merged[key] = _merge(defaults[key], value, f"{where}{key}.")
        else:
            if key == "coils" and isinstance(value, list):
                if (len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                               for v in value) or not 1 <= value[0] <= value[1]):
                    raise ValueError(f"config {where}coils must be a count or [low, high] with "
                                     f"1 <= low <= high, got {value!r}")
            elif isinstance(defaults[key], (int, float)) and not isinstance(value, (int, float)):
                raise ValueError(f"config {where}{key!r} must be a number, got {value!r}")
            merged[key] = value
    return merged


def load_config(path: str | Path | None) -> dict:
    """Read a TOML config (or ``None`` for the defaults) and fill in every default."""
    if path is None:
        return copy.deepcopy(DEFAULTS)
    try:
        given = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: invalid TOML ({error})") from None
    config = _merge(DEFAULTS, given, "")
    workers = config["train"]["workers"]
    if isinstance(workers, bool) or int(workers) != workers or workers < 0:
        raise ValueError(f"{path}: train.workers must be a whole number >= 0, got {workers!r}")
    return config

"""Choosing the torch device: ``auto`` is CUDA when a GPU is present, else the CPU."""

from __future__ import annotations

import os
import platform

import torch

from npgd_recon.core.errors import NpgdError


def pick_device(name: str = "auto", rank: int = 0) -> torch.device:
    """Resolve ``auto|cpu|cuda``; ``rank`` picks the GPU under torchrun.

    Raises:
        ValueError: an unknown name, or ``cuda`` without a GPU.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise NpgdError("device 'cuda' asked for, but no CUDA GPU is available")
        return torch.device("cuda", rank % torch.cuda.device_count())
    if name != "cpu":
        raise NpgdError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device("cpu")


def describe_hardware(device: torch.device) -> str:
    """One line for reports and model metadata: the GPU on CUDA, else CPU cores and threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return (f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} threads")

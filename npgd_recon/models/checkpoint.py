"""Model files: ``safetensors`` weights with the JSON metadata in the same file's header.

The metadata (``architecture``, ``normalisation``, operator, mask, data, steps, metrics, code
version) is stored under the header key ``"npgd"``. Loading parses JSON and tensors only; it
never unpickles or executes anything from the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from npgd_recon import __version__
from npgd_recon.core.errors import NpgdError
from npgd_recon.models.npgd import NeuralPGD, architecture


class CheckpointError(NpgdError):
    """A model file that is missing, corrupt, or does not match the architecture it names."""


def save_checkpoint(model: NeuralPGD, path: str | os.PathLike, metadata: dict) -> None:
    """Write weights + metadata atomically (temporary file, then rename). The architecture and
    code version are always the model's and this code's, whatever ``metadata`` holds. The file
    follows the umask like any other (``safetensors``' own ``save_file`` makes it 0600)."""
    path = Path(path)
    meta = {**metadata, "architecture": architecture(model), "code_version": __version__}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(safetensors_bytes(tensors, metadata={"npgd": json.dumps(meta)}))
    os.replace(tmp, path)


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON metadata of a model file, without loading the weights."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 0 < size < 100_000_000:
                raise ValueError("bad header length")
            header = json.loads(f.read(size))
        return json.loads(header["__metadata__"]["npgd"])
    except FileNotFoundError:
        raise CheckpointError(f"model file not found: {path}") from None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise CheckpointError(f"{path} is not an npgd-recon safetensors model file") from None


def load_checkpoint(path: str | os.PathLike,
                    device: str | torch.device = "cpu") -> tuple[NeuralPGD, dict]:
    """Rebuild the model a file describes and load its weights (eval mode)."""
    meta = read_metadata(path)
    try:
        model = NeuralPGD(**meta["architecture"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: invalid architecture in metadata ({error})") from None
    try:
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: corrupt weights ({error})") from None
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise CheckpointError(f"{path}: weights do not match the architecture ({first})") from None
    return model.to(device).eval(), meta

"""Shared fixtures and markers for the whole suite.

Markers (skip when the real tool is not installed; CI installs them all):
``needs_bart``, ``needs_dciodvfy``, ``needs_ismrmrd_tools``. Helpers: :func:`randc`.
:func:`save_tiny_model` (an untrained T=2, K=1, F=4 NPGD checkpoint for end-to-end runs).
Fixtures: ``raw`` (small simulated multi-slice and 3-D ISMRMRD files and a tiny model).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

needs_bart = pytest.mark.skipif(shutil.which("bart") is None, reason="bart binary not installed")
needs_dciodvfy = pytest.mark.skipif(shutil.which("dciodvfy") is None,
                                    reason="dicom3tools (dciodvfy) not installed")
needs_ismrmrd_tools = pytest.mark.skipif(
    shutil.which("ismrmrd_generate_cartesian_shepp_logan") is None,
    reason="ismrmrd-tools not installed")


def dciodvfy_findings(path: Path) -> list[str]:
    """dciodvfy's error and warning lines for one DICOM file (a clean file has none)."""
    import subprocess

    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (result.stdout + result.stderr).splitlines()
            if line.startswith(("Error", "Warning"))]


def randc(*shape: int, dtype: torch.dtype = torch.complex64) -> torch.Tensor:
    """A complex Gaussian tensor of ``shape``."""
    return torch.randn(*shape, dtype=dtype)


def perturbed(model: torch.nn.Module, scale: float = 0.1) -> torch.nn.Module:
    """``model`` with Gaussian noise (``scale``) added to every parameter, in eval mode: an
    untrained network whose last layer is no longer zero."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(scale * torch.randn_like(parameter))
    return model.eval()


def save_tiny_model(path: Path, iterations: int = 2, features: int = 4, **kwargs) -> Path:
    """Save an untrained ResNet-proximal NPGD model with the shipped normalisation rule."""
    from npgd_recon.core.transforms import NORMALISATION
    from npgd_recon.models.checkpoint import save_checkpoint
    from npgd_recon.models.npgd import NeuralPGD

    model = NeuralPGD(iterations=iterations, blocks=1, features=features, **kwargs).eval()
    save_checkpoint(model, path, {"normalisation": NORMALISATION})
    return path


@pytest.fixture(scope="session")
def raw(tmp_path_factory) -> Path:
    """``multislice.h5`` (npgd-simulate: 3 slices 48x40, 4 coils, noise readouts, readout
    oversampling), ``volume.h5`` (3-D 24x16x16, 2 coils), ``tiny.safetensors``."""
    from npgd_recon.cli.simulate import main as simulate

    root = tmp_path_factory.mktemp("server")
    assert simulate(["--phantom", "shepp-logan", "--matrix", "48x40", "--slices", "3",
                     "--coils", "4", "--noise", "0.01", "--noise-readouts", "8",
                     "--out", str(root / "multislice.h5")]) == 0
    assert simulate(["--phantom", "shepp-logan", "--3d", "--matrix", "24x16x16", "--coils", "2",
                     "--noise-readouts", "4", "--out", str(root / "volume.h5")]) == 0
    save_tiny_model(root / "tiny.safetensors")
    return root

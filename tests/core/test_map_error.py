"""The coil maps' model error told to the network as noise (npgd_recon.core.map_error)."""

import numpy as np
import pytest

from bart_baselines.noise import centre_box
from npgd_recon.core.errors import NpgdError
from npgd_recon.core.fft import fft2c
from npgd_recon.core.map_error import effective_noise_std, map_error_fraction
from npgd_recon.core.transforms import NORMALISATION
from npgd_recon.models.checkpoint import save_checkpoint
from npgd_recon.models.npgd import NeuralPGD
from npgd_recon.recon.base import ReconOptions
from npgd_recon.recon.methods import make_reconstructor
from sampling import vdrad

N, COILS = 64, 8


def _maps(rng, coils=COILS, sets=1):
    """Smooth maps ``[set, coil, y, x]``, orthonormal across sets at every pixel."""
    yy, xx = np.meshgrid(np.linspace(-1, 1, N), np.linspace(-1, 1, N), indexing="ij")
    basis = np.stack([np.exp(1j * np.pi * (a * yy + b * xx) / 2) * (1 + 0.3 * a * xx)
                      for a, b in rng.uniform(-1, 1, (coils, 2))])
    out = []
    for _ in range(sets):
        raw = np.einsum("cd,dyx->cyx", rng.standard_normal((coils, coils))
                        + 1j * rng.standard_normal((coils, coils)), basis)
        for prior in out:  # Gram-Schmidt at every pixel
            raw = raw - prior * (prior.conj() * raw).sum(0)
        out.append(raw / np.sqrt((np.abs(raw) ** 2).sum(0)))
    return np.stack(out).astype(np.complex64)


def _object(rng):
    yy, xx = np.meshgrid(np.linspace(-1, 1, N), np.linspace(-1, 1, N), indexing="ij")
    return ((np.hypot(yy, xx) < 0.7) * (1 + rng.uniform(0, 1) * yy)).astype(np.complex64)


def _scan(coil_images, noise, rng):
    mask = vdrad((N, N), 4.0, seed=1).mask.astype(np.float32)
    shape = coil_images.shape
    kspace = fft2c(coil_images) + noise * (rng.standard_normal(shape)
                                           + 1j * rng.standard_normal(shape)) / np.sqrt(2)
    return (kspace * mask)[None].astype(np.complex64), mask[None]


@pytest.mark.parametrize("noise", [0.0, 0.02])
def test_coil_images_the_maps_hold_have_no_error(noise):
    rng = np.random.default_rng(0)
    maps = _maps(rng)[0]
    kspace, mask = _scan(maps * _object(rng), noise, rng)
    """What is left is the centre's truncation (a blurred map times a blurred object is not
    the map times the blurred object): a tenth of a percent, against 10-50 % in the next test."""
    assert 0 <= map_error_fraction(kspace, mask, maps[None], noise)[0] < 0.005
    level = effective_noise_std(kspace, mask, maps[None], noise, weight=0.05)[0]
    rms = np.sqrt((np.abs(kspace) ** 2).sum() / mask.sum() / COILS)
    assert noise <= level < (1.05 * noise if noise else 0.01 * rms)


def test_the_error_is_the_share_a_second_set_holds_and_two_sets_hold_it():
    rng = np.random.default_rng(1)
    maps = _maps(rng, sets=2)
    first, second = _object(rng), 0.5 * np.roll(_object(rng), N // 3, axis=1)
    coils = maps[0] * first + maps[1] * second
    kspace, mask = _scan(coils, 0.0, rng)
    centre = np.zeros((N, N), bool)
    hy, hx = centre_box(mask[0] > 0)
    centre[N // 2 - hy:N // 2 + hy, N // 2 - hx:N // 2 + hx] = True
    share = ((np.abs(fft2c(maps[1] * second)[:, centre]) ** 2).sum()
             / (np.abs(fft2c(coils)[:, centre]) ** 2).sum())
    rho = map_error_fraction(kspace, mask, maps[None, 0], 0.0)[0]
    assert 0.1 < share and abs(rho - share) < 0.15 * share
    assert map_error_fraction(kspace, mask, maps[None], 0.0)[0] < 0.005  # the truncation
    quiet = effective_noise_std(kspace, mask, maps[None, 0], 0.01, weight=0.05)[0]
    louder = effective_noise_std(kspace, mask, maps[None, 0], 0.01, weight=0.2)[0]
    assert 0.01 < quiet < louder
    assert effective_noise_std(kspace, mask, maps[None, 0], 0.01, weight=0)[0] == 0.01


def test_one_coil_no_maps_or_no_calibration_centre_leave_the_level():
    rng = np.random.default_rng(2)
    image = _object(rng)
    kspace, mask = _scan(image[None], 0.01, rng)
    ones = np.ones((1, 1, N, N), np.complex64)
    assert map_error_fraction(kspace, mask, ones, 0.01)[0] == 0
    assert effective_noise_std(kspace, mask, None, 0.01)[0] == 0.01
    maps = _maps(rng)[0]
    kspace, _ = _scan(maps * image, 0.01, rng)
    sparse = np.zeros_like(mask)
    sparse[:, ::2] = 1  # no fully sampled centre
    assert map_error_fraction(kspace * sparse[:, None], sparse, maps[None], 0.01)[0] == 0


def test_the_network_is_told_the_level_per_slice(tmp_path):
    """A final-noise network gets each slice's effective level: the slice whose maps miss a
    third of the data is answered with less data consistency than with the thermal noise
    alone, the slice the maps hold changes ten times less; the weight is the reconstructor's
    option."""
    path = tmp_path / "m.safetensors"
    save_checkpoint(NeuralPGD(iterations=2, blocks=1, features=4, final_dc=True,
                              final_noise=True, alpha_init=20.0, sigma_init=0.01),
                    path, {"normalisation": NORMALISATION})
    rng = np.random.default_rng(3)
    maps = _maps(rng, sets=2)
    image = _object(rng)
    held, _ = _scan(maps[0] * image, 0.01, rng)
    missed, mask = _scan(maps[0] * image + maps[1] * np.roll(image, N // 3, axis=1), 0.01, rng)
    kspace, masks = np.concatenate([held, missed]), np.concatenate([mask, mask])
    one_set = np.stack([maps[0], maps[0]])
    on, off = (make_reconstructor("npgd", ReconOptions(weights=str(path), map_error=w))
               for w in (0.05, 0.0))
    with_error = on(kspace, masks, one_set, noise_std=0.01).images
    without = off(kspace, masks, one_set, noise_std=0.01).images
    change = [np.linalg.norm(a - b) / np.linalg.norm(b) for a, b in zip(with_error, without)]
    assert change[0] < 0.1 * change[1]

    def misfit(out):
        forward = fft2c(one_set[1] * out[None]) * masks[1]
        return np.linalg.norm(forward - kspace[1])

    assert misfit(with_error[1]) > 1.05 * misfit(without[1])
    with pytest.raises(NpgdError, match="error weight"):
        make_reconstructor("npgd", ReconOptions(weights=str(path), map_error=-1.0))

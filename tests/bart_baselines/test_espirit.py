"""Volumetric ESPIRiT (one ``bart ecalib`` per 3-D volume) against per-plane maps."""

import numpy as np
import pytest

from bart_baselines.cs import espirit_maps
from bart_baselines.espirit import OBJECT_KEPT, espirit_kernel, espirit_maps_volume, object_kept
from bart_baselines.runner import run_bart
from npgd_recon.core.fft import fft2c, ifft2c
from npgd_recon.core.metrics import snr_db_magnitude
from npgd_recon.sim.coils import synthetic_coil_maps
from npgd_recon.sim.phantoms import shepp_logan
from npgd_recon.sim.phase import smooth_phase
from sampling import make_mask
from tests.conftest import needs_bart

pytestmark = needs_bart
SHAPE = (16, 40, 36)  # [readout n, y, x]
CALIB = 20


def volume_object() -> np.ndarray:
    """A textured elliptic cylinder ``[n, y, x]`` along the whole readout (it touches both ends
    of the readout field of view), empty in the corners of every plane."""
    r, y, x = np.meshgrid(*(np.linspace(-1, 1, s) for s in SHAPE), indexing="ij")
    inside = (y / 0.75) ** 2 + (x / 0.7) ** 2 < 1
    texture = 1 + 0.3 * np.cos(5 * y + 3 * r) * np.sin(4 * x)
    return (inside * texture * np.exp(0.8j * y + 0.5j * r)).astype(np.complex64)


@pytest.fixture(scope="module")
def scan():
    """Hybrid-space stack ``[n, coil, y, x]`` (8 coils varying along all three axes, a little
    noise, 40 % of ``(y, x)`` sampled around a 20x20 centre), the object and the fully sampled
    coil images."""
    image = volume_object()
    coils = synthetic_coil_maps(8, SHAPE).transpose(1, 0, 2, 3) * image[:, None]
    rng = np.random.default_rng(3)
    noise = 1e-3 * (rng.standard_normal(coils.shape) + 1j * rng.standard_normal(coils.shape))
    full = fft2c(coils) + noise.astype(np.complex64)
    mask = rng.random(SHAPE[1:]) < 0.4
    centre = tuple(slice(s // 2 - CALIB // 2, s // 2 + CALIB // 2) for s in SHAPE[1:])
    mask[centre] = True
    return (full * mask).astype(np.complex64), image, ifft2c(full)


@pytest.fixture(scope="module")
def maps(scan):
    """Volumetric and per-plane maps of the scan."""
    kspace = scan[0]
    return espirit_maps_volume(kspace, threads=1), espirit_maps(kspace, stack=True, threads=1)


def on_object(image: np.ndarray) -> np.ndarray:
    """Voxels well inside the object (its edge, where supports may differ by a voxel, left
    out)."""
    y, x = np.meshgrid(*(np.linspace(-1, 1, s) for s in SHAPE[1:]), indexing="ij")
    return np.broadcast_to((y / 0.75) ** 2 + (x / 0.7) ** 2 < 0.8, image.shape)


def test_maps_are_unit_norm_over_coils_inside_and_zero_outside_in_the_stack_layout(scan, maps):
    volume = maps[0]
    assert volume.shape == (SHAPE[0], 8, *SHAPE[1:]) and volume.dtype == np.complex64
    assert np.isfinite(volume).all()
    norm = np.sqrt((np.abs(volume) ** 2).sum(axis=1))
    assert np.allclose(norm[norm > 0], 1, atol=1e-5)
    corners = np.zeros(SHAPE[1:], dtype=bool)
    corners[:4, :4] = corners[:4, -4:] = corners[-4:, :4] = corners[-4:, -4:] = True
    assert not np.any(volume[:, :, corners])  # no object there, no maps (nor per plane)
    assert not np.any(maps[1][:, :, corners])
    assert (norm[on_object(scan[1])] > 0).all()


def test_maps_span_the_per_plane_maps_coil_subspace_on_every_plane(scan, maps):
    """ESPIRiT maps are unique up to a phase per voxel, so the invariant is the projection
    ``P = s s^H``: ``|<s_volume, s_plane>|^2 = trace(P_volume P_plane)`` is 1 for the same
    subspace. Planes 0 and n-1 included: the object fills the readout field of view, which
    would wrap in an unpadded 3-D calibration."""
    volume, planes = maps
    agreement = np.abs((volume.conj() * planes).sum(axis=1))
    inside = on_object(scan[1])
    per_plane = [np.median(a[m]) for a, m in zip(agreement, inside)]
    assert min(per_plane) > 0.995, per_plane  # measured 0.9989; 0.41 unpadded
    assert np.percentile(agreement[inside], 1) > 0.98


def test_sense_combined_image_matches_the_one_with_per_plane_maps(scan, maps):
    _, image, coil_images = scan
    combined = [(m.conj() * coil_images).sum(axis=1) for m in maps]
    inside = on_object(image)
    assert snr_db_magnitude(combined[1] * inside, combined[0] * inside).min() > 40  # 59.5
    assert snr_db_magnitude(image * inside, combined[0] * inside).min() > 40  # 56.6


def test_a_single_plane_is_refused_with_a_pointer_to_the_stack_version(scan):
    with pytest.raises(ValueError, match=r"n >= 2.*espirit_maps"):
        espirit_maps_volume(scan[0][:1])
    with pytest.raises(ValueError, match=r"\[n, coil, y, x\]"):
        espirit_maps_volume(scan[0][0])


def test_k_space_without_a_fully_sampled_centre_is_refused(scan):
    kspace = scan[0].copy()
    ny, nx = SHAPE[1:]
    kspace[:, :, ny // 2 - 3:ny // 2 + 3:2] = 0  # every other row of the centre missing
    with pytest.raises(ValueError, match="no calibration region.*6x6 kernel"):
        espirit_maps_volume(kspace)


def test_a_two_position_readout_still_has_maps_over_the_object(scan):
    volume = espirit_maps_volume(scan[0][7:9], threads=1)
    norm = np.sqrt((np.abs(volume) ** 2).sum(axis=1))
    assert (norm[on_object(scan[1])[7:9]] > 0.999).all()


def test_lazy_maps_of_any_planes_equal_the_whole_array_and_read_only_the_centre(scan, maps):
    from bart_baselines.espirit import calibrate_volume

    class CentreOnly:
        """The stack, refusing any read beyond the 32x32 k-space centre the grid needs."""
        shape = scan[0].shape

        def __getitem__(self, key):
            assert all(k.stop - k.start <= 32 for k in key[2:]), key
            return scan[0][key]

    lazy = calibrate_volume(CentreOnly(), threads=1)
    assert lazy.shape == maps[0].shape and len(lazy) == SHAPE[0] and lazy.supported()
    for key in (slice(None), slice(3, 7), slice(0, 16, 5), slice(None, None, -1), 4, -1):
        np.testing.assert_array_equal(lazy[key], maps[0][key])
    np.testing.assert_array_equal(np.asarray(lazy), maps[0])
    with pytest.raises(TypeError, match="integer or a slice"):
        lazy[[0, 1]]


@pytest.mark.parametrize(("centre", "kernel"), [(0, 3), (6, 3), (8, 4), (10, 5), (12, 6),
                                                (24, 6), (40, 6)])
def test_first_kernel_is_bart_s_unless_the_calibration_centre_is_small(centre, kernel):
    sampled = np.zeros((64, 64), dtype=bool)
    sampled[32 - centre // 2:32 - centre // 2 + centre, 32 - centre // 2:32 + centre] = True
    assert espirit_kernel(sampled) == kernel


def test_object_kept_is_the_calibration_image_energy_inside_the_maps_support():
    shape = (32, 32)
    kspace = fft2c(synthetic_coil_maps(2, shape) * shepp_logan(shape)).astype(np.complex64)
    maps = np.ones((2, *shape), np.complex64)
    assert object_kept(kspace, maps) == pytest.approx(1.0)
    maps[:, :, 16:] = 0
    assert 0.3 < object_kept(kspace, maps) < 0.7  # half the object
    assert object_kept(kspace, np.zeros_like(maps)) == 0.0


def test_per_slice_maps_step_down_to_a_kernel_that_keeps_the_whole_object():
    """100x100 Shepp-Logan, 8 coils, a 13-line centre: BART's 6x6 kernel drops part of the
    object from the maps' support; espirit_maps steps down until it keeps it."""
    shape = (100, 100)
    image = shepp_logan(shape) * np.exp(1j * smooth_phase(shape, seed=1, strength=np.pi / 2))
    mask = make_mask("vdrad", shape, 5.0, seed=0, calib=(13, 13)).mask
    kspace = (fft2c(synthetic_coil_maps(8, shape) * image) * mask).astype(np.complex64)
    six = run_bart(["ecalib", "-m", "1", "-k", "6", "kspace", "maps"],
                   {"kspace": kspace.transpose(1, 2, 0)[:, :, None, :]}, ["maps"])["maps"]
    assert object_kept(kspace, np.moveaxis(six.reshape(*shape, 8), -1, 0)) < OBJECT_KEPT
    assert object_kept(kspace, espirit_maps(kspace)) >= OBJECT_KEPT


def test_per_slice_maps_of_a_small_calibration_centre_keep_the_whole_object():
    """64x64, 20 % VDRad with its default 6x6 centre, 8 coils: BART's default 6x6 kernel found
    no support at all (every pixel of the object lost); the kernel for the centre keeps it."""
    shape = (64, 64)
    image = shepp_logan(shape) * np.exp(1j * smooth_phase(shape, seed=1, strength=np.pi / 2))
    mask = make_mask("vdrad", shape, 5.0, seed=0).mask
    kspace = fft2c(synthetic_coil_maps(8, shape) * image) * mask
    support = (np.abs(espirit_maps(kspace.astype(np.complex64))) > 0).any(axis=0)
    energy = np.abs(image) ** 2
    assert energy[support].sum() >= 0.999 * energy.sum()

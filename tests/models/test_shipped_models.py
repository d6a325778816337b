"""The shipped models: they load offline, say what they are, and keep their quality on a
volume no model trained on (Colin27 from Debian's mricron-data, CI installs it)."""

from pathlib import Path

import numpy as np
import pytest

from bart_baselines import espirit_maps
from npgd_recon.analysis.evaluation import evaluate, retrospective, volume_test_slices
from npgd_recon.core.choices import MAP_ERROR_WEIGHT
from npgd_recon.core.fft import fft2c, ifft2c
from npgd_recon.core.metrics import snr_db_magnitude
from npgd_recon.models.checkpoint import load_checkpoint, read_metadata
from npgd_recon.models.registry import (
    CPU_DEFAULT,
    MULTI_DEFAULT,
    RESNET_CPU,
    SHARED_DEFAULT,
    SMALL_DEFAULT,
    SMALL_MATRIX,
    SMALL_MULTI,
    SMALL_SINGLE,
    SMALL_SINGLE_T20,
    SOFT_SMALL,
    UNTIED_T20,
    default_weights,
    resolve_weights,
    shipped_models,
)
from npgd_recon.recon.base import ReconOptions
from npgd_recon.recon.methods import make_reconstructor
from npgd_recon.sim.coils import synthetic_coil_maps
from npgd_recon.sim.noise import complex_noise
from sampling import make_mask
from sampling.pattern import multicoil_calib
from tests.conftest import needs_bart

COLIN27 = Path("/usr/share/mricron/templates/ch2.nii.gz")


@pytest.mark.parametrize("name", shipped_models())
def test_shipped_model_loads_with_its_metadata(name):
    model, meta = load_checkpoint(resolve_weights(name))
    for key in ("architecture", "normalisation", "steps", "validation", "hardware", "data",
                "train_seconds", "operator"):
        assert key in meta, key
    assert meta["architecture"]["iterations"] == model.iterations
    if meta["operator"] == "block-average-2x2":  # the super-resolution model of docs/analysis.md
        assert meta["architecture"]["proximal"] == "linear-swish"
    else:
        assert meta["mask"] == {"kind": "vdrad", "accel": 5.0}


def test_cpu_default_is_shipped_and_chosen_without_gpu():
    assert CPU_DEFAULT in shipped_models()
    assert default_weights("npgd", "cpu") == CPU_DEFAULT


def test_cpu_default_is_the_shared_network_untied_and_shortened():
    """The CPU default is SHARED_DEFAULT with one proximal per iteration and 16 iterations
    instead of 20 (fewer operations per slice): fine-tuned from UNTIED_T20 (SHARED_DEFAULT
    untied at its 20) on the same data, both selected at one coil (with a known coil count the
    routing gives it only single-coil planes above the small matrix)."""
    default, untied, shared = (read_metadata(resolve_weights(n))
                               for n in (CPU_DEFAULT, UNTIED_T20, SHARED_DEFAULT))
    assert default["architecture"] == {**shared["architecture"], "untied": True,
                                       "iterations": 16}
    assert untied["architecture"] == {**shared["architecture"], "untied": True}
    assert default["config"]["train"]["init"] == UNTIED_T20
    assert untied["config"]["train"]["init"] == SHARED_DEFAULT
    for meta in (default, untied):
        assert meta["data"]["train"] == shared["data"]["train"]
        assert meta["config"]["data"]["validation_coils"] == [1]


def test_small_planes_get_the_small_matrix_arm_and_only_npgd_does():
    assert SMALL_DEFAULT in shipped_models()
    for plane in [(SMALL_MATRIX, SMALL_MATRIX), (32, 64), (48, 40)]:
        assert default_weights("npgd", "cpu", plane) == SMALL_DEFAULT
    for plane in [(SMALL_MATRIX, SMALL_MATRIX + 2), (SMALL_MATRIX + 2, 8), (192, 160)]:
        assert default_weights("npgd", "cpu", plane) == CPU_DEFAULT
    assert default_weights("resnet", "cpu", (48, 40)) == RESNET_CPU
    assert default_weights("npgd", "cpu", (48, 40), coils=8) == SMALL_MULTI
    # the arm is the shared network the default was untied from, unrolled longer, trained on the
    # same data
    small, shared = (read_metadata(resolve_weights(n)) for n in (SMALL_DEFAULT, SHARED_DEFAULT))
    assert small["architecture"] == {**shared["architecture"], "iterations": 25}
    assert small["data"]["train"] == shared["data"]["train"]


def test_single_coil_small_planes_get_the_untied_small_arm():
    """Small planes known to have one coil get the small arm with 16 untied proximals, fine-tuned
    from the same arm at 20 (itself from the shared small arm) on single-coil 64x64 problems and
    selected at one coil; an unknown count keeps the shared small arm (trained on 1-16 coils),
    larger planes the default."""
    assert SMALL_SINGLE in shipped_models()
    for plane in [(SMALL_MATRIX, SMALL_MATRIX), (48, 40)]:
        assert default_weights("npgd", "cpu", plane, 1) == SMALL_SINGLE
        assert default_weights("npgd", "cpu", plane, None) == SMALL_DEFAULT
    assert default_weights("npgd", "cpu", (192, 160), 1) == CPU_DEFAULT
    assert default_weights("resnet", "cpu", (48, 40), 1) == RESNET_CPU
    arm, longer, small = (read_metadata(resolve_weights(n))
                          for n in (SMALL_SINGLE, SMALL_SINGLE_T20, SMALL_DEFAULT))
    assert arm["architecture"] == {**small["architecture"], "iterations": 16, "untied": True}
    assert longer["architecture"] == {**small["architecture"], "iterations": 20, "untied": True}
    assert arm["config"]["train"]["init"] == SMALL_SINGLE_T20
    assert longer["config"]["train"]["init"] == SMALL_DEFAULT
    for meta in (arm, longer):
        assert meta["data"]["train"] == small["data"]["train"]
        assert meta["config"]["data"]["coils"] == 1
        assert meta["config"]["data"]["validation_coils"] == [1]


def test_multi_coil_planes_above_the_small_matrix_get_the_multi_coil_arm():
    """Larger multi-coil planes get the default's multi-coil arm: the same architecture and
    data, fine-tuned on 2-16 coils only; one coil, an unknown count or an unknown plane with
    one coil keep the default."""
    assert MULTI_DEFAULT in shipped_models()
    for coils in (2, 8, 16):
        assert default_weights("npgd", "cpu", (192, 160), coils) == MULTI_DEFAULT
        assert default_weights("npgd", "cpu", None, coils) == MULTI_DEFAULT
    for coils in (1, None):
        assert default_weights("npgd", "cpu", (192, 160), coils) == CPU_DEFAULT
    assert default_weights("resnet", "cpu", (192, 160), 8) == RESNET_CPU
    multi, shared = (read_metadata(resolve_weights(n)) for n in (MULTI_DEFAULT, SHARED_DEFAULT))
    assert multi["architecture"] == shared["architecture"]
    assert multi["data"]["train"] == shared["data"]["train"]
    assert multi["config"]["data"]["coils"] == [2, 16]


def test_two_map_sets_on_small_multi_coil_planes_get_the_soft_sense_arm():
    """Soft SENSE (two sets of maps) on multi-coil planes up to the small matrix gets the small
    arm fine-tuned on two-set problems; one set, one coil or a larger plane keep their
    models."""
    assert SOFT_SMALL in shipped_models()
    for plane in [(SMALL_MATRIX, SMALL_MATRIX), (48, 40)]:
        assert default_weights("npgd", "cpu", plane, 8, map_sets=2) == SOFT_SMALL
        assert default_weights("npgd", "cpu", plane, 8) == SMALL_MULTI
        assert default_weights("npgd", "cpu", plane, 1, map_sets=2) == SMALL_SINGLE
    assert default_weights("npgd", "cpu", (192, 160), 8, map_sets=2) == MULTI_DEFAULT
    assert default_weights("resnet", "cpu", (48, 40), 8, map_sets=2) == RESNET_CPU
    soft, small = (read_metadata(resolve_weights(n)) for n in (SOFT_SMALL, SMALL_DEFAULT))
    assert soft["architecture"] == small["architecture"]
    assert soft["config"]["data"]["map_sets"] == 2


def test_small_multi_coil_planes_get_the_arm_trained_on_the_maps_error():
    """Multi-coil planes up to the small matrix with one set of maps get the small arm (its
    proximals untied) fine-tuned on 2-16 coil problems whose noise input counts the maps' error as
    ``npgd-recon`` does (``data.map_error`` = :data:`MAP_ERROR_WEIGHT`); one coil or an unknown
    count keep their small arms, larger planes the multi-coil arm."""
    assert SMALL_MULTI in shipped_models()
    for plane in [(SMALL_MATRIX, SMALL_MATRIX), (48, 40)]:
        for coils in (2, 8, 16):
            assert default_weights("npgd", "cpu", plane, coils) == SMALL_MULTI
        assert default_weights("npgd", "cpu", plane, 1) == SMALL_SINGLE
        assert default_weights("npgd", "cpu", plane, None) == SMALL_DEFAULT
    assert default_weights("npgd", "cpu", (192, 160), 8) == MULTI_DEFAULT
    arm, small = (read_metadata(resolve_weights(n)) for n in (SMALL_MULTI, SMALL_DEFAULT))
    assert arm["architecture"] == {**small["architecture"], "untied": True}
    # untied from the shared arm fine-tuned the same way, which stays shipped by name
    shared = read_metadata(resolve_weights(arm["config"]["train"]["init"]))
    assert shared["architecture"] == small["architecture"]
    assert shared["config"]["data"]["map_error"] == MAP_ERROR_WEIGHT
    data = arm["config"]["data"]
    assert data["map_error"] == MAP_ERROR_WEIGHT and data["maps"] == "espirit"
    assert data["coils"] == [2, 16]


@pytest.mark.skipif(not COLIN27.exists(), reason="mricron-data not installed")
def test_default_model_snr_floor_on_a_held_out_volume():
    """20 % VDRad, 1 % k-space noise, four axial Colin27 slices: the shipped CPU default must
    stay well above zero filling (measured at shipping: +5.5 dB mean, 24.7 dB, SSIM 0.90)."""
    images = volume_test_slices(str(COLIN27), 4, axis=2, seed=3)
    kspace, masks = retrospective(images, 5.0, seed=100, noise=0.01)
    methods = [make_reconstructor("zerofill"),
               make_reconstructor("npgd", ReconOptions(device="cpu"))]
    records, _ = evaluate(images, kspace, masks, None, methods, progress=False)
    zf = np.array([r["snr_db"] for r in records if r["method"] == "zerofill"])
    net = np.array([r["snr_db"] for r in records if r["method"] == "npgd"])
    zf_ssim = np.mean([r["ssim"] for r in records if r["method"] == "zerofill"])
    net_ssim = np.mean([r["ssim"] for r in records if r["method"] == "npgd"])
    assert net.mean() > 22.0
    assert (net - zf).mean() > 4.0 and np.all(net > zf + 2.0)
    assert net_ssim > zf_ssim + 0.1


@pytest.mark.skipif(not COLIN27.exists(), reason="mricron-data not installed")
def test_small_matrix_arm_snr_floor_on_held_out_small_planes():
    """The same protocol on Colin27 slices shrunk to 52x64 (the routing a 64x64 scan gets):
    the small-matrix arm stays well above zero filling and not below the default there
    (measured at shipping: 15.14 dB against the default's 15.07 and zero filling's 11.80,
    every slice at least +2.99 dB over zero filling, SSIM 0.79 against 0.65)."""
    images = volume_test_slices(str(COLIN27), 4, axis=2, seed=3, max_size=SMALL_MATRIX)
    assert max(images.shape[1:]) <= SMALL_MATRIX
    kspace, masks = retrospective(images, 5.0, seed=100, noise=0.01)
    routed = make_reconstructor("npgd", ReconOptions(device="cpu", plane=images.shape[1:]))
    assert routed.model_name == SMALL_DEFAULT
    records, _ = evaluate(images, kspace, masks, None, [make_reconstructor("zerofill"), routed],
                          progress=False)
    default, _ = evaluate(images, kspace, masks, None,
                          [make_reconstructor("npgd", ReconOptions(device="cpu"))], progress=False)
    zf = np.array([r["snr_db"] for r in records if r["method"] == "zerofill"])
    net = np.array([r["snr_db"] for r in records if r["method"] == "npgd"])
    assert (net - zf).mean() > 3.0 and np.all(net > zf + 2.5)
    assert np.mean([r["ssim"] for r in records if r["method"] == "npgd"]) > (
        np.mean([r["ssim"] for r in records if r["method"] == "zerofill"]) + 0.1)
    assert net.mean() > np.mean([r["snr_db"] for r in default]) - 0.3


@pytest.mark.skipif(not COLIN27.exists(), reason="mricron-data not installed")
def test_single_coil_small_arm_beats_the_shared_small_arm_on_held_out_small_planes():
    """The small arm's protocol with the coil count known to be one (what ``npgd-recon`` passes
    for a single-coil file): the untied small arm runs and is above the shared small arm on
    every slice (measured at shipping: 16.23 dB against 15.14, zero filling 11.80; SSIM 0.845
    against 0.794 at 20 iterations; 16.11 and 0.836 at 16), with 16 iterations instead of 25."""
    images = volume_test_slices(str(COLIN27), 4, axis=2, seed=3, max_size=SMALL_MATRIX)
    kspace, masks = retrospective(images, 5.0, seed=100, noise=0.01)
    routed = make_reconstructor("npgd", ReconOptions(device="cpu", plane=images.shape[1:],
                                                     coils=1))
    assert routed.model_name == SMALL_SINGLE and routed.model.iterations == 16
    shared = make_reconstructor("npgd", ReconOptions(device="cpu", weights=SMALL_DEFAULT))
    records, _ = evaluate(images, kspace, masks, None, [routed], progress=False)
    baseline, _ = evaluate(images, kspace, masks, None, [shared], progress=False)
    arm = np.array([r["snr_db"] for r in records])
    small = np.array([r["snr_db"] for r in baseline])
    assert arm.mean() > small.mean() + 0.5 and np.all(arm > small)
    assert np.mean([r["ssim"] for r in records]) > np.mean([r["ssim"] for r in baseline])


@needs_bart
@pytest.mark.skipif(not COLIN27.exists(), reason="mricron-data not installed")
def test_small_multi_coil_arm_snr_floor_on_held_out_small_planes():
    """Four Colin27 slices shrunk to 52x64 through 8 birdcage coils, 0.3 % noise, 5x VDRad with
    the multi-coil calibration centre, ESPIRiT maps of the undersampled k-space (as
    ``npgd-recon`` poses them), against the full scan seen through those maps: the small
    multi-coil arm stays far above zero filling and, on this brain inside the field of view
    (where the maps' error it was fine-tuned on is small), close to the small arm (measured at
    shipping: 20.52 dB against the small arm's 20.71 and zero filling's 13.16; its proximals
    untied, 20.58)."""
    images = volume_test_slices(str(COLIN27), 4, axis=2, seed=3, max_size=SMALL_MATRIX)
    shape = images.shape[1:]
    coils = synthetic_coil_maps(8, shape)[None] * images[:, None]
    sigma = 0.003 * np.abs(images).max()
    full = fft2c(coils) + complex_noise(np.random.default_rng(0), coils.shape, sigma)
    masks = np.stack([make_mask("vdrad", shape, 5.0, seed=100 + i,
                                calib=multicoil_calib(shape)).mask
                      for i in range(len(images))]).astype(np.float32)
    kspace = (full * masks[:, None]).astype(np.complex64)
    maps = espirit_maps(kspace, stack=True)
    reference = np.abs((maps.conj() * ifft2c(full)).sum(axis=1))

    def snr(recon):
        return snr_db_magnitude(reference, np.abs(recon(kspace, masks, maps, sigma).images))

    routed = make_reconstructor("npgd", ReconOptions(device="cpu", plane=shape, coils=8))
    assert routed.model_name == SMALL_MULTI
    arm, zf = snr(routed), snr(make_reconstructor("zerofill"))
    small = snr(make_reconstructor("npgd", ReconOptions(device="cpu", weights=SMALL_DEFAULT)))
    assert arm.mean() > zf.mean() + 6.0 and np.all(arm > zf + 5.0)
    assert arm.mean() > small.mean() - 0.3

"""Reconstructors: one interface, same operator; zero filling, network, CS through BART."""


import numpy as np
import pytest
import torch

from npgd_recon.core.choices import DEFAULT_BATCH
from npgd_recon.core.errors import NpgdError
from npgd_recon.core.fft import fft2c
from npgd_recon.core.metrics import snr_db_magnitude
from npgd_recon.core.transforms import NORMALISATION
from npgd_recon.models.checkpoint import save_checkpoint
from npgd_recon.models.npgd import NeuralPGD
from npgd_recon.models.registry import resolve_weights
from npgd_recon.recon.base import RECONSTRUCTORS, ReconOptions, ReconResult
from npgd_recon.recon.methods import METHODS, make_reconstructor, reconstructor_class
from sampling import vdrad
from tests.conftest import needs_bart, needs_ismrmrd_tools


def disc_phantom(n=48, m=40):
    yy, xx = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, m), indexing="ij")
    image = (yy**2 + xx**2 < 0.6).astype(float) + 0.5 * ((yy - 0.2) ** 2 + xx**2 < 0.05)
    return (image * np.exp(0.5j * yy)).astype(np.complex64)


def problems(n=3, coils=1):
    image = disc_phantom()
    masks = np.stack([vdrad(image.shape, 3.0, seed=s).mask for s in range(n)])
    if coils == 1:
        maps = None
        kspace = (fft2c(np.repeat(image[None], n, 0)) * masks)[:, None]
    else:
        yy = np.linspace(-1, 1, image.shape[0])[:, None]
        raw = np.stack([np.exp(1j * c * yy) * (1 + 0.5 * c * yy) + 0 * image
                        for c in range(coils)])
        maps = (raw / np.sqrt((np.abs(raw) ** 2).sum(0))).astype(np.complex64)
        maps = np.repeat(maps[None], n, 0)
        kspace = fft2c(maps * image) * masks[:, None]
    return image, kspace.astype(np.complex64), masks, maps


@pytest.mark.parametrize("coils", [1, 4])
def test_zerofill_is_the_adjoint_and_keeps_scale(coils):
    image, kspace, masks, maps = problems(coils=coils)
    recon = make_reconstructor("zerofill")
    out = recon(kspace, masks, maps).images
    assert out.shape == (3, *image.shape)
    full = np.ones_like(masks)
    np.testing.assert_allclose(recon(fft2c(np.broadcast_to(image, (3, *image.shape)))[:, None]
                                     if maps is None else fft2c(maps * image), full,
                                     maps).images,
                               np.broadcast_to(image, out.shape), atol=1e-4)


def test_a_call_returns_its_own_time_and_leaves_the_reconstructor_unchanged():
    _, kspace, masks, maps = problems()
    recon = make_reconstructor("zerofill")
    before = dict(vars(recon))
    first, second = recon(kspace, masks, maps), recon(kspace, masks, maps)
    assert isinstance(first, ReconResult) and first.images.dtype == np.complex64
    assert first.seconds > 0 and second.seconds > 0
    assert vars(recon) == before


@pytest.mark.parametrize("coils", [1, 4])
def test_untrained_network_is_gradient_descent_in_the_data_scale(tmp_path, coils):
    """An untrained NPGD (identity proximal) is plain gradient descent with alpha = 1, in the
    data's own scale whatever that is: single coil, the zero-filled image is its fixed point;
    multi-coil (SENSE), it improves on zero filling."""
    path = tmp_path / "m.safetensors"
    save_checkpoint(NeuralPGD(iterations=10, blocks=1, features=4), path,
                    {"normalisation": NORMALISATION})
    image, kspace, masks, maps = problems(coils=coils)
    recon = make_reconstructor("npgd", ReconOptions(weights=str(path), batch=2))
    for factor in (1.0, 1000.0):
        out = recon(kspace * factor, masks, maps).images
        zf = make_reconstructor("zerofill")(kspace * factor, masks, maps).images
        target = np.broadcast_to(image * factor, out.shape)
        if coils == 1:
            np.testing.assert_allclose(out, zf, atol=1e-5 * factor)
        else:
            assert np.all(snr_db_magnitude(target, out) > snr_db_magnitude(target, zf) + 1)


def test_a_final_noise_network_gets_the_noise_level_known_or_estimated(tmp_path):
    """The reconstructor hands a ``final_noise`` model the noise std per sample in the model's
    units (the file's, over the normalisation scale), estimated from the data when unknown: a
    noisier level makes a less data-consistent output, and ``None`` is the estimate's."""
    from bart_baselines.noise import estimate_noise_std

    path = tmp_path / "m.safetensors"
    save_checkpoint(NeuralPGD(iterations=2, blocks=1, features=4, final_dc=True,
                              final_noise=True, alpha_init=20.0, sigma_init=0.01),
                    path, {"normalisation": NORMALISATION})
    image, kspace, masks, maps = problems(coils=4)
    rng = np.random.default_rng(0)
    noisy = (kspace + 0.05 * (rng.standard_normal(kspace.shape)
                              + 1j * rng.standard_normal(kspace.shape)) * masks[:, None])
    noisy = noisy.astype(np.complex64)
    recon = make_reconstructor("npgd", ReconOptions(weights=str(path)))

    def mismatch(out):  # relative distance of the output's k-space from the data
        forward = fft2c(maps * out[:, None]) * masks[:, None]
        return np.linalg.norm(forward - noisy) / np.linalg.norm(noisy)

    quiet, loud = (recon(noisy, masks, maps, noise_std=s).images for s in (1e-6, 1.0))
    assert mismatch(quiet) < 0.5 * mismatch(loud)
    estimate = estimate_noise_std(noisy, masks)
    assert 0.035 < estimate < 0.3  # the complex std is 0.05 sqrt(2)
    np.testing.assert_allclose(recon(noisy, masks, maps).images,
                               recon(noisy, masks, maps, noise_std=estimate).images, atol=1e-6)


@needs_bart
def test_cs_methods_through_bart_beat_zero_filling():
    image, kspace, masks, maps = problems(n=2, coils=4)
    zf = make_reconstructor("zerofill")(kspace, masks, maps).images
    target = np.broadcast_to(image, zf.shape)
    for method in ("cswv", "cstv"):
        out = make_reconstructor(method)(kspace, masks, maps).images
        assert np.all(snr_db_magnitude(target, out) > snr_db_magnitude(target, zf) + 2), method


def test_every_method_name_has_its_class():
    assert {reconstructor_class(m).method for m in METHODS} == set(METHODS)
    assert set(RECONSTRUCTORS) == set(METHODS)


def test_bad_arguments_are_user_errors():
    with pytest.raises(NpgdError, match="unknown method"):
        make_reconstructor("magic")
    with pytest.raises(NpgdError, match="unknown model"):
        resolve_weights("no-such-model")
    if not torch.cuda.is_available():
        with pytest.raises(NpgdError, match="no CUDA GPU"):
            make_reconstructor("zerofill", ReconOptions(device="cuda"))
        with pytest.raises(NpgdError, match="fp16 needs a CUDA device"):
            make_reconstructor("npgd", ReconOptions(device="cpu", precision="fp16"))
    with pytest.raises(NpgdError, match="coil maps"):
        make_reconstructor("zerofill")(np.zeros((1, 2, 8, 8), np.complex64),
                                       np.ones((1, 8, 8), bool))
    with pytest.raises(NpgdError, match="batch"):
        make_reconstructor("zerofill", ReconOptions(batch=0))
    with pytest.raises(NpgdError, match="lambda must be positive"):
        make_reconstructor("cswv", ReconOptions(lam=-1.0))


def test_a_network_method_refuses_the_other_methods_model(tmp_path):
    """The stored architecture says which method a model is: one iteration is the deep ResNet,
    more are NPGD. A mismatch is one line naming the model and both methods, never a result
    labelled with the wrong method."""
    unrolled, one_pass = tmp_path / "unrolled.safetensors", tmp_path / "one-pass.safetensors"
    save_checkpoint(NeuralPGD(iterations=2, blocks=1, features=4), unrolled,
                    {"normalisation": NORMALISATION})
    save_checkpoint(NeuralPGD(iterations=1, blocks=2, features=4), one_pass,
                    {"normalisation": NORMALISATION})
    for method, wrong, right in (("resnet", unrolled, one_pass), ("npgd", one_pass, unrolled)):
        with pytest.raises(NpgdError) as refused:
            make_reconstructor(method, ReconOptions(weights=str(wrong), device="cpu"))
        message = str(refused.value)
        other = "npgd" if method == "resnet" else "resnet"
        assert "\n" not in message and str(wrong) in message
        assert f"method {method} needs" in message and f"run it as method {other}" in message
        recon = make_reconstructor(method, ReconOptions(weights=str(right), device="cpu"))
        assert recon.method == method and recon.model_name == str(right)
    for method in ("npgd", "resnet"):  # the shipped defaults are what their method says
        assert make_reconstructor(method, ReconOptions(device="cpu")).method == method


def test_the_default_batch_is_the_shared_default():
    assert ReconOptions().batch == DEFAULT_BATCH
    assert make_reconstructor("zerofill").batch == DEFAULT_BATCH


def test_a_call_holds_at_most_max_coil_planes_coil_images_and_cs_the_whole_volume():
    from npgd_recon.core.choices import MAX_COIL_PLANES

    recon = make_reconstructor("zerofill", ReconOptions(batch=16))
    assert recon.chunk(100) == recon.chunk(100, MAX_COIL_PLANES // 16) == 16
    assert recon.chunk(100, 32) == MAX_COIL_PLANES // 32
    assert recon.chunk(100, 4 * MAX_COIL_PLANES) == 1
    assert make_reconstructor("cswv").chunk(100, 32) == 100


def test_cpu_network_calls_keep_their_largest_tensor_within_the_budget():
    """On the CPU a call's widest activation (F=32: 64 bytes a pixel in bf16, 128 in fp32) or
    its complex64 coil images stay within CPU_CALL_BYTES; a GPU takes --batch as it is."""
    from npgd_recon.core.choices import CPU_CALL_BYTES
    from npgd_recon.recon.network import NPGDReconstructor

    def recon(precision, device="cpu", batch=8):
        built = make_reconstructor("npgd", ReconOptions(device="cpu", batch=batch,
                                                        precision=precision))
        return NPGDReconstructor(torch.device(device), built.model, built.meta, "", batch,
                                 precision)

    assert recon("bf16").network_batch((192, 160), 8) == CPU_CALL_BYTES // (192 * 160 * 64) == 2
    assert recon("fp32").network_batch((192, 160), 8) == 1
    assert recon("bf16").network_batch((192, 160), 32) == 1  # 256 bytes of coil images a pixel
    assert recon("fp32").network_batch((32, 32), 1) == 8  # small planes: --batch decides
    assert recon("fp32", batch=3).network_batch((32, 32), 1) == 3
    assert recon("fp32").network_batch((4096, 4096), 1) == 1  # never fewer than one
    assert recon("bf16", device="cuda").network_batch((192, 160), 32) == 8


def test_network_output_does_not_depend_on_how_problems_are_batched():
    _, kspace, mask, maps = problems(n=5, coils=4)
    outputs = [make_reconstructor("npgd", ReconOptions(device="cpu", batch=b, precision="fp32"))(
        kspace, mask, maps, 1.0).images for b in (1, 2, 5)]
    for other in outputs[1:]:
        np.testing.assert_allclose(other, outputs[0], rtol=0, atol=1e-5 * np.abs(outputs[0]).max())


@needs_bart
@needs_ismrmrd_tools
def test_automatic_cs_lambda_never_returns_noise(tmp_path):
    """The newcomer's case: an 8-coil Shepp-Logan without noise readouts, 5x VDRad. The
    data-driven lambda must beat zero filling clearly and stay near the best of a lambda grid."""
    import subprocess

    from npgd_recon.io.ismrmrd_file import read_raw
    from npgd_recon.recon.pipeline import espirit_coil_maps, undersample

    path = tmp_path / "sl.h5"
    subprocess.run(["ismrmrd_generate_cartesian_shepp_logan", "-m", "64", "-c", "8", "-o",
                    str(path)], check=True, capture_output=True)
    volume = read_raw(path).volumes[0]
    kspace, mask = undersample(volume, 5.0)
    maps = espirit_coil_maps(kspace)
    reference = make_reconstructor("zerofill")(volume.kspace, np.ascontiguousarray(volume.mask),
                                               maps).images
    zero = snr_db_magnitude(reference, make_reconstructor("zerofill")(kspace, mask, maps).images)
    # measured misses of the automatic lambda without noise readouts: docs/bart_baselines.md
    for method, tolerance in (("cswv", 1.5), ("cstv", 4.0)):
        auto = snr_db_magnitude(reference, make_reconstructor(method)(kspace, mask, maps).images)
        grid = max(snr_db_magnitude(reference, make_reconstructor(method, ReconOptions(lam=lam))(
            kspace, mask, maps).images) for lam in (1e-3, 1e-2, 1e-1))
        assert auto > zero + 3 and auto > grid - tolerance, (method, auto, zero, grid)

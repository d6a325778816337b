"""CS-WV / CS-TV through the real bart binary: conventions, quality, stacks, coils, tuning."""


import numpy as np
import pytest

from bart_baselines import cs, cs_tv, cs_wavelet, run_bart, tune_lambda, tuning
from bart_baselines import noise as noise_level
from npgd_recon.core.fft import fft2c, ifft2c
from npgd_recon.core.metrics import snr_db_complex, snr_db_magnitude
from sampling import vdrad
from tests.conftest import needs_bart

pytestmark = needs_bart
METHODS = [cs_wavelet, cs_tv]


def phantom(options: tuple[str, ...] = (), n: int = 64, width: int | None = None) -> np.ndarray:
    """A ``bart phantom`` image ``[n, width]`` with a smooth phase, an off-centre marker (so a
    flip or transpose cannot pass) and an arbitrary scale."""
    image = np.abs(run_bart(["phantom", "-x", str(n), *options, "p"], outputs=["p"])["p"])
    width = width or n
    image = image[:, (n - width) // 2:(n - width) // 2 + width] / image.max()
    image[4:10, 3:7] += 0.5
    y, x = np.mgrid[-1:1:n * 1j, -1:1:width * 1j]
    return (7.0 * image * np.exp(1j * (1.2 * y + 0.8 * x ** 2))).astype(np.complex64)


def coil_maps(n: int = 64, width: int = 48) -> np.ndarray:
    """Four BART phantom coil maps ``[coil, y, x]`` normalised to unit sum of squares."""
    maps = run_bart(["phantom", "-x", str(n), "-S", "4", "s"], outputs=["s"])["s"]
    maps = maps.reshape(n, n, 4).transpose(2, 0, 1)[:, :, (n - width) // 2:(n + width) // 2]
    return (maps / np.sqrt((np.abs(maps) ** 2).sum(axis=0))).astype(np.complex64)


@pytest.fixture(scope="module")
def image():
    return phantom(width=48)


@pytest.fixture(scope="module")
def mask():
    return vdrad((64, 48), 5.0, seed=1).mask


@pytest.mark.parametrize("reconstruct", METHODS)
def test_full_sampling_tiny_lambda_is_the_inverse_fft(image, reconstruct):
    kspace = fft2c(image)
    result = reconstruct(kspace, np.ones(image.shape), lam=1e-7, iters=40, threads=1)
    assert result.shape == image.shape and result.dtype == np.complex64
    assert snr_db_complex(ifft2c(kspace), result) > 60


@pytest.mark.parametrize("reconstruct", METHODS)
def test_multi_coil_full_sampling_is_the_coil_combined_adjoint(image, reconstruct):
    maps = coil_maps()
    kspace = fft2c(maps * image)
    adjoint = (np.conj(maps) * ifft2c(kspace)).sum(axis=0)
    result = reconstruct(kspace, np.ones(image.shape), sens=maps, lam=1e-7, iters=40)
    assert snr_db_complex(adjoint, result) > 60


@pytest.mark.parametrize("reconstruct", METHODS)
def test_scale_and_mask_from_samples(image, mask, reconstruct):
    kspace = fft2c(image) * mask
    result = reconstruct(kspace, mask, iters=30)
    np.testing.assert_allclose(reconstruct(kspace, None, iters=30), result, rtol=0, atol=1e-6)
    scaled = reconstruct(1e3 * kspace, mask, iters=30)
    assert snr_db_complex(1e3 * result, scaled) > 80


@pytest.mark.parametrize("reconstruct", METHODS)
def test_cs_beats_zero_filling_on_an_undersampled_phantom(reconstruct):
    truth = phantom(n=96, width=64)
    mask = vdrad(truth.shape, 5.0, seed=3).mask
    kspace = fft2c(truth) * mask
    zero_filled = snr_db_magnitude(truth, ifft2c(kspace))
    # automatic lambda; noiseless phantoms are its hardest case (docs/bart_baselines.md)
    assert snr_db_magnitude(truth, reconstruct(kspace, mask)) > zero_filled + 3


def test_multi_coil_with_given_maps_and_with_espirit(image):
    maps = coil_maps()
    mask = vdrad(image.shape, 4.0, calib=(16, 16), seed=2).mask
    kspace = fft2c(maps * image) * mask
    zero_filled = snr_db_magnitude(image, np.sqrt((np.abs(ifft2c(kspace)) ** 2).sum(axis=0)))
    given = cs_wavelet(kspace, mask, sens=maps)
    assert snr_db_magnitude(image, given) > zero_filled + 4
    espirit = cs_wavelet(kspace, mask, sens="espirit")
    assert espirit.shape == image.shape
    assert snr_db_magnitude(image, espirit) > zero_filled + 3
    maps_found = cs.espirit_maps(kspace)
    assert maps_found.shape == maps.shape


@needs_bart
def test_slice_maps_calibrated_two_at_a_time_are_those_of_one_at_a_time(image):
    maps = coil_maps()
    stack = np.stack([fft2c(maps * image * scale) * vdrad(image.shape, 4.0, calib=(16, 16),
                                                          seed=s).mask
                      for s, scale in enumerate((1.0, 0.5, 2.0))]).astype(np.complex64)
    one = cs.espirit_maps(stack, stack=True, threads=1)
    two = cs.espirit_maps(stack, stack=True, threads=2)
    assert one.shape == (3, *maps.shape) and np.abs(one).max() > 0
    np.testing.assert_array_equal(two, one)  # same calls, same order, only concurrent


@pytest.mark.parametrize(("reconstruct", "shared_mask", "agreement_db", "snr_tolerance_db"), [
    (cs_wavelet, False, 80, 1e-3),
    (cs_tv, True, 80, 1e-3),
    (cs_tv, False, 35, 0.3),
])
def test_stack_is_one_bart_call_equal_to_slice_by_slice(
        monkeypatch, reconstruct, shared_mask, agreement_db, snr_tolerance_db):
    """Exact for CS-WV and for CS-TV with one mask (``-L``); CS-TV with per-slice masks is a
    joint ADMM problem with the same minimiser, reached by slightly different iterates."""
    images = np.stack([phantom(o, n=48) for o in ((), ("-G",), ("-T",))])
    masks = np.stack([vdrad((48, 48), 4.0, seed=0 if shared_mask else s).mask for s in range(3)])
    kspace = fft2c(images) * masks
    lam = cs.WAVELET_LAMBDA if reconstruct is cs_wavelet else cs.TV_LAMBDA  # one for all calls
    singles = np.stack([reconstruct(k, m, lam=lam, threads=1) for k, m in zip(kspace, masks)])
    calls = []
    counted = cs.run_bart

    def counting(args, *rest, **options):
        calls.append(args)
        return counted(args, *rest, **options)

    monkeypatch.setattr(cs, "run_bart", counting)
    stacked = reconstruct(kspace, masks[0] if shared_mask else masks, lam=lam, threads=1,
                          stack=True)
    assert len(calls) == 1 and calls[0][0] == "pics"
    assert ("-L" in calls[0]) == (reconstruct is cs_tv and shared_mask)
    assert stacked.shape == images.shape
    assert np.all(snr_db_complex(singles, stacked) > agreement_db)
    np.testing.assert_allclose(snr_db_magnitude(images, stacked),
                               snr_db_magnitude(images, singles), atol=snr_tolerance_db)


def test_multi_coil_stack_shares_maps(image, mask):
    maps = coil_maps()
    kspace = np.stack([fft2c(maps * image), fft2c(maps * image[::-1, ::-1])]) * mask
    for reconstruct in METHODS:
        stacked = reconstruct(kspace, mask, sens=maps, lam=1e-3, iters=40, stack=True)
        assert stacked.shape == (2, *image.shape)
        single = reconstruct(kspace[1], mask, sens=maps, lam=1e-3, iters=40)
        assert snr_db_complex(single, stacked[1]) > 80


def test_bad_inputs_are_clear_errors(image, mask):
    kspace = fft2c(image) * mask
    with pytest.raises(ValueError, match="needs sens"):
        cs_wavelet(np.stack([kspace, kspace]))
    with pytest.raises(ValueError, match=r"\[slice, coil, y, x\]"):
        cs_wavelet(kspace, stack=True)
    with pytest.raises(ValueError, match="only 0 and 1"):
        cs_wavelet(kspace, 0.5 * mask)
    with pytest.raises(ValueError, match="mask must be"):
        cs_wavelet(kspace, mask.T)
    with pytest.raises(ValueError, match="espirit"):
        cs_tv(kspace, sens="sigpy")
    with pytest.raises(ValueError, match="sens must be"):
        cs_tv(kspace, sens=np.ones((2, 3, 3)))
    with pytest.raises(ValueError, match="lam must be > 0"):
        cs_tv(kspace, lam=0.0)
    with pytest.raises(ValueError, match="no sampled signal"):
        cs_tv(np.zeros_like(kspace), mask)


def test_tune_lambda_search_extends_and_refines(monkeypatch):
    reference = np.ones((4, 4), np.complex64)
    calls = []

    def peaked(kspace, mask, sens, lam, iters, threads, stack):
        calls.append(lam)
        return reference * (1 + 0.01 * (1 + abs(np.log10(lam / 2e-3))))

    monkeypatch.setitem(tuning._METHODS, "wavelet", peaked)
    best, table = tune_lambda(None, None, reference, snr_db_magnitude, grid=(1e-6, 1e-5, 1e-4),
                              refinements=2)
    lams = [lam for lam, _ in table]
    assert lams == sorted(lams) and len(lams) == len(set(calls))
    assert 1e-3 in np.round(lams, 12) and abs(np.log10(best / 2e-3)) < 0.15
    assert dict(table)[best] == max(snr for _, snr in table)
    with pytest.raises(ValueError, match="method"):
        tune_lambda(None, None, reference, snr_db_magnitude, method="l1")


@pytest.mark.parametrize("peak, extensions", [(2e-3, 0), (0.5, 2)])
def test_tune_lambda_runs_as_many_times_as_expected(monkeypatch, peak, extensions):
    """The count a progress bar shows as its total: exact when the best lambda lies inside the
    grid, one more per extension beyond its edge."""
    reference = np.ones((4, 4), np.complex64)
    calls = []

    def peaked(kspace, mask, sens, lam, iters, threads, stack):
        calls.append(lam)
        return reference * (1 + 0.01 * (1 + abs(np.log10(lam / peak))))

    monkeypatch.setitem(tuning._METHODS, "wavelet", peaked)
    grid = (1e-4, 1e-3, 1e-2, 1e-1)
    tune_lambda(None, None, reference, snr_db_magnitude, grid=grid, refinements=2)
    assert len(calls) == len(set(calls)) == tuning.expected_runs(grid, 2) + extensions
    assert tuning.expected_runs() == 13  # the default search, quoted by npgd-compare --help


def test_tune_lambda_on_bart(image, mask):
    kspace = fft2c(image) * mask
    best, table = tune_lambda(kspace, mask, image, snr_db_magnitude, "tv", iters=40,
                              grid=(1e-3, 1e-2, 1e-1), refinements=1)
    assert len(table) >= 5
    assert snr_db_magnitude(image, cs_tv(kspace, mask, lam=best, iters=40)) == pytest.approx(
        max(snr for _, snr in table), abs=1e-6)


@pytest.mark.parametrize("options", [("-G",), ("-N", "6", "-r", "3")])
def test_our_scaling_matches_direct_bart_pics_with_best_grid_lambda(options):
    """Held-out phantoms (no phantom of these kinds informed the lambdas): the noiseless floor
    lambda through our normalisation is level with BART's own scaling (``-S``) at its best grid
    lambda, and the automatic lambda (noise estimated from noiseless data) stays near it."""
    truth = phantom(options, n=64)
    mask = vdrad(truth.shape, 5.0, seed=2).mask
    kspace = fft2c(truth) * mask
    inputs = {"k": kspace, "s": np.ones(truth.shape), "m": mask}
    direct = [
        snr_db_magnitude(truth, run_bart(["pics", "-S", "-i", "300", "-R", f"W:3:0:{lam}",
                                          "-p", "m", "k", "s", "x"], inputs, ["x"])["x"])
        for lam in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
    ]
    assert snr_db_magnitude(truth, cs_wavelet(kspace, mask, lam=cs.WAVELET_LAMBDA)) \
        > max(direct) - 0.5
    assert snr_db_magnitude(truth, cs_wavelet(kspace, mask)) > max(direct) - 1.5


def test_noise_estimate_on_pure_noise_and_auto_lambda_rule():
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal((2, 4, 64, 64)) + 1j * rng.standard_normal((2, 4, 64, 64)))
    noise *= 0.3 / np.sqrt(2)  # complex std 0.3
    mask = np.ones((2, 64, 64), np.float32)
    assert noise_level.estimate_noise_std(noise, mask) == pytest.approx(0.3, rel=0.05)
    assert noise_level._calibration_noise_std(noise, mask) == pytest.approx(0.3, rel=0.05)
    floor = cs.AUTO_LAMBDA["wavelet"][0]
    assert cs.auto_lambda("wavelet", 0.0) == floor
    assert cs.auto_lambda("wavelet", 0.1, coils=8) > cs.auto_lambda("wavelet", 0.1) > floor
    assert cs.auto_lambda("tv", 1.0) > cs.auto_lambda("tv", 0.0) == cs.AUTO_LAMBDA["tv"][0]
    assert cs.auto_lambda("tv", 0.0, coils=8) < cs.auto_lambda("tv", 0.0)  # coils resolve


def correlated_noise(shape: tuple[int, ...], sigma: float, seed: int) -> np.ndarray:
    """Complex Gaussian noise ``[coil, ...]``, coils correlated (0.5 between neighbours,
    stds in the ratio 0.7 : 1.3; mean variance ``sigma**2``)."""
    coils = shape[0]
    stds = np.linspace(0.7, 1.3, coils)
    stds *= np.sqrt(coils / (stds ** 2).sum())
    psi = stds[:, None] * 0.5 ** np.abs(np.subtract.outer(range(coils), range(coils))) * stds
    rng = np.random.default_rng(seed)
    white = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2)
    return sigma * np.tensordot(np.linalg.cholesky(psi), white, axes=1)


@pytest.mark.parametrize("textured", [False, True])
def test_noise_estimate_separates_noise_from_signal(textured):
    """Multi-coil data without noise readouts: the calibration null space reads the noise of
    a sharp-edged phantom (and of a textured, brain-like one) within 25 % at 0.2-3 % noise,
    coil noise correlated, and next to nothing on noiseless data. The outer k-space alone
    reads the edges as noise (2-36x too high here)."""
    truth = phantom(n=64, width=48)
    if textured:
        rng = np.random.default_rng(5)
        field = ifft2c(fft2c(rng.standard_normal(truth.shape)) * vdrad(truth.shape, 8.0,
                                                                        seed=4).mask)
        truth = truth * (1 + 0.3 * np.real(field) / np.abs(field).max())
    maps = coil_maps()
    mask = vdrad(truth.shape, 4.0, calib=(16, 16), seed=2).mask.astype(np.float32)
    clean = fft2c(maps * truth)
    peak = float(np.abs(truth).max())
    for level in (0.002, 0.01, 0.03):
        sigma = level * peak
        kspace = ((clean + correlated_noise(clean.shape, sigma, seed=9)) * mask)[None]
        near = pytest.approx(sigma, rel=0.25)
        assert noise_level.estimate_noise_std(kspace, mask[None]) == near
        assert not noise_level._outer_noise_std(kspace, mask[None]) == near
    noiseless = noise_level.estimate_noise_std((clean * mask)[None], mask[None])
    assert noiseless < 0.01 * 0.01 * peak  # a hundredth of the 1 % noise level
    # so the automatic lambda of noiseless multi-coil data is the floor
    noise = cs.normalised_noise(clean * mask, mask, maps)
    assert cs.auto_lambda("wavelet", noise, coils=4) == cs.AUTO_LAMBDA["wavelet"][0]


@pytest.fixture(scope="module")
def edge_to_edge():
    """An 8-coil scan of an object that fills the field of view (the coil images jump across
    its periodic edges, which one set of smooth maps cannot follow): fully sampled k-space,
    a 5x VDRad mask and the two-set ESPIRiT maps of the undersampled data."""
    from npgd_recon.sim.coils import synthetic_coil_maps
    y, x = np.mgrid[0:64, 0:64] / 64
    image = (1 + 0.4 * np.cos(2 * np.pi * (1.5 * y + x)) + 0.3 * (x > 0.5)) * np.exp(1j * y)
    full = fft2c(synthetic_coil_maps(8, (64, 64)) * image).astype(np.complex64)
    mask = vdrad((64, 64), 5.0, calib=(16, 16), seed=4).mask
    return full, mask, cs.espirit_maps(full * mask, sets=2)


def test_soft_sense_second_set_recovers_what_one_set_cannot(edge_to_edge):
    """``espirit_maps(sets=2)`` gives ``[1, set, coil, y, x]`` with a second set that holds a
    part of the energy; CS with both sets reproduces the fully sampled first-set image (the
    one-set projection of the full data, the model card's reference) better than CS with the
    first set alone; a second set of zeros is the one-set problem exactly."""
    full, mask, maps = edge_to_edge
    assert maps.shape == (1, 2, 8, 64, 64)
    share = (np.abs(maps[0, 1]) ** 2).sum() / (np.abs(maps[0, 0]) ** 2).sum()
    assert share > 0.05, share
    reference = (np.conj(maps[0, 0]) * ifft2c(full)).sum(axis=0)
    kspace = full * mask
    one = cs_wavelet(kspace, mask, sens=maps[0, 0], lam=1e-3, threads=1)
    both = cs_wavelet(kspace, mask, sens=maps, lam=1e-3, threads=1)
    assert both.shape == (64, 64)
    gain = snr_db_magnitude(reference, both) - snr_db_magnitude(reference, one)
    assert gain > 10, gain
    empty = maps.copy()
    empty[:, 1] = 0
    np.testing.assert_allclose(cs_wavelet(kspace, mask, sens=empty, lam=1e-3, threads=1), one,
                               rtol=0, atol=1e-4 * np.abs(one).max())

"""Training data: every source kind, fresh masks per sample, deterministic validation items."""

import h5py
import numpy as np
import pytest
import torch

from npgd_recon.core.errors import NpgdError
from npgd_recon.core.fft import fft2c
from npgd_recon.core.metrics import snr_db_magnitude
from npgd_recon.data.samples import collate
from npgd_recon.data.sources import (
    DicomImages,
    FastMRISource,
    IsmrmrdSource,
    PhantomSource,
    build_source,
)
from npgd_recon.data.undersampled import Augment, UndersampledSet
from npgd_recon.io.dicom_writer import write_series
from npgd_recon.io.geometry import PlaneGeometry
from npgd_recon.sim.phantoms import shepp_logan
from npgd_recon.sim.scan_writer import ScanSettings, write_scan
from sampling import multicoil_calib, vdrad
from tests.conftest import needs_bart


@pytest.fixture
def sources(tmp_path):
    volume = np.zeros((20, 24, 16), np.float32)
    volume[4:16, 6:18, 3:13] = 1.0
    np.save(tmp_path / "vol.npy", volume)
    np.save(tmp_path / "cplx.npy", volume * np.exp(0.3j * np.arange(16)))
    image = np.zeros((2, 32, 28), np.complex64)
    image[:, 8:24, 6:20] = 1 + 1j
    with h5py.File(tmp_path / "fastmri.h5", "w") as f:
        f["kspace"] = fft2c(image[:, None].repeat(3, axis=1))  # [slice, coil, ky, kx]
    return tmp_path


def test_every_source_kind(sources):
    npy = build_source({"kind": "npy", "path": str(sources / "vol.npy")})
    assert len(npy) > 0 and np.iscomplexobj(npy.image(0, np.random.default_rng(0)))
    fastmri = build_source({"kind": "fastmri", "paths": [str(sources / "fastmri.h5")]})
    assert isinstance(fastmri, FastMRISource) and len(fastmri) == 2
    image = fastmri.image(1, np.random.default_rng(0))
    assert image.shape == (32, 28)
    np.testing.assert_allclose(np.abs(image)[8:24, 6:20], np.sqrt(3 * 2), rtol=1e-4)
    assert len(PhantomSource(5, size=32)) == 5
    with pytest.raises(ValueError, match="unknown data source"):
        build_source({"kind": "dicom-folder"})


def test_ismrmrd_source_gives_the_coil_combined_images_and_refuses_undersampled_data(tmp_path):
    truth = write_scan(tmp_path / "full.h5", shepp_logan((3, 40, 32)),
                       settings=ScanSettings(coils=3, oversampling=2, noise_readouts=0))
    source = build_source({"kind": "ismrmrd", "paths": [str(tmp_path / "full.h5")]})
    assert isinstance(source, IsmrmrdSource) and len(source) == 3
    image = source.image(1, np.random.default_rng(0))
    assert image.shape == (40, 32)
    assert snr_db_magnitude(truth.image[1], image) > 40  # RSS of normalised maps: |x| exactly
    write_scan(tmp_path / "under.h5", shepp_logan((1, 40, 32)), pattern=vdrad((40, 32), 3.0),
               settings=ScanSettings(coils=2, noise_readouts=0))
    with pytest.raises(ValueError, match="undersampled"):
        IsmrmrdSource([tmp_path / "under.h5"])


def test_dicom_source_reads_a_series_and_shrinks_large_images(tmp_path):
    images = np.zeros((3, 64, 48), np.float32)
    images[:, 16:48, 8:40] = np.arange(1, 4)[:, None, None]
    geometry = [PlaneGeometry(np.array([0.0, 0.0, 2.0 * i]), np.array([1.0, 0.0, 0.0]),
                              np.array([0.0, 1.0, 0.0]), (1.0, 1.0), (64, 48), 2.0,
                              np.zeros(3)) for i in range(3)]
    write_series(images, geometry, tmp_path / "series", series_description="test")
    source = build_source({"kind": "dicom", "paths": [str(tmp_path / "series")]})
    assert isinstance(source, DicomImages) and len(source) == 3
    for i in range(3):  # every image normalised to 1 inside its block, 0 outside
        magnitude = np.abs(source.image(i, np.random.default_rng(i)))
        np.testing.assert_allclose(magnitude[16:48, 8:40], 1.0, rtol=1e-3)
        assert magnitude[:16].max() < 1e-3
    small = DicomImages([tmp_path / "series"], max_size=32)
    assert small.image(0, np.random.default_rng(0)).shape == (32, 24)
    (tmp_path / "junk.dcm").write_bytes(b"not dicom")
    with pytest.raises(ValueError, match="not a readable DICOM"):
        DicomImages([tmp_path / "junk.dcm"])


def test_training_items_get_fresh_exact_rate_masks(sources):
    dataset = UndersampledSet([PhantomSource(10, size=48)], 6, augment=Augment((32, 32)))
    items = [dataset[i] for i in range(3)]
    for item in items:
        assert item.target.shape == item.kspace.shape == item.mask.shape == (32, 32)
        assert item.mask.sum() == round(32 * 32 / 5)
        assert np.all(item.kspace.numpy()[item.mask.numpy() == 0] == 0)
    assert not np.array_equal(items[0].mask, items[1].mask)
    np.testing.assert_array_equal(dataset[1].kspace, items[1].kspace)  # deterministic


def test_validation_items_are_fixed_images(sources):
    source = build_source({"kind": "npy", "path": str(sources / "vol.npy")})
    dataset = UndersampledSet([source], 4, noise=(0.0, 0.0))
    item = dataset[0]
    assert item.target.shape[0] % 2 == 0 and item.target.shape[1] % 2 == 0
    full = fft2c(item.target.numpy()) * item.mask.numpy()
    np.testing.assert_allclose(item.kspace.numpy(), full, atol=1e-5)
    with pytest.raises(ValueError, match="empty"):
        UndersampledSet([PhantomSource(0)], 1)


def test_validation_phase_gives_real_images_a_fixed_smooth_phase(sources):
    """phase=True: the same magnitude, a phase that is not flat, smooth (neighbours differ by
    little), within +-pi/2 and the same on every read; complex images keep their own phase."""
    source = build_source({"kind": "npy", "path": str(sources / "vol.npy")})
    plain = UndersampledSet([source], 4, noise=(0.0, 0.0))[1].target.numpy()
    dataset = UndersampledSet([source], 4, noise=(0.0, 0.0), phase=True)
    item = dataset[1].target.numpy()
    np.testing.assert_allclose(np.abs(item), np.abs(plain), atol=1e-6)
    inside = np.abs(plain) > 0.5
    angle = np.angle(item)[inside]
    assert np.ptp(angle) > 0.1 and np.abs(angle).max() <= np.pi / 2 + 1e-5
    assert np.abs(np.diff(np.angle(item), axis=0)[inside[1:] & inside[:-1]]).max() < 0.3
    np.testing.assert_array_equal(dataset[1].target.numpy(), item)
    complex_source = build_source({"kind": "npy", "path": str(sources / "cplx.npy")})
    kept = UndersampledSet([complex_source], 2, noise=(0.0, 0.0), phase=True)[0].target
    unchanged = UndersampledSet([complex_source], 2, noise=(0.0, 0.0))[0].target
    np.testing.assert_array_equal(kept.numpy(), unchanged.numpy())


def test_multicoil_items_carry_maps_that_explain_their_kspace():
    from npgd_recon.core.operators import SenseOp

    dataset = UndersampledSet([PhantomSource(6, size=40)], 4, noise=(0.0, 0.0),
                              augment=Augment((32, 24)), coils=3)
    items = [dataset[i] for i in range(2)]
    for item in items:
        assert item.kspace.shape == item.maps.shape == (3, 32, 24)
        np.testing.assert_allclose((item.maps.abs() ** 2).sum(0), 1.0, rtol=1e-4)
        op = SenseOp(item.mask[None], item.maps[None])
        expected = op.forward(item.target[None])[0]
        assert (expected - item.kspace).abs().max() < 1e-4 * item.kspace.abs().max()
    assert not np.allclose(items[0].maps, items[1].maps)  # random flips and phases
    with pytest.raises(ValueError, match="coils"):
        UndersampledSet([PhantomSource(2)], 1, coils=0)


def test_loop_array_items_carry_loop_maps_and_mixed_draws_both_arrays():
    from npgd_recon.sim.coils import synthetic_coil_maps

    def array_of(item) -> str:
        """Which simulated array the item's maps are, whatever their flips and phases."""
        joint = (item.maps[0] * item.maps[1].conj()).abs().numpy()
        for geometry in ("birdcage", "loops"):
            maps = synthetic_coil_maps(4, (32, 24), geometry=geometry)
            candidate = np.abs(maps[0] * maps[1].conj())
            if any(np.allclose(joint, candidate[::fy, ::fx], atol=1e-4)
                   for fy in (1, -1) for fx in (1, -1)):
                return geometry
        return "neither"

    loops = UndersampledSet([PhantomSource(6, size=40)], 4, noise=(0.0, 0.0),
                            augment=Augment((32, 24)), coils=4, coil_geometry="loops")
    assert {array_of(loops[i]) for i in range(4)} == {"loops"}
    mixed = UndersampledSet([PhantomSource(6, size=40)], 16, noise=(0.0, 0.0),
                            augment=Augment((32, 24)), coils=4, coil_geometry="mixed")
    assert {array_of(mixed[i]) for i in range(16)} == {"birdcage", "loops"}
    with pytest.raises(NpgdError, match="coil_geometry"):
        UndersampledSet([PhantomSource(2)], 1, coils=4, coil_geometry="helmet")


def test_texture_gives_training_targets_noise_of_their_own_and_is_off_by_default():
    from npgd_recon.data.undersampled import with_texture

    source = PhantomSource(8, size=40)
    plain = UndersampledSet([source], 4, noise=(0.0, 0.0), augment=Augment((32, 32)))
    off = UndersampledSet([source], 4, noise=(0.0, 0.0), augment=Augment((32, 32)),
                          texture=(0.0, 0.0))
    textured = UndersampledSet([source], 4, noise=(0.0, 0.0), augment=Augment((32, 32)),
                               texture=(0.05, 0.05))
    for i in range(4):
        np.testing.assert_array_equal(plain[i].target, off[i].target)  # the same draws
        item = textured[i]  # noiseless k-space: the measured samples are the textured target's
        np.testing.assert_allclose(item.kspace, fft2c(item.target.numpy()) * item.mask.numpy(),
                                   atol=1e-5)
    rng = np.random.default_rng(0)
    image = np.zeros((200, 200), np.complex128)
    image[50:150, 50:150] = 2.0
    noisy = with_texture(image, 0.05, rng)
    assert np.std(noisy - image) == pytest.approx(0.05 * 2.0, rel=0.02)  # std of the object's 5 %
    np.testing.assert_array_equal(with_texture(np.zeros((4, 4)), 0.05, rng), 0)
    with pytest.raises(NpgdError, match="texture must be"):
        UndersampledSet([source], 1, texture=(0.1, 0.0))


def test_a_coil_range_draws_one_count_per_batch_and_the_loader_stacks_them():
    from npgd_recon.training.loop import make_loader

    dataset = UndersampledSet([PhantomSource(6, size=40)], 40, noise=(0.0, 0.01),
                              augment=Augment((24, 24)), coils=(1, 16), coil_group=4)
    counts = [dataset.coil_count(i) for i in range(40)]
    assert all(len(set(counts[g:g + 4])) == 1 for g in range(0, 40, 4))
    assert len(set(counts)) > 3 and min(counts) >= 1 and max(counts) <= 16
    for batch, count in zip(make_loader(dataset, list(range(40)), 4), counts[::4]):
        assert batch.maps.shape == (4, count, 24, 24)
        np.testing.assert_allclose((batch.maps.abs() ** 2).sum(1), 1.0, rtol=1e-4)
    for bad in ((0, 4), (5, 4)):
        with pytest.raises(ValueError, match="coils"):
            UndersampledSet([PhantomSource(2)], 1, coils=bad)


def test_several_crop_sizes_draw_one_per_batch_with_the_zoom_scaled():
    from npgd_recon.training.loop import make_loader

    first = Augment((32, 32), zoom=(0.5, 1.0))
    small = first.at((16, 16))
    assert small.shape == (16, 16) and small.zoom == (0.25, 0.5)
    dataset = UndersampledSet([PhantomSource(6, size=48)], 32, augment=(first, small),
                              coils=(1, 4), coil_group=4)
    shapes = [dataset[i].target.shape for i in range(32)]
    assert all(len(set(shapes[g:g + 4])) == 1 for g in range(0, 32, 4))
    assert set(shapes) == {(32, 32), (16, 16)}
    for batch, shape in zip(make_loader(dataset, list(range(32)), 4), shapes[::4]):
        assert batch.kspace.shape[-2:] == shape and batch.mask.shape[-2:] == shape
    single = UndersampledSet([PhantomSource(6, size=48)], 4, augment=first, seed=3)
    listed = UndersampledSet([PhantomSource(6, size=48)], 4, augment=(first,), seed=3)
    for i in range(4):  # one augmentation, in a tuple or not: the same samples
        assert torch.equal(single[i].kspace, listed[i].kspace)


def test_log_noise_scale_spreads_levels_evenly_over_decades():
    dataset = UndersampledSet([PhantomSource(4, size=24)], 400, noise=(0.001, 0.1),
                              augment=Augment((24, 24), intensity=(1.0, 1.0)), noise_scale="log")
    levels = np.array([float(dataset[i].noise) / float(dataset[i].target.abs().max())
                       for i in range(400)])
    assert levels.min() >= 0.001 * 0.999 and levels.max() <= 0.1 * 1.001
    decades = np.histogram(np.log10(levels), bins=[-3, -2, -1])[0]
    assert abs(decades[0] - decades[1]) < 80  # uniform: about 200 each; linear: about 18 / 382
    with pytest.raises(ValueError, match="noise_scale"):
        UndersampledSet([PhantomSource(2)], 1, noise=(0.0, 0.02), noise_scale="log")


def test_nrrd_source_reads_a_volume_and_shifts_ct_values(tmp_path):
    nrrd = pytest.importorskip("nrrd")
    volume = np.full((12, 10, 6), -1000, np.int16)  # air in Hounsfield units
    volume[2:10, 2:8, :] = 40  # soft tissue
    nrrd.write(str(tmp_path / "ct.nrrd"), volume)
    source = build_source({"kind": "nrrd", "path": str(tmp_path / "ct.nrrd"), "axes": [2]})
    assert len(source) == 6 and {axis for axis, _ in source.index} == {2}
    magnitude = np.abs(source.image(0, np.random.default_rng(0)))
    assert magnitude.shape == (12, 10)
    np.testing.assert_allclose(magnitude[2:10, 2:8], 1.0, rtol=1e-5)
    assert magnitude[0].max() == 0  # air is dark, not |-1000|
    (tmp_path / "bad.nrrd").write_bytes(b"NRRD0004\nnonsense\n")
    with pytest.raises(ValueError, match="bad.nrrd: not a readable volume"):
        build_source({"kind": "nrrd", "path": str(tmp_path / "bad.nrrd")})
    with pytest.raises(ValueError, match="needs 'path'"):
        build_source({"kind": "nrrd"})


def test_the_cropped_zoom_equals_ndimage_zoom():
    from scipy import ndimage

    from npgd_recon.data.undersampled import _zoom_region

    rng = np.random.default_rng(0)
    image = (rng.standard_normal((37, 29)) + 1j * rng.standard_normal((37, 29)))
    for factor in (0.55, 0.8, 1.0):
        full = (ndimage.zoom(image.real, factor, order=1)
                + 1j * ndimage.zoom(image.imag, factor, order=1))
        region = [(3, full.shape[0] - 5), (0, full.shape[1])]
        part = _zoom_region(image, list(full.shape), region)
        np.testing.assert_allclose(part, full[3:-2], atol=1e-12)


def test_contrast_augmentation_is_off_by_default_and_changes_images_when_on():
    source = PhantomSource(8, size=40)
    plain = UndersampledSet([source], 4, augment=Augment((32, 32)))
    explicit = UndersampledSet([source], 4, augment=Augment((32, 32), gamma=(1.0, 1.0)))
    np.testing.assert_array_equal(plain[2].target, explicit[2].target)
    for options in ({"gamma": (0.5, 0.6)}, {"invert": 1.0}, {"bias": 0.5}):
        changed = UndersampledSet([source], 4, augment=Augment((32, 32), **options))
        a, b = plain[1].target.numpy(), changed[1].target.numpy()
        assert not np.allclose(np.abs(a), np.abs(b))
        support = np.abs(a) > 1e-3 * np.abs(a).max()
        np.testing.assert_allclose(np.angle(a[support] * np.conj(b[support])), 0,
                                   atol=1e-4)  # the phase is kept
        assert np.all(b[np.abs(a) == 0] == 0)  # the background stays dark
    image = np.zeros((32, 32), np.complex64)
    image[8:24, 8:24] = np.linspace(0.1, 1, 16)[None]
    rng = np.random.default_rng(0)
    inverted = Augment((32, 32), invert=1.0)._contrast(image, rng)
    assert np.abs(inverted[16, 9]) > np.abs(inverted[16, 22])  # dark became bright
    for bad in ({"gamma": (0.0, 1.0)}, {"gamma": (2.0, 1.0)}, {"invert": 1.5}, {"bias": -1}):
        with pytest.raises(ValueError, match="^(gamma|invert|bias) must"):
            Augment((32, 32), **bad)


def test_loader_workers_give_the_same_batches_as_the_training_process(tmp_path):
    from npgd_recon.training.loop import make_loader

    dataset = UndersampledSet([PhantomSource(10, size=40)], 12,
                              augment=Augment((32, 32), gamma=(0.7, 1.4), bias=0.2), seed=5)
    indices = list(range(2, 12))
    batches = {}
    for workers in (0, 2):
        batches[workers] = list(make_loader(dataset, indices, 3, workers, seed=1))
    assert len(batches[0]) == len(batches[2]) == 4
    for a, b in zip(batches[0], batches[2]):
        for key in ("target", "kspace", "mask", "noise"):
            assert torch.equal(getattr(a, key), getattr(b, key))
    assert not torch.equal(batches[0][0].target[0], batches[0][0].target[1])


@needs_bart
def test_espirit_maps_items_are_calibrated_as_at_inference():
    """``maps="espirit"``: the mask keeps ``multicoil_calib``'s centre, the maps are ESPIRiT's
    from the item's own k-space (unit norm over coils where nonzero, not the simulated ones),
    and the target is the simulated image seen through them."""
    from bart_baselines import espirit_maps

    shape = (48, 48)
    kwargs = dict(noise=(0.001, 0.001), augment=Augment(shape), coils=4)
    exact = UndersampledSet([PhantomSource(4, size=64)], 2, **kwargs)[1]
    item = UndersampledSet([PhantomSource(4, size=64)], 2, maps="espirit", **kwargs)[1]
    cy, cx = multicoil_calib(shape)
    centre = item.mask[24 - cy // 2:24 - cy // 2 + cy, 24 - cx // 2:24 - cx // 2 + cx]
    assert bool(centre.all()) and not bool(exact.mask.equal(item.mask))
    np.testing.assert_allclose(item.maps.numpy(), espirit_maps(item.kspace.numpy()), atol=1e-6)
    power = (item.maps.abs() ** 2).sum(0)
    inside = power > 0
    np.testing.assert_allclose(power[inside], 1.0, rtol=1e-3)
    assert not np.allclose(item.maps.numpy(), exact.maps.numpy(), atol=1e-2)
    energy = exact.target.abs() ** 2
    assert energy[inside].sum() >= 0.999 * energy.sum()  # the whole object is supported
    # the simulated maps and image of this item: the exact set's, which draws the same ones
    seen = (item.maps.conj() * exact.maps).sum(0) * exact.target
    np.testing.assert_allclose(item.target.numpy(), seen.numpy(), atol=1e-5)
    assert snr_db_magnitude(exact.target * inside, item.target) > 20
    # maps_up_to: only items no larger than that are calibrated; larger ones keep exact maps
    small = UndersampledSet([PhantomSource(4, size=64)], 2, maps="espirit", maps_up_to=48,
                            **kwargs)[1]
    large = UndersampledSet([PhantomSource(4, size=64)], 2, maps="espirit", maps_up_to=47,
                            **kwargs)[1]
    assert torch.equal(small.maps, item.maps) and torch.equal(small.target, item.target)
    assert torch.equal(large.maps, exact.maps) and torch.equal(large.mask, exact.mask)
    with pytest.raises(NpgdError, match="maps"):
        UndersampledSet([PhantomSource(2)], 1, maps="sense")


@needs_bart
def test_two_map_sets_items_are_soft_sense_problems():
    """``map_sets=2``: an ESPIRiT item's maps are ESPIRiT's two sets (``[set, coil, y, x]``),
    its target the one-set item's (seen through the first set, which is ESPIRiT's one set);
    an item too large for ``maps_up_to`` keeps its exact maps with a zero second set; a batch
    of them is a soft-SENSE problem. Two sets need ESPIRiT maps and coils."""
    from bart_baselines import espirit_maps
    from npgd_recon.core.operators import SoftSenseOp

    kwargs = dict(noise=(0.001, 0.001), augment=Augment((48, 48)), coils=4, maps="espirit")
    one = UndersampledSet([PhantomSource(4, size=64)], 2, **kwargs)[1]
    two = UndersampledSet([PhantomSource(4, size=64)], 2, map_sets=2, **kwargs)[1]
    assert two.maps.shape == (2, 4, 48, 48)
    np.testing.assert_allclose(two.maps.numpy(), espirit_maps(two.kspace.numpy(), sets=2)[0],
                               atol=1e-6)
    np.testing.assert_allclose(two.maps[0].numpy(), one.maps.numpy(), atol=1e-5)
    np.testing.assert_allclose(two.target.numpy(), one.target.numpy(), atol=1e-5)
    exact = UndersampledSet([PhantomSource(4, size=64)], 2, map_sets=2, maps_up_to=47,
                            **kwargs)[1]
    assert exact.maps.shape == (2, 4, 48, 48) and not bool(exact.maps[1].any())
    batch = collate([two, exact])
    assert isinstance(batch.operator(), SoftSenseOp)
    for bad in ({"maps": "exact", "coils": 4}, {"maps": "espirit", "coils": 1}):
        with pytest.raises(NpgdError, match="map_sets"):
            UndersampledSet([PhantomSource(2)], 1, map_sets=2, **bad)


@needs_bart
def test_map_error_items_carry_the_level_npgd_recon_tells_the_network():
    """``map_error``: an ESPIRiT item's ``noise`` is the effective level of
    :func:`~npgd_recon.core.map_error.effective_noise_std` for its own k-space, mask and maps
    (above the thermal level where the maps miss some of the coil images), everything else the
    item without it; the weight needs ESPIRiT maps and may not be negative."""
    from npgd_recon.core.map_error import effective_noise_std

    kwargs = dict(noise=(0.002, 0.002), augment=Augment((48, 48), zoom=(1.2, 1.4)), coils=8,
                  maps="espirit")
    plain = UndersampledSet([PhantomSource(4, size=64)], 2, **kwargs)[1]
    told = UndersampledSet([PhantomSource(4, size=64)], 2, map_error=0.1, **kwargs)[1]
    expected = effective_noise_std(told.kspace.numpy()[None], told.mask.numpy()[None],
                                   told.maps.numpy()[None], float(plain.noise), 0.1)[0]
    assert float(told.noise) == pytest.approx(expected, rel=1e-5)
    assert float(told.noise) > 1.05 * float(plain.noise)
    for field in ("kspace", "maps", "target", "mask"):
        np.testing.assert_array_equal(getattr(told, field).numpy(), getattr(plain, field).numpy())
    for bad in ({"maps": "exact", "map_error": 0.1}, {"maps": "espirit", "map_error": -1.0}):
        with pytest.raises(NpgdError, match="map_error"):
            UndersampledSet([PhantomSource(2)], 1, coils=4, **bad)

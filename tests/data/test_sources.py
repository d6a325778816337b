"""Training sources: complex echo volumes keep their own phase, enhanced multi-frame DICOM in
real values, and the body-MR entries of the image cache (myoqmri, mri-fatwater) read for real."""

from __future__ import annotations

import numpy as np
import pytest

from npgd_recon.core.errors import NpgdError
from npgd_recon.data.fetch import FetchError, find_entry
from npgd_recon.data.sources import (
    DicomImages,
    VolumeSlices,
    build_source,
    read_volume,
    rescale_frames,
)


def _echo_volume() -> np.ndarray:
    """A complex ``[echo, y, x, slice]`` volume, 3 echoes, 4 slices of 6x5, the last dark."""
    rng = np.random.default_rng(7)
    shape = (3, 6, 5, 4)
    volume = (rng.uniform(0.5, 2.0, shape) * np.exp(1j * rng.uniform(-np.pi, np.pi, shape)))
    volume[..., 3] *= 0.01  # a slice outside the object: under min_fill
    return volume.astype(np.complex64)


def test_a_complex_echo_volume_gives_its_own_slices_echo_by_echo(tmp_path):
    volume = _echo_volume()
    np.save(tmp_path / "gre.npy", volume)
    read = read_volume(tmp_path / "gre.npy", echo_axis=0)
    assert read.dtype == np.complex64 and read.shape == (3, 6, 5, 4)
    np.testing.assert_array_equal(read, volume)
    # the echo axis need not come first: it is moved to the front
    np.save(tmp_path / "last.npy", np.moveaxis(volume, 0, -1))
    np.testing.assert_array_equal(read_volume(tmp_path / "last.npy", echo_axis=3), volume)
    source = VolumeSlices(tmp_path / "gre.npy", axes=(2,), echo_axis=0)
    assert source.complex and source.echoes == 3
    assert source.index == [(2, 0), (2, 1), (2, 2)]  # the dark slice 3 left out, every echo
    assert len(source) == 9
    peak = np.abs(volume).max()
    for i in range(len(source)):
        echo, k = divmod(i, 3)
        image = source.image(i, np.random.default_rng(i))
        assert image.dtype == np.complex64 and image.shape == (6, 5)
        np.testing.assert_allclose(image, volume[echo, :, :, k] / peak, rtol=1e-6)
        # its own phase: the same image whatever the generator
        np.testing.assert_array_equal(image, source.image(i, np.random.default_rng(100 + i)))
    assert max(np.abs(source.image(i, None)).max() for i in range(9)) == pytest.approx(1.0)
    with pytest.raises(IndexError):
        source.image(9, np.random.default_rng(0))
    # without an echo axis a 4-D file gives its first volume along the last axis, still complex
    first = VolumeSlices(tmp_path / "gre.npy", axes=(0,))
    assert first.echoes == 1 and len(first) == 3
    np.testing.assert_allclose(first.image(1, np.random.default_rng(0)),
                               volume[1, :, :, 0] / np.abs(volume[..., 0]).max(), rtol=1e-6)
    # the config path: npy with echo_axis
    built = build_source({"kind": "npy", "path": str(tmp_path / "gre.npy"), "axes": [2],
                          "echo_axis": 0})
    assert len(built) == 9
    np.testing.assert_array_equal(built.image(4, None), source.image(4, None))
    np.save(tmp_path / "flat.npy", np.ones((4, 4)))
    with pytest.raises(ValueError, match="echo axis 0 of a volume of shape"):
        read_volume(tmp_path / "flat.npy", echo_axis=0)


def test_max_size_shrinks_a_volume_s_planes_to_a_coarser_matrix_keeping_their_phase(tmp_path):
    """A complex 100x80 plane of one smooth phase ramp: shrunk to at most 64 a side it is
    64x50 (64x51 resampled corner to corner, cut to even sides), the same field of view,
    magnitude and phase interpolated, not aliased; config tables pass ``max_size`` on."""
    y, x = np.mgrid[:100, :80]
    plane = ((1 + y / 100) * np.exp(1j * 2 * np.pi * x / 80)).astype(np.complex64)
    np.save(tmp_path / "one.npy", plane[..., None])
    source = VolumeSlices(tmp_path / "one.npy", axes=(2,), min_fill=0.0, max_size=64)
    image = source.image(0, None)
    assert image.shape == (64, 50) and image.dtype == np.complex64
    yy, xx = np.mgrid[:64, :50] * np.array([99 / 63, 79 / 50])[:, None, None]  # source pixels
    expected = (1 + yy / 100) / 1.99 * np.exp(1j * 2 * np.pi * xx / 80)
    np.testing.assert_allclose(np.angle(image * expected.conj()), 0, atol=1e-3)
    # linear interpolation of a turning phasor shortens it a little, never by 1 %
    np.testing.assert_allclose(np.abs(image), np.abs(expected), rtol=0.01)
    built = build_source({"kind": "npy", "path": str(tmp_path / "one.npy"), "axes": [2],
                          "min_fill": 0.0, "max_size": 64})
    np.testing.assert_array_equal(built.image(0, None), image)
    # a size that cannot be one is a one-line error naming the file, for volumes as for DICOM
    for bad in (0, 4, 32.5, "64", True):
        with pytest.raises(NpgdError, match=r"one\.npy: max_size must be a whole number >= 8"):
            build_source({"kind": "npy", "path": str(tmp_path / "one.npy"), "max_size": bad})
    with pytest.raises(NpgdError, match="max_size must be a whole number >= 8, got 0"):
        DicomImages([tmp_path], max_size=0)
    # planes already small enough stay as they are
    whole = VolumeSlices(tmp_path / "one.npy", axes=(2,), min_fill=0.0, max_size=100)
    np.testing.assert_allclose(whole.image(0, None), plane / np.abs(plane).max(), rtol=1e-6)


def test_a_real_volume_still_gets_a_random_smooth_phase(tmp_path):
    magnitude = np.abs(_echo_volume())  # real: a magnitude per echo
    np.save(tmp_path / "mag.npy", magnitude)
    source = VolumeSlices(tmp_path / "mag.npy", axes=(2,), echo_axis=0)
    assert not source.complex and len(source) == 9
    a = source.image(4, np.random.default_rng(1))
    b = source.image(4, np.random.default_rng(2))
    np.testing.assert_allclose(np.abs(a), np.abs(b), rtol=1e-5)
    np.testing.assert_allclose(np.abs(a), magnitude[1, :, :, 1] / magnitude.max(), rtol=1e-5)
    assert not np.allclose(a, b)  # a different phase per draw


def _enhanced_mr(path, frames: np.ndarray, per_frame: list[tuple[float, float]] | None,
                 shared: tuple[float, float] | None = None):
    """An enhanced MR image file of ``frames`` ``[n, y, x]`` (uint16) with a Pixel Value
    Transformation per frame and/or shared."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    def transform(slope, intercept):
        group = Dataset()
        item = Dataset()
        item.RescaleSlope, item.RescaleIntercept, item.RescaleType = slope, intercept, "US"
        group.PixelValueTransformationSequence = Sequence([item])
        return group

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"  # Enhanced MR Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.NumberOfFrames = len(frames)
    ds.Rows, ds.Columns = frames.shape[1:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if per_frame is not None:
        ds.PerFrameFunctionalGroupsSequence = Sequence([transform(*t) for t in per_frame])
    if shared is not None:
        ds.SharedFunctionalGroupsSequence = Sequence([transform(*shared)])
    ds.PixelData = frames.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_enhanced_multi_frame_dicom_is_read_frame_by_frame_in_real_values(tmp_path):
    frames = np.zeros((3, 6, 8), np.uint16)
    for k in range(3):
        frames[k, 1:5, 2:6] = 100 * (k + 1)  # an object on a background of stored value 0
    per_frame = [(1.0, 0.0), (2.0, 0.0), (1.0, 300.0)]
    path = _enhanced_mr(tmp_path / "mese.dcm", frames, per_frame, shared=(5.0, 5.0))
    import pydicom

    dataset = pydicom.dcmread(path)
    real = rescale_frames(dataset, dataset.pixel_array)
    np.testing.assert_array_equal(real[0], frames[0])
    np.testing.assert_array_equal(real[1], 2 * frames[1])
    np.testing.assert_array_equal(real[2], frames[2] + 300.0)  # per frame beats shared
    source = DicomImages([path])
    assert len(source) == 3  # one image per frame, in the file's order
    for k in range(2):
        magnitude = np.abs(source.image(k, np.random.default_rng(k)))
        np.testing.assert_allclose(magnitude[1:5, 2:6], 1.0, rtol=1e-5)
        assert magnitude[0, 0] == 0
    # the third frame's intercept lifts its background: 300 of 600, not 0
    np.testing.assert_allclose(np.abs(source.image(2, np.random.default_rng(0)))[0, 0], 0.5,
                               rtol=1e-5)
    # shared only, then none at all
    shared = _enhanced_mr(tmp_path / "shared.dcm", frames, None, shared=(1.0, 100.0))
    dataset = pydicom.dcmread(shared)
    np.testing.assert_array_equal(rescale_frames(dataset, dataset.pixel_array), frames + 100.0)
    bare = _enhanced_mr(tmp_path / "bare.dcm", frames, None)
    dataset = pydicom.dcmread(bare)
    np.testing.assert_array_equal(rescale_frames(dataset, dataset.pixel_array), frames)
    wrong = _enhanced_mr(tmp_path / "wrong.dcm", frames, per_frame[:2])
    with pytest.raises(ValueError, match="wrong.dcm: 2 per-frame functional groups for 3"):
        DicomImages([wrong])


def _cached(name: str) -> list:
    """The files of a cache entry, or a skip when the cache lacks it."""
    try:
        return find_entry(name)[1]
    except FetchError as error:
        pytest.skip(f"data cache entry {name} not fetched (npgd-data fetch --only ...): {error}")


def _finite_unit_images(source, count: int, shape: tuple[int, int]) -> list[np.ndarray]:
    assert len(source) == count
    images = [source.image(i, np.random.default_rng(i)) for i in range(len(source))]
    for image in images:
        assert image.shape == shape and image.dtype == np.complex64
        assert np.isfinite(image).all()
    return images


def test_the_myoqmri_spin_echo_entry_is_5_echoes_of_8_calf_slices():
    pydicom = pytest.importorskip("pydicom")
    files = _cached("myoqmri-calf-mese")
    echo_times, positions = [], []
    for file in files:
        dataset = pydicom.dcmread(file, stop_before_pixels=True)
        assert dataset.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4.1"  # enhanced MR
        assert int(dataset.NumberOfFrames) == 8 and (dataset.Rows, dataset.Columns) == (128, 256)
        groups = dataset.PerFrameFunctionalGroupsSequence
        echo_times.append(float(groups[0].MREchoSequence[0].EffectiveEchoTime))
        positions.append([int(g.FrameContentSequence[0].InStackPositionNumber) for g in groups])
    assert echo_times == [11.0, 55.0, 99.0, 143.0, 187.0]
    assert all(p == list(range(1, 9)) for p in positions)  # frames in slice order
    source = build_source({"kind": "cache", "name": "myoqmri-calf-mese"})
    assert isinstance(source, DicomImages)
    images = _finite_unit_images(source, 5 * 8, (128, 256))
    for image in images:
        assert np.abs(image).max() == pytest.approx(1.0, rel=1e-5)
        # two calves side by side: both halves hold tissue, the background is dark
        magnitude = np.abs(image)
        assert magnitude[:, :128].mean() > 0.02 and magnitude[:, 128:].mean() > 0.02
        assert np.median(magnitude) < 0.05


def test_the_myoqmri_dixon_entry_is_2_echoes_of_150_calf_slices():
    pydicom = pytest.importorskip("pydicom")
    files = _cached("myoqmri-calf-dixon")
    kinds = []
    for file in files:
        dataset = pydicom.dcmread(file, stop_before_pixels=True)
        assert int(dataset.NumberOfFrames) == 150 and (dataset.Rows, dataset.Columns) == (104, 256)
        frame = dataset.PerFrameFunctionalGroupsSequence[0]
        assert frame.MRImageFrameTypeSequence[0].ComplexImageComponent == "MAGNITUDE"
        kinds.append((dataset.ImageType[3], float(frame.MREchoSequence[0].EffectiveEchoTime)))
    assert kinds == [("OPP_PHASE", 1.23), ("IN_PHASE", 2.46)]
    source = build_source({"kind": "cache", "name": "myoqmri-calf-dixon"})
    images = _finite_unit_images(source, 2 * 150, (104, 256))
    means = np.array([np.abs(image).mean() for image in images])
    assert means.min() > 0.02  # no empty frame
    # the two echoes are the same slices: frame k of each is alike, unlike a distant frame
    assert np.corrcoef(np.abs(images[75]).ravel(), np.abs(images[225]).ravel())[0, 1] > 0.8


def test_the_mri_fatwater_entry_keeps_its_real_phase():
    files = _cached("fatwater-ankle-gre")
    raw = np.load(files[0])
    assert raw.shape == (3, 101, 101, 4) and raw.dtype == np.complex64
    source = build_source({"kind": "cache", "name": "fatwater-ankle-gre"})
    assert isinstance(source, VolumeSlices) and source.complex and source.echoes == 3
    images = _finite_unit_images(source, 3 * 4, (101, 101))
    assert max(np.abs(image).max() for image in images) == pytest.approx(1.0)
    peak = np.abs(raw).max()
    for i, image in enumerate(images):
        echo, k = divmod(i, 4)
        np.testing.assert_allclose(image, raw[echo, :, :, k] / peak, rtol=1e-5, atol=1e-7)
        # the data's own phase: the same image whatever the generator
        np.testing.assert_array_equal(image, source.image(i, np.random.default_rng(1000 + i)))
    # a phase that varies over the object (not constant: off-resonance and fat-water shifts)
    # and changes from echo to echo (the same slice, 3.2 and 6.4 ms later)
    tissue = np.abs(images[1]) > 0.2
    assert tissue.mean() > 0.2 and np.angle(images[1])[tissue].std() > 0.5
    for later in (5, 9):
        assert np.abs(np.angle(images[later] * np.conj(images[1])))[tissue].mean() > 0.3

"""npgd-serve streams: images equal to the npgd-recon pipeline's, geometry, meta attributes,
config choices, 3-D volumes, two clients at once, --dump, no NaN or Inf pixels ever sent (a
test double's and the 3-D multi-coil noisy phantom of issue 26). The reference client's behaviour
(NUL-terminated strings, config fallback, JSON config in a TEXT, log TEXT messages), int16
output, retrospective undersampling and concurrency are in ``test_reference_client.py``."""

import logging
import threading
from dataclasses import replace

import ismrmrd
import numpy as np
import pytest
import torch

from npgd_recon.io.ismrmrd_file import read_raw
from npgd_recon.models.registry import (
    CPU_DEFAULT,
    MULTI_DEFAULT,
    SMALL_DEFAULT,
    SMALL_MULTI,
    SMALL_SINGLE,
    SOFT_SMALL,
)
from npgd_recon.recon.base import ReconOptions
from npgd_recon.recon.classic import ZeroFilled
from npgd_recon.recon.methods import make_reconstructor
from npgd_recon.recon.pipeline import reconstruct_study
from npgd_recon.server import session as session_module
from npgd_recon.server.config import SessionConfig
from npgd_recon.server.session import ReconstructorPool
from tests.server.mrd_client import read_file, stream_file, wait_for_log


def cli_magnitude(path, method="zerofill", weights=None):
    """What npgd-recon's pipeline makes of the same file: magnitude ``[n, y, x]``."""
    recon = make_reconstructor(method, ReconOptions(weights=weights, device="cpu"))
    return np.abs(reconstruct_study(read_raw(path), recon, progress=False).images)


def pixels(image):
    return image.data.reshape(image.data.shape[-2:])


def meta(image):
    return ismrmrd.Meta.deserialize(image.attribute_string)


def assert_same_images(images, expected):
    assert len(images) == len(expected)
    for image, reference in zip(images, expected):
        assert pixels(image).shape == reference.shape
        np.testing.assert_allclose(pixels(image), reference, rtol=1e-4,
                                   atol=1e-5 * reference.max())


def test_multislice_multicoil_equals_cli_pipeline(start_server, raw):
    server = start_server()
    reply = stream_file(server.address, raw / "multislice.h5")
    assert reply.closed and reply.errors == reply.warnings == []
    assert_same_images(reply.images, cli_magnitude(raw / "multislice.h5"))
    for number, image in enumerate(reply.images):
        assert image.data.dtype == np.float32 and image.image_type == ismrmrd.IMTYPE_MAGNITUDE
        assert image.slice == number and image.image_index == number + 1
        assert image.image_series_index == 1


def test_geometry_is_copied_from_the_acquisitions(start_server, raw):
    server = start_server()
    reply = stream_file(server.address, raw / "multislice.h5")
    _, acquisitions = read_file(raw / "multislice.h5")
    first_of_slice = {}
    for acquisition in acquisitions:
        if not acquisition.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
            first_of_slice.setdefault(acquisition.idx.slice, acquisition)
    for image in reply.images:
        acquisition = first_of_slice[image.slice]
        np.testing.assert_allclose(image.position[:], acquisition.position[:])
        np.testing.assert_allclose(image.read_dir[:], acquisition.read_dir[:])
        np.testing.assert_allclose(image.phase_dir[:], acquisition.phase_dir[:])
        np.testing.assert_allclose(image.slice_dir[:], acquisition.slice_dir[:])
        np.testing.assert_allclose(image.field_of_view[:], (40, 48, 3))
    assert [image.position[2] for image in reply.images] == [-3, 0, 3]


def test_meta_attributes(start_server, raw):
    server = start_server()
    images = stream_file(server.address, raw / "multislice.h5").images
    magnitude = np.stack([pixels(image) for image in images])
    for image in images:
        attributes = meta(image)
        assert attributes["DataRole"] == "Image"
        assert list(attributes["ImageProcessingHistory"]) == ["NPGD-RECON", "ZEROFILL"]
        width = float(attributes["WindowWidth"])
        assert float(attributes["WindowCenter"]) == pytest.approx(width / 2)
        assert 0 < width <= magnitude.max() * 1.0001


def test_ismrmrd_tool_file_with_noise_scan(start_server, shepp):
    server = start_server()
    reply = stream_file(server.address, shepp, "simplefft")
    assert reply.closed and reply.errors == reply.warnings == []
    assert_same_images(reply.images, cli_magnitude(shepp))
    assert pixels(reply.images[0]).shape == (64, 64)


def test_3d_volume_is_reconstructed_at_its_last_readout(start_server, raw):
    server = start_server()
    reply = stream_file(server.address, raw / "volume.h5")
    expected = cli_magnitude(raw / "volume.h5")
    assert len(expected) == 16
    assert_same_images(reply.images, expected)
    assert [image.slice for image in reply.images] == list(range(16))


def test_tiny_npgd_model_loaded_once_and_chosen_by_config(start_server, raw):
    weights = str(raw / "tiny.safetensors")
    server = start_server("zerofill", weights)
    reply = stream_file(server.address, raw / "multislice.h5", "npgd")
    assert reply.errors == reply.warnings == []
    assert_same_images(reply.images, cli_magnitude(raw / "multislice.h5", "npgd", weights))
    assert list(meta(reply.images[0])["ImageProcessingHistory"]) == ["NPGD-RECON", "NPGD"]
    again = stream_file(server.address, raw / "multislice.h5", 'method = "npgd"', text=True)
    assert_same_images(again.images, [pixels(image) for image in reply.images])
    config = SessionConfig(method="npgd")
    assert server.pool.get(config) is server.pool.get(config)


def test_uint16_and_series_index_from_config_text(start_server, raw):
    server = start_server()
    config = 'method = "zerofill"\ndtype = "uint16"\nseries_index = 7\n'
    reply = stream_file(server.address, raw / "multislice.h5", config, text=True)
    expected = cli_magnitude(raw / "multislice.h5")
    scale = 32767 / expected[0].max()
    for image, reference in zip(reply.images, expected):
        assert image.data.dtype == np.uint16 and image.image_series_index == 7
        np.testing.assert_allclose(pixels(image), np.rint(reference * scale), atol=1)
    assert pixels(reply.images[0]).max() == 32767


def test_client_may_not_load_files_from_the_server(start_server, raw):
    server = start_server()
    reply = stream_file(server.address, raw / "multislice.h5",
                        '{"method": "npgd", "weights": "/etc/passwd"}', text=True)
    assert reply.images == [] and reply.closed
    assert "not offered by this server" in reply.errors[0]


def test_two_clients_at_once(start_server, raw, shepp):
    server = start_server()
    replies = {}

    def run(name, path):
        replies[name] = stream_file(server.address, path)

    threads = [threading.Thread(target=run, args=(name, path))
               for name, path in (("multislice", raw / "multislice.h5"), ("shepp", shepp))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert_same_images(replies["multislice"].images, cli_magnitude(raw / "multislice.h5"))
    assert_same_images(replies["shepp"].images, cli_magnitude(shepp))


def test_dump_saves_the_stream_as_received(start_server, raw, tmp_path):
    server = start_server(dump_dir=tmp_path)
    stream_file(server.address, raw / "multislice.h5")
    dumps = list(tmp_path.glob("stream-*.h5"))
    assert len(dumps) == 1
    original, dumped = read_raw(raw / "multislice.h5"), read_raw(dumps[0])
    np.testing.assert_array_equal(dumped.volumes[0].kspace, original.volumes[0].kspace)
    np.testing.assert_array_equal(dumped.whitener, original.whitener)


def test_pool_gives_streams_the_default_model_and_cs_its_lambda():
    pool = ReconstructorPool("npgd", ReconOptions(device="cpu"))
    assert pool.get(pool.default).model_name == CPU_DEFAULT
    cs = SessionConfig("cswv", cs_lambda=0.02)
    assert pool.get(cs).lam == 0.02 and pool.get(SessionConfig("cswv")).lam is None


def test_a_stream_of_small_planes_gets_the_small_arm_of_the_default(start_server, raw):
    """The header fixes the problems' matrix and coil count before the first acquisition:
    48x40 slices get the CPU default's small-matrix arm (its single-coil small arm when the
    header says one receiver channel, its multi-coil small arm when more), said in the first
    log text; larger planes share the one default reconstructor (loaded once), or its
    multi-coil arm with more than one receiver channel; with two sets of maps small multi-coil
    planes get its soft-SENSE arm."""
    pool = ReconstructorPool("npgd", ReconOptions(device="cpu"))
    assert pool.get(pool.default, (48, 40)).model_name == SMALL_DEFAULT
    assert pool.get(pool.default, (48, 40), 1).model_name == SMALL_SINGLE
    assert pool.get(pool.default, (65, 40)) is pool.get(pool.default)
    assert pool.get(pool.default, (65, 40), 8).model_name == MULTI_DEFAULT
    assert pool.get(pool.default, (48, 40), 8).model_name == SMALL_MULTI
    soft = replace(pool.default, map_sets=2)  # a client's map_sets = 2: soft SENSE
    assert pool.get(soft, (48, 40), 8).model_name == SOFT_SMALL
    assert pool.get(soft, (65, 40), 8).model_name == MULTI_DEFAULT
    server = start_server("zerofill")
    reply = stream_file(server.address, raw / "multislice.h5", "npgd")
    assert reply.closed and reply.errors == [] and len(reply.images) == 3
    assert reply.infos[0].startswith(f"npgd-serve: method npgd, model {SMALL_MULTI} (")


class NonFinite(ZeroFilled):
    """Zero filling whose call number ``bad`` (from 0) returns a NaN and an Inf pixel."""

    def __init__(self, bad: int) -> None:
        super().__init__(torch.device("cpu"))
        self.bad, self.calls = bad, 0

    def reconstruct(self, *args, **kwargs):
        images = super().reconstruct(*args, **kwargs)
        if self.calls == self.bad:
            images[0, 1, 2], images[-1, 0, 0] = np.nan, np.inf
        self.calls += 1
        return images


@pytest.fixture
def non_finite(monkeypatch):
    """Requests for ``cstv`` get a :class:`NonFinite` whose ``bad`` call the test sets."""
    double = NonFinite(bad=-1)
    real = session_module.make_reconstructor
    monkeypatch.setattr(session_module, "make_reconstructor", lambda method, options=None: (
        double if method == "cstv" else real(method, options)))
    return double


def test_a_slice_with_nan_pixels_is_not_sent_and_the_stream_goes_on(start_server, raw,
                                                                    non_finite, caplog):
    caplog.set_level(logging.INFO, logger="npgd_recon.server")
    non_finite.bad = 1
    server = start_server()
    reply = stream_file(server.address, raw / "multislice.h5", "cstv")
    assert reply.closed and len(reply.errors) == 1
    message = "slice 1: 2 of 1920 pixels are NaN or Inf; its 1 images were not sent"
    assert reply.errors[0].startswith(f"npgd-serve: error: {message}")
    assert [image.slice for image in reply.images] == [0, 2]
    assert [image.image_index for image in reply.images] == [1, 2]
    assert_same_images(reply.images, cli_magnitude(raw / "multislice.h5")[[0, 2]])
    assert reply.infos[-1].startswith("processing time for image series 1: 2 images, ")
    [record] = wait_for_log(caplog, message)
    assert record.levelno == logging.WARNING


def test_a_3d_volume_with_nan_pixels_sends_none_of_its_images(start_server, raw, non_finite):
    non_finite.bad = 1  # the second batch of the volume's 16 planes
    server = start_server()
    reply = stream_file(server.address, raw / "volume.h5", 'method = "cstv"\ndtype = "int16"',
                        text=True)
    assert reply.closed and reply.images == [] and non_finite.calls == 2
    assert "the 3-D volume: 2 of 6144 pixels are NaN or Inf; its 16 images were not sent" in \
        reply.errors[0]


def test_issue_26_phantom_streams_finite_images(start_server, tmp_path):
    """The 3-D multi-coil noisy phantom that once came back as NaN, with the default config."""
    from npgd_recon.cli.simulate import main as simulate

    path = tmp_path / "p.h5"
    assert simulate(["--phantom", "shepp-logan", "--3d", "--coils", "4", "--undersample", "4",
                     "--noise", "0.005", "--out", str(path)]) == 0
    server = start_server("npgd")
    reply = stream_file(server.address, path, None)
    assert reply.closed and reply.errors == [] and len(reply.images) == 64
    assert all(np.isfinite(pixels(image)).all() for image in reply.images)
    assert max(pixels(image).max() for image in reply.images) > 0
    # map_sets = 2 asks for soft SENSE, but a 3-D volume keeps one set of volumetric maps: the
    # model is the one-set choice for its ky-kz planes (npgd-recon chooses the same way)
    sets = stream_file(server.address, path, 'method = "npgd"\nmap_sets = 2', text=True)
    assert sets.closed and sets.errors == [] and len(sets.images) == 64
    assert sets.infos[0].startswith(f"npgd-serve: method npgd, model {SMALL_MULTI} ("), \
        sets.infos[0]

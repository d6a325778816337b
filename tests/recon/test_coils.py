"""Coil compression: orthonormal virtual coils that keep white noise white, the same result on
a dense stack and on a 3-D HybridStack, lossless when the data span few coils, and the pipeline
compresses only arrays of more coils than asked for."""

import numpy as np
import pytest

from npgd_recon.core.metrics import snr_db_magnitude
from npgd_recon.io.hybrid import HybridStack
from npgd_recon.io.ismrmrd_file import read_raw
from npgd_recon.recon.coils import coil_compression, compress
from npgd_recon.recon.methods import make_reconstructor
from npgd_recon.recon.pipeline import reconstruct_study
from npgd_recon.sim.phantoms import shepp_logan
from npgd_recon.sim.scan_writer import ScanSettings, write_scan
from tests.conftest import needs_bart


def low_rank(coils=12, rank=4, shape=(3, 16, 12), seed=0):
    """k-space ``[n, coil, y, x]`` whose coils are ``rank`` mixtures, 30 % sampled."""
    rng = np.random.default_rng(seed)
    sources = rng.standard_normal((shape[0], rank, *shape[1:])) + 1j * rng.standard_normal(
        (shape[0], rank, *shape[1:]))
    mixing = rng.standard_normal((coils, rank)) + 1j * rng.standard_normal((coils, rank))
    mask = rng.random((shape[0], *shape[1:])) < 0.3
    return (np.einsum("cr,nryx->ncyx", mixing, sources) * mask[:, None]).astype(np.complex64)


def test_virtual_coils_are_orthonormal_and_lossless_for_data_of_lower_rank():
    kspace = low_rank()
    compression = coil_compression(kspace, 4)
    matrix = compression.matrix
    assert matrix.shape == (4, 12) and matrix.dtype == np.complex64
    # orthonormal rows: unit white noise per coil stays unit white noise per virtual coil
    np.testing.assert_allclose(matrix @ matrix.conj().T, np.eye(4), atol=1e-5)
    assert compression.kept == pytest.approx(1.0, abs=1e-6)
    virtual = compress(kspace, compression)
    assert virtual.shape == (3, 4, 16, 12)
    back = np.einsum("vc,nvyx->ncyx", matrix.conj(), virtual)  # A^H A k = k in the data's span
    np.testing.assert_allclose(back, kspace, atol=1e-4 * np.abs(kspace).max())
    assert coil_compression(kspace, 2).kept < 0.99  # fewer than the rank loses signal
    assert compression.describe().startswith("12 -> 4 virtual coils (100.0 %")


def test_a_hybrid_stack_is_compressed_as_its_dense_array():
    rng = np.random.default_rng(1)
    mask = rng.random((9, 8)) < 0.4
    rows, cols = np.nonzero(mask)
    profiles = (rng.standard_normal((len(rows), 6, 7))
                + 1j * rng.standard_normal((len(rows), 6, 7))).astype(np.complex64)
    stack = HybridStack(profiles, rows, cols, (9, 8))
    dense = np.asarray(stack)
    compression = coil_compression(stack, 3)
    np.testing.assert_allclose(compression.matrix, coil_compression(dense, 3).matrix, atol=1e-5)
    virtual = compress(stack, compression)
    assert isinstance(virtual, HybridStack)
    np.testing.assert_allclose(np.asarray(virtual), compress(dense, compression), atol=1e-5)


@pytest.mark.parametrize("virtual", [0, 13])
def test_the_count_must_fit_the_coils(virtual):
    with pytest.raises(ValueError, match="virtual coils must be from 1 to the 12 coils"):
        coil_compression(low_rank(), virtual)


@needs_bart
def test_the_pipeline_compresses_more_coils_than_asked_and_keeps_the_image(tmp_path, capsys):
    write_scan(tmp_path / "scan.h5", shepp_logan((16, 40, 32)), volumetric=True,
               settings=ScanSettings(coils=12, noise=0.002))
    study = read_raw(tmp_path / "scan.h5")
    zerofill = make_reconstructor("zerofill")
    full = reconstruct_study(study, zerofill, virtual_coils=0, progress=False).images
    calls = []
    original = zerofill.reconstruct

    def spy(kspace, mask, maps, noise_std=None):
        calls.append(kspace.shape[1])
        return original(kspace, mask, maps, noise_std)

    zerofill.reconstruct = spy
    compressed = reconstruct_study(study, zerofill, virtual_coils=6)
    assert set(calls) == {6}
    assert "(12 -> 6 virtual coils" in capsys.readouterr().err
    volume = full.reshape(-1, full.shape[-1])  # the whole volume as one image
    assert snr_db_magnitude(volume, compressed.images.reshape(volume.shape)) > 30
    calls.clear()
    reconstruct_study(study, zerofill, virtual_coils=12, progress=False)
    assert set(calls) == {12}  # no more coils than asked for: untouched

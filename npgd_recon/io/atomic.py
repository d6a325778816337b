"""All-or-nothing outputs: every writer of the project stages its results and commits them last.

:class:`Outputs` collects the folders and files one command will write. Each path is checked when
it is added, before any work starts: a path that exists is refused unless ``force``; a folder
where a file should go (or the reverse) is refused even with ``force``; a parent that cannot be
created or written is refused; messages name the user's path, never a temporary one. Work writes
into staging paths beside the targets (same file system, so the final renames are atomic);
:meth:`Outputs.commit` moves every staged output into place, keeping replaced ones aside until all
have moved, so that a failure, an exception or Ctrl-C leaves the targets as they were and no
temporary name behind. Staged folders get the user's umask, not ``mkdtemp``'s 0700. An
``OSError`` raised inside the block or by the commit names the user's path where it named a
staging path (``out/IM00001.dcm``, never ``.out.9urb2fqy.part/IM00001.dcm``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from npgd_recon.core.errors import NpgdError

__all__ = ["OutputError", "Outputs", "atomic_output_dir"]


class OutputError(NpgdError):
    """An output path cannot be written; the message names the path and why.

    ``needs_force`` is True when the only obstacle is an existing output (callers may say how
    to allow replacing it).
    """

    def __init__(self, message: str, needs_force: bool = False) -> None:
        super().__init__(message)
        self.needs_force = needs_force


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _writable_parent(path: Path) -> Path:
    """The nearest existing ancestor of ``path``, which must be a writable folder."""
    parent = path.parent
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: no permission to write in {parent}")
    return parent


class Outputs:
    """A set of output folders and files written together or not at all.

    Use as a context manager: the body stages everything, leaving the block normally commits,
    an exception (``KeyboardInterrupt`` included) discards every staged output.
    """

    def __init__(self, force: bool = False) -> None:
        self.force = force
        self._targets: list[tuple[Path, bool]] = []
        self._staged: dict[Path, Path] = {}
        self._created: list[Path] = []

    def folder(self, path: str | os.PathLike) -> Path:
        """Check ``path`` as an output folder and return the empty staging folder to fill.

        An existing empty folder counts as free; a non-empty one needs ``force``.
        """
        return self._add(Path(path), folder=True)

    def file(self, path: str | os.PathLike) -> Path:
        """Check ``path`` as an output file and return the staging path to write it to."""
        return self._add(Path(path), folder=False)

    def _add(self, path: Path, folder: bool) -> Path:
        if any(path == target for target, _ in self._targets):
            raise OutputError(f"{path} is named as two outputs")
        if path.exists() or path.is_symlink():
            if folder and not path.is_dir():
                raise OutputError(f"{path} exists and is not a folder")
            if not folder and path.is_dir():
                raise OutputError(f"{path} is a folder; the output is a file")
            busy = not folder or any(path.iterdir())
            if busy and not self.force:
                raise OutputError(f"{path} exists{' and is not empty' if folder else ''}",
                                  needs_force=True)
        _writable_parent(path)
        self._targets.append((path, folder))
        return self._staging(path, folder)

    def _staging(self, path: Path, folder: bool) -> Path:
        missing = []
        parent = path.parent
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"{path}: cannot create its folder ({error.strerror})") from None
        self._created += reversed(missing)
        if folder:
            staged = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part",
                                           dir=path.parent))
            staged.chmod(0o777 & ~_umask())
        else:
            handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part",
                                            dir=path.parent)
            os.close(handle)
            staged = Path(name)
            staged.chmod(0o666 & ~_umask())
        self._staged[path] = staged
        return staged

    def commit(self) -> None:
        """Move every staged output into place (replaced outputs are deleted once all moved)."""
        aside: list[tuple[Path, Path]] = []
        moved: list[Path] = []
        try:
            for path, _ in self._targets:
                if path.exists():
                    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old",
                                                dir=path.parent))
                    os.replace(path, old / "previous")
                    aside.append((path, old))
                os.replace(self._staged[path], path)
                moved.append(path)
        except BaseException as error:
            for path in moved:
                _remove(path)
            for path, old in aside:
                os.replace(old / "previous", path)
                shutil.rmtree(old, ignore_errors=True)
            self._name_targets(error)
            self.discard()
            raise
        for _, old in aside:
            shutil.rmtree(old, ignore_errors=True)
        self._staged.clear()
        self._created.clear()

    def discard(self) -> None:
        """Delete every staged output and the parent folders this set created."""
        for staged in self._staged.values():
            _remove(staged)
        self._staged.clear()
        for folder in reversed(self._created):
            try:
                folder.rmdir()
            except OSError:
                pass
        self._created.clear()

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.commit()
        else:
            self._name_targets(value)
            self.discard()

    def _name_targets(self, error: BaseException) -> None:
        """Rewrite staging paths in an ``OSError``'s file names and message to the user's."""
        if not isinstance(error, OSError):
            return

        def user(text: str) -> str:
            for target, staged in self._staged.items():
                text = text.replace(str(staged), str(target))
            return text

        for name in ("filename", "filename2", "strerror"):
            if isinstance(getattr(error, name), str):  # setting None would change the message
                setattr(error, name, user(getattr(error, name)))
        if error.strerror is None:
            error.args = tuple(user(a) if isinstance(a, str) else a for a in error.args)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_output_dir(out: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """One output folder, all or nothing: ``with atomic_output_dir(out) as staging: ...``."""
    with Outputs(force) as outputs:
        yield outputs.folder(out)

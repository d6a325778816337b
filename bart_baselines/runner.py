"""Run the ``bart`` binary on numpy arrays, each call in its own temporary folder.

Debian's ``bart`` (v0.8) ships no Python helpers, so this is the one place that starts it:
inputs are written there with :func:`writecfl`, the command runs with that folder as its working
directory (file names in the command are bare names inside it), outputs are read back with
:func:`readcfl`, and the folder is removed whatever happens.

The binary is ``$BART_TOOLBOX_PATH/bart`` when that variable is set and the file exists there,
otherwise ``bart`` on ``PATH``.

Threads are a budget, never inherited: every call sets ``OMP_NUM_THREADS`` explicitly (the
``threads`` argument, else :func:`default_threads`: what :func:`set_default_threads` set, else
``$NPGD_THREADS``, else the cores this process may run on) and ``OMP_WAIT_POLICY=PASSIVE``, so
that idle OpenMP threads sleep instead of spinning on cores that other work needs (BART's
default busy-wait made a single-slice CS 30x slower on a loaded 2-core machine). A server that
runs several BART calls at once gives each ``cores // workers`` threads.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from bart_baselines.cfl import readcfl, writecfl

INSTALL_HINT = (
    "install it with `apt-get install -y bart` (Debian/Ubuntu) or set BART_TOOLBOX_PATH to the "
    "folder that holds the `bart` executable"
)
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class BartError(Exception):
    """A ``bart`` call failed; carries the command line and BART's own message.

    Attributes:
        command: the full argument list that was run (binary first).
        message: BART's stderr (or stdout when stderr was empty), stripped.
        returncode: the exit status, or None when the process never ran.
    """

    def __init__(self, command: Sequence[str], message: str, returncode: int | None = None):
        self.command = list(command)
        self.message = _ANSI_ESCAPE.sub("", message).strip()
        self.returncode = returncode
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.returncode is None:
            status = ""
        elif self.returncode < 0:
            try:
                status = f" (killed by {signal.Signals(-self.returncode).name})"
            except ValueError:
                status = f" (killed by signal {-self.returncode})"
        else:
            status = f" (exit {self.returncode})"
        detail = " | ".join(line.strip() for line in self.message.splitlines() if line.strip())
        return f"`{shlex.join(self.command)}` failed{status}: {detail or 'no message'}"


class BartInputError(ValueError):
    """Data or settings BART cannot work with (no sampled signal, a bad thread budget); the
    message says what, in one line. Callers outside this package treat it as a user error."""


class BartNotFoundError(BartError):
    """No ``bart`` executable in ``$BART_TOOLBOX_PATH`` or on ``PATH``."""

    def __str__(self) -> str:
        return self.message


def find_bart() -> str:
    """Path of the ``bart`` executable (``$BART_TOOLBOX_PATH/bart`` first, then ``PATH``).

    Raises:
        BartNotFoundError: neither place holds an executable ``bart``.
    """
    toolbox = os.environ.get("BART_TOOLBOX_PATH")
    if toolbox:
        candidate = Path(toolbox) / "bart"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("bart")
    if found is None:
        where = f"BART_TOOLBOX_PATH={toolbox!r} nor " if toolbox else ""
        raise BartNotFoundError(["bart"], f"no bart executable in {where}PATH; {INSTALL_HINT}")
    return found


_default_threads: int | None = None


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_default_threads(threads: int | None) -> None:
    """Threads for every later call that names none (None: back to the environment's rule)."""
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1 or None, got {threads}")
    global _default_threads
    _default_threads = threads


def default_threads() -> int:
    """Threads of a call that names none: :func:`set_default_threads`, else ``$NPGD_THREADS``,
    else :func:`available_cores`."""
    if _default_threads is not None:
        return _default_threads
    given = os.environ.get("NPGD_THREADS", "")
    if given.strip():
        try:
            threads = int(given)
        except ValueError:
            threads = 0
        if threads < 1:
            raise BartInputError(f"NPGD_THREADS must be a whole number >= 1, got {given!r}")
        return threads
    return available_cores()


def _check_name(name: str) -> None:
    if not name or os.sep in name or name in (".", "..") or name.startswith("-"):
        raise ValueError(f"cfl name {name!r} must be a bare file name like 'kspace'")


def run_bart(
    args: Sequence[str],
    inputs: Mapping[str, np.ndarray] | None = None,
    outputs: Sequence[str] = (),
    threads: int | None = None,
) -> dict[str, np.ndarray]:
    """Run ``bart *args`` in a private temporary folder and read its outputs back.

    Args:
        args: the sub-command and its arguments, e.g. ``["fft", "-u", "3", "img", "k"]``; file
            names are bare names inside the temporary folder.
        inputs: arrays to write first, by name (numpy axes are BART dims, see ``cfl``).
        outputs: names of the cfl files to read back after the call.
        threads: OpenMP threads of the call (None: :func:`default_threads`).

    Returns:
        ``{name: array}`` for every name in ``outputs`` (complex64, trailing 1-dims dropped).

    Raises:
        BartNotFoundError: no ``bart`` executable.
        BartError: non-zero exit, or a requested output that BART did not write.
        ValueError: a name that is not a bare file name, ``threads < 1`` or a bad
            ``$NPGD_THREADS``.
    """
    return start_bart(args, inputs, outputs, threads).result()


class BartCall:
    """A ``bart`` process started by :func:`start_bart`, running in its own temporary folder.

    :meth:`result` waits for it; :meth:`kill` stops it. Either removes the folder, so a caller
    running several calls at once kills the others when one fails or Ctrl-C lands.
    """

    def __init__(self, command: list[str], folder: tempfile.TemporaryDirectory,
                 process: subprocess.Popen, outputs: Sequence[str]) -> None:
        self.command, self._folder, self._process = command, folder, process
        self._outputs = list(outputs)

    def result(self) -> dict[str, np.ndarray]:
        """Wait for the call and read its outputs (see :func:`run_bart`); whatever interrupts
        the wait (Ctrl-C included) kills the process first."""
        process, folder = self._process, Path(self._folder.name)
        try:
            with process:
                try:
                    stdout, stderr = process.communicate()
                except BaseException:  # subprocess.run would leave it unwaited
                    process.kill()
                    process.wait()
                    raise
            if process.returncode != 0:
                raise BartError(self.command, stderr.strip() or stdout, process.returncode)
            results = {}
            for name in self._outputs:
                if not (folder / f"{name}.hdr").is_file():
                    raise BartError(self.command, f"bart wrote no output {name!r}",
                                    process.returncode)
                results[name] = readcfl(folder / name)
            return results
        finally:
            self._folder.cleanup()

    def kill(self) -> None:
        """Stop the process (if it still runs), wait for it and remove its folder."""
        with self._process as process:
            process.kill()
            process.communicate()
        self._folder.cleanup()


def start_bart(
    args: Sequence[str],
    inputs: Mapping[str, np.ndarray] | None = None,
    outputs: Sequence[str] = (),
    threads: int | None = None,
) -> BartCall:
    """Start ``bart *args`` as :func:`run_bart` does (same arguments and errors) without waiting
    for it: :meth:`BartCall.result` gives what :func:`run_bart` returns."""
    inputs = dict(inputs or {})
    for name in [*inputs, *outputs]:
        _check_name(name)
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1 or None, got {threads}")
    command = [find_bart(), *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads or default_threads()),
           "OMP_WAIT_POLICY": "PASSIVE"}
    folder = tempfile.TemporaryDirectory(prefix="bart-")
    try:
        for name, array in inputs.items():
            writecfl(Path(folder.name) / name, array)
        try:
            process = subprocess.Popen(command, cwd=folder.name, env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        except OSError as error:
            raise BartError(command, f"could not start bart: {error}") from error
    except BaseException:
        folder.cleanup()
        raise
    return BartCall(command, folder, process, outputs)

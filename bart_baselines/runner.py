"""Run the ``bart`` binary on numpy arrays, each call in its own temporary folder.

Debian's ``bart`` (v0.8) ships no Python helpers, so this is the one place that starts it:
inputs are written there with :func:`writecfl`, the command runs with that folder as its working
directory (file names in the command are bare names inside it), outputs are read back with
:func:`readcfl`, and the folder is removed whatever happens.

The binary is ``$BART_TOOLBOX_PATH/bart`` when that variable is set and the file exists there,
otherwise ``bart`` on ``PATH``.
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
        threads: sets ``OMP_NUM_THREADS`` for the call; None inherits the environment.

    Returns:
        ``{name: array}`` for every name in ``outputs`` (complex64, trailing 1-dims dropped).

    Raises:
        BartNotFoundError: no ``bart`` executable.
        BartError: non-zero exit, or a requested output that BART did not write.
        ValueError: a name that is not a bare file name, or ``threads < 1``.
    """
    inputs = dict(inputs or {})
    for name in [*inputs, *outputs]:
        _check_name(name)
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1 or None, got {threads}")
    command = [find_bart(), *map(str, args)]
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory(prefix="bart-") as folder:
        for name, array in inputs.items():
            writecfl(Path(folder) / name, array)
        try:
            done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
        except OSError as error:
            raise BartError(command, f"could not start bart: {error}") from error
        if done.returncode != 0:
            raise BartError(command, done.stderr.strip() or done.stdout, done.returncode)
        results = {}
        for name in outputs:
            if not (Path(folder) / f"{name}.hdr").is_file():
                raise BartError(command, f"bart wrote no output {name!r}", done.returncode)
            results[name] = readcfl(Path(folder) / name)
    return results

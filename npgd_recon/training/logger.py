"""The run's CSV log, ``RUN/log.csv``: one row per training step.

Columns: ``step``, ``loss`` (the P2 loss of the step's batch), ``lr`` (the network's learning
rate after the step), ``alpha`` (the learned step size), ``val_snr_db`` and ``val_ssim`` (on
validation steps only, empty otherwise) and ``seconds`` (training time so far, resumed runs
included).

:class:`RunLog` is a context manager: the file is closed however the block ends, and a log that
is not ``enabled`` (the ranks of a ``torchrun`` job other than 0) opens nothing and writes
nothing.
"""

from __future__ import annotations

import csv
from pathlib import Path
from types import TracebackType

__all__ = ["COLUMNS", "RunLog"]

COLUMNS = ("step", "loss", "lr", "alpha", "val_snr_db", "val_ssim", "seconds")


class RunLog:
    """``log.csv`` of a run: a new file with its header, or appended to when ``append`` and the
    file exists (a resumed run)."""

    def __init__(self, path: str | Path, *, append: bool = False, enabled: bool = True) -> None:
        self.path, self.append, self.enabled = Path(path), append, enabled
        self._file = None
        self._writer = None

    def __enter__(self) -> RunLog:
        if self.enabled:
            append = self.append and self.path.exists()
            self._file = open(self.path, "a" if append else "w", newline="")
            self._writer = csv.writer(self._file)
            if not append:
                self._writer.writerow(COLUMNS)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._file is not None:
            self._file.close()
            self._file = self._writer = None

    def row(self, step: int, loss: float, lr: float, alpha: float, validation: dict | None,
            seconds: float) -> None:
        """One step; ``validation`` (``snr_db``, ``ssim``) on validation steps, else ``None``."""
        if self._writer is None:
            return
        self._writer.writerow([step, f"{loss:.6g}", f"{lr:.3g}", f"{alpha:.4f}",
                               f"{validation['snr_db']:.3f}" if validation else "",
                               f"{validation['ssim']:.4f}" if validation else "",
                               f"{seconds:.1f}"])

    def flush(self) -> None:
        """Write the buffered rows (before a checkpoint, so the two agree)."""
        if self._file is not None:
            self._file.flush()

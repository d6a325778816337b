"""What every command shares: the parser, the model and mask options, and error handling.

- :class:`Parser`: argparse with usage errors as one line and exit status 2.
- :func:`add_model_options`: ``--weights``, ``--device``, ``--precision``, ``--batch``,
  ``--map-error``, the same names, choices and defaults in every command that runs a model.
- :func:`add_mask_options`: ``--mask`` (choices: :data:`sampling.GENERATORS`) and ``--seed``.
- :func:`run`: calls a command body. User errors (:data:`USER_ERRORS`: the project's
  :class:`~npgd_recon.core.errors.NpgdError`, BART failures and inputs BART cannot use, masks
  that cannot be made as asked, file-system errors) become
  ``prog: error: message`` on stderr and exit status 2; Ctrl-C becomes ``prog: interrupted`` and
  exit status 130 (outputs are staged, so nothing is left behind; :mod:`npgd_recon.io.atomic`).
  Any other exception is a bug: ``prog: internal error: message`` and exit status 1, with the
  full traceback first when the environment sets ``NPGD_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable

from bart_baselines.runner import BartError, BartInputError
from npgd_recon.core.choices import (
    CPU_CALL_BYTES,
    DEFAULT_BATCH,
    DEVICES,
    MAP_ERROR_WEIGHT,
    MAX_COIL_PLANES,
    PRECISIONS,
)
from npgd_recon.core.errors import NpgdError, one_line
from sampling import GENERATORS, MaskError

USER_ERRORS = (NpgdError, BartError, BartInputError, MaskError, OSError)
DEBUG_VARIABLE = "NPGD_DEBUG"


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line and exit status 2, and whose help
    shows the module docstrings it is given without their reStructuredText backticks."""

    def __init__(self, *args, **kwargs) -> None:
        for key in ("description", "epilog"):
            if kwargs.get(key):
                kwargs[key] = kwargs[key].replace("``", "")
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_model_options(parser: argparse.ArgumentParser, *, weights: bool = True,
                      batch: bool = True) -> None:
    """``--weights``, ``--device``, ``--precision``, ``--batch`` and ``--map-error``."""
    if weights:
        parser.add_argument("--weights", help="shipped model name or .safetensors file "
                                              "(default: the method's shipped model for the "
                                              "device and the data's matrix)")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="where networks run (auto: CUDA when present, else CPU)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="network precision (auto: bf16 where the hardware has it natively)")
    if batch:
        parser.add_argument("--batch", type=int, default=DEFAULT_BATCH,
                            help=f"at most this many 2-D problems per network call (default "
                                 f"{DEFAULT_BATCH}; fewer for many coils: at most "
                                 f"{MAX_COIL_PLANES} coil images; on the CPU fewer for large "
                                 f"planes, {CPU_CALL_BYTES // 2**20} MiB per tensor)")
    parser.add_argument("--map-error", type=float, default=MAP_ERROR_WEIGHT, metavar="W",
                        help=f"how much of the coil maps' model error (calibration data one "
                             f"set of maps cannot hold) a network is told as noise (default "
                             f"{MAP_ERROR_WEIGHT:g}; 0: the thermal noise alone)")


def add_mask_options(parser: argparse.ArgumentParser) -> None:
    """``--mask`` and ``--seed`` for retrospective undersampling."""
    parser.add_argument("--mask", choices=sorted(GENERATORS), default="vdrad",
                        help="mask family for the undersampling (default vdrad)")
    parser.add_argument("--seed", type=int, default=0, help="mask seed (default 0)")


def _interrupt(signum: int, frame: object) -> None:
    """SIGINT: silence ResourceWarning first, then raise KeyboardInterrupt.

    Ctrl-C can land between a call that opens something (a file, the pipes of a bart Popen)
    and the ``with`` or ``try`` that would close it; the unwinding then frees it unclosed. The
    process is ending and the OS closes it, so no ResourceWarning may follow the one line, and
    the filter must be in place before the unwinding starts, not when :func:`run` catches it.
    """
    warnings.simplefilter("ignore", ResourceWarning)
    raise KeyboardInterrupt


def run(prog: str, body: Callable[[], int]) -> int:
    """Run a command body: its status; user errors as one line and exit 2, Ctrl-C as exit 130,
    anything else as one ``internal error`` line and exit 1 (``NPGD_DEBUG=1``: traceback too).

    Python's own Ctrl-C handler is replaced by :func:`_interrupt` while the body runs (a SIGINT
    ignored or handled by someone else is left as it is)."""
    replace = (threading.current_thread() is threading.main_thread()
               and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    if replace:
        signal.signal(signal.SIGINT, _interrupt)
    try:
        return _run(prog, body)
    finally:
        if replace:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _run(prog: str, body: Callable[[], int]) -> int:
    try:
        return body()
    except USER_ERRORS as error:
        text = one_line(error)
        if getattr(error, "needs_force", False):
            text += " (pass --force to replace it)"
        print(f"{prog}: error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # raised by _interrupt, or by the body itself
        warnings.simplefilter("ignore", ResourceWarning)
        print(f"{prog}: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception as error:
        name, message = type(error).__name__, one_line(error)
        text = f"{prog}: internal error: {name}" + (f": {message}" if message != name else "")
        if os.environ.get(DEBUG_VARIABLE) == "1":
            traceback.print_exc()
            print(text, file=sys.stderr)
        else:
            print(f"{text} ({DEBUG_VARIABLE}=1 shows the traceback)", file=sys.stderr)
        return 1

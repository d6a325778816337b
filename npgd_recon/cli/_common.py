"""What every command shares: the parser, the model and mask options, and error handling.

- :class:`Parser`: argparse with usage errors as one line and exit status 2.
- :func:`add_model_options`: ``--weights``, ``--device``, ``--precision``, ``--batch``, the same
  names, choices and defaults in every command that runs a model.
- :func:`add_mask_options`: ``--mask`` (choices: :data:`sampling.GENERATORS`) and ``--seed``.
- :func:`run`: calls a command body; the project's errors (:class:`~npgd_recon.core.errors.
  NpgdError`), BART failures, bad values from the leaf packages and file-system errors become
  ``prog: error: message`` on stderr and exit status 2; Ctrl-C becomes ``prog: interrupted`` and
  exit status 130 (outputs are staged, so nothing is left behind; :mod:`npgd_recon.io.atomic`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from bart_baselines.runner import BartError
from npgd_recon.core.choices import DEVICES, PRECISIONS
from npgd_recon.core.errors import NpgdError
from sampling import GENERATORS

USER_ERRORS = (NpgdError, BartError, ValueError, OSError)


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
    """``--weights``, ``--device``, ``--precision`` and ``--batch``."""
    if weights:
        parser.add_argument("--weights", help="shipped model name or .safetensors file "
                                              "(default: the method's shipped model)")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="where networks run (auto: CUDA when present, else CPU)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="network precision (auto: bf16 where the hardware has it natively)")
    if batch:
        parser.add_argument("--batch", type=int, default=8,
                            help="2-D problems per network call (default 8)")


def add_mask_options(parser: argparse.ArgumentParser) -> None:
    """``--mask`` and ``--seed`` for retrospective undersampling."""
    parser.add_argument("--mask", choices=sorted(GENERATORS), default="vdrad",
                        help="mask family for the undersampling (default vdrad)")
    parser.add_argument("--seed", type=int, default=0, help="mask seed (default 0)")


def run(prog: str, body: Callable[[], int]) -> int:
    """Run a command body; user errors as one line and exit 2, Ctrl-C as exit 130."""
    try:
        return body()
    except USER_ERRORS as error:
        text = (str(error).splitlines() or [type(error).__name__])[0]
        if getattr(error, "needs_force", False):
            text += " (pass --force to replace it)"
        print(f"{prog}: error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; nothing was written", file=sys.stderr)
        return 130

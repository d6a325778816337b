"""The project's error base class, and the rule for what is a user error.

Every error a user can cause (a bad file, a bad option, a model that does not fit the data) is an
:class:`NpgdError` with a one-line message in the library's terms; the command-line tools turn it
into ``prog: error: message`` and exit status 2 (:func:`npgd_recon.cli._common.run`), the server
into one log line and one ``TEXT`` to the client. It derives from ``ValueError`` so that callers
that catch ``ValueError`` keep working. Code that calls the leaf packages (``sampling``, which
cannot import this one) turns their ``ValueError`` about the user's input into an
:class:`NpgdError` where it calls them.

Any other exception is a bug and keeps its traceback: the command-line tools print one
``internal error`` line (the traceback too with ``NPGD_DEBUG=1``), the server logs the traceback.
"""

from __future__ import annotations

__all__ = ["NpgdError", "one_line"]


class NpgdError(ValueError):
    """A problem with the user's input, options or files; the message says what, in one line."""


def one_line(error: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    return (str(error).splitlines() or [type(error).__name__])[0]

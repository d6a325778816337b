"""The project's error base class.

Every error a user can cause (a bad file, a bad option, a model that does not fit the data) is an
:class:`NpgdError` with a one-line message in the library's terms; the command-line tools turn it
into ``prog: error: message`` and exit status 2 (:func:`npgd_recon.cli._common.run`). It derives
from ``ValueError`` so that callers that catch ``ValueError`` keep working.
"""

from __future__ import annotations

__all__ = ["NpgdError"]


class NpgdError(ValueError):
    """A problem with the user's input, options or files; the message says what, in one line."""

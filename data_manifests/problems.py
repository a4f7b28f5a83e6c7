"""What goes wrong while reading a corpus tree: one error type, one warning type, and the fail-or-skip rule.

Builders collect every problem of a kind before reporting, so one run lists all malformed names or missing
files at once instead of stopping at the first.
"""

from __future__ import annotations

import os
import warnings

from ser_common.listing import indented


class CorpusError(ValueError):
    """A corpus tree that cannot be turned into a manifest; the message names the root and the offending files."""


class CorpusWarning(UserWarning):
    """Something left out of a manifest (a skipped file, a missing transcript); the message says what and why."""


class FoldWarning(CorpusWarning):
    """Fold groups that cannot evaluate emotions speaker-independently (speakers and labels confounded, no folds).

    ``ser-manifest`` prints these on stderr like every :class:`CorpusWarning` and repeats them under the count
    table, so they are seen where the folds are.
    """


def fail_or_skip(problems: list[str], what: str, root: str | os.PathLike, skip: bool, hint: str = "") -> None:
    """Report ``problems`` (one line each): raise :class:`CorpusError`, or with ``skip`` warn that they are left out.

    ``what`` describes the items (e.g. ``"malformed file name(s)"``); ``hint`` is appended to the error
    (e.g. the option that skips them instead). Does nothing when ``problems`` is empty.
    """
    if not problems:
        return
    head = f"{root}: {len(problems)} {what}"
    if skip:
        warnings.warn(f"{head}, left out:" + indented(problems), CorpusWarning, stacklevel=3)
        return
    raise CorpusError(head + ":" + indented(problems) + (f"\n{hint}" if hint else ""))

"""Long lists in messages: the first few items, then how many were left out.

Every error and warning that names offenders goes through :func:`shorten` (inline lists) or
:func:`indented` (one offender a line), so a message never grows with the size of a corpus.
"""

from __future__ import annotations

from typing import Iterable


def shorten(items: Iterable[object], limit: int, sep: str = ", ", more: str = " … and {n} more",
            wrap: tuple[str, str] = ("", "")) -> str:
    """The first ``limit`` of ``items`` (each shown with ``str``), joined by ``sep`` between ``wrap``, then
    ``more`` with ``{n}`` = how many were left out and ``{total}`` = how many there are (``more`` is left
    off when every item is shown).

    ``shorten("abc", 2)`` -> ``"a, b … and 1 more"``;
    ``shorten("abc", 2, wrap=("[", "]"))`` -> ``"[a, b] … and 1 more"``;
    ``shorten("abc", 2, more=" … ({total} rows)")`` -> ``"a, b … (3 rows)"``;
    ``shorten("abc", 2, more=", …")`` -> ``"a, b, …"`` (``more`` need not name a count).
    """
    items = [str(x) for x in items]
    rest = len(items) - limit
    shown = wrap[0] + sep.join(items[:limit]) + wrap[1]
    return shown + more.format(n=rest, total=len(items)) if rest > 0 else shown


def indented(items: Iterable[object], limit: int = 10) -> str:
    """One item a line, each after a line break and two spaces, cut after ``limit`` with ``… and N more``.

    Meant to follow a head that ends in ``:`` (``"3 missing audio file(s):" + indented(paths)``).
    """
    return shorten(items, limit, sep="\n  ", more="\n  … and {n} more", wrap=("\n  ", ""))

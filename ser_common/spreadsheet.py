"""CSV cells that a spreadsheet cannot run as formulas (OWASP "CSV injection" advice).

A text cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read by Excel,
LibreOffice and Google Sheets as a formula (``=HYPERLINK(…)``, ``=cmd|' /C calc'!A0``), so an utterance
named ``=1+2.flac`` or a label ``@SUM(A1)`` in a prediction CSV could run one. :func:`safe_cell` prefixes
such cells with a single quote ``'`` (which spreadsheets hide and treat as "this is text"); a cell that
already begins with ``'`` gets one more, so :func:`restore_cell` undoes it exactly. Numbers (ints,
floats, numpy scalars; booleans too) are left as numbers, so probabilities, scores and ranks stay numeric.
"""

from __future__ import annotations

import numbers
from typing import Any

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a text cell as a formula."""

QUOTE = "'"


def safe_cell(value: Any) -> Any:
    """A CSV cell that cannot be run as a formula.

    Args:
        value: a cell: text (``str``, ``bytes`` as UTF-8), a number, or ``None`` (an empty cell).

    Returns:
        Numbers unchanged; ``None`` as ``""``; text beginning with one of :data:`FORMULA_TRIGGERS` or with
        ``'`` prefixed with ``'``; other text unchanged. Anything else is turned into text first.
    """
    if value is None:
        return ""
    if isinstance(value, numbers.Number):
        return value
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", errors="replace")
    text = value if isinstance(value, str) else str(value)
    if text.startswith(FORMULA_TRIGGERS + (QUOTE,)):
        return QUOTE + text
    return str(text)


def restore_cell(text: str) -> str:
    """The text :func:`safe_cell` was given: drops the one ``'`` it added (reading its CSVs back)."""
    if len(text) > 1 and text[0] == QUOTE and text[1] in FORMULA_TRIGGERS + (QUOTE,):
        return text[1:]
    return text

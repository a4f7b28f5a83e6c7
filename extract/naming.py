"""Names from model paths and hub ids: store-safe file stems, and telling a path from a hub id."""

from __future__ import annotations

import os
from pathlib import Path


def looks_like_path(name_or_path: str) -> bool:
    """True for strings that can only be file-system paths (``/x``, ``./x``, ``~/x``, ``a/b/c``, ``x/``).

    A hub id is ``name`` or ``owner/name``; an existing directory is always a path.
    """
    s = str(name_or_path)
    return (s.startswith((".", "/", "~", "\\")) or s.endswith(("/", os.sep)) or s.count("/") > 1
            or os.sep != "/" and os.sep in s or Path(s).expanduser().exists())


def sanitize_name(s: str) -> str:
    """A string made safe for a store file stem: ``/`` and other odd characters -> ``-``."""
    out = "".join(c if c.isalnum() or c in "._-" else "-" for c in s.strip().rstrip("/"))
    return out.strip("-.") or "model"


def model_basename(name_or_path: str) -> str:
    """``/x/minilm-l6-v2`` -> ``minilm-l6-v2``; hub id ``owner/name`` -> ``owner-name``."""
    s = str(name_or_path).rstrip("/\\")
    if Path(s).expanduser().is_dir() or looks_like_path(s):
        return sanitize_name(Path(s).name)
    return sanitize_name(s.replace("/", "-"))

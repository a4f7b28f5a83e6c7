"""How many worker processes ``--workers auto`` means, the one rule for ``ser-extract`` and ``ser-train``."""

from __future__ import annotations

import os

MAX_AUTO_WORKERS = 4
"""``auto`` never starts more processes than this (more rarely pays off for decoding or small heads)."""


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask on Linux, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def auto_workers(cap: int = MAX_AUTO_WORKERS) -> int:
    """``--workers auto``: one worker process per available CPU, at most ``cap``."""
    return max(1, min(cap, available_cpus()))


def parse_workers(value: str | int, minimum: int = 1) -> int:
    """``auto`` -> :func:`auto_workers`; else an integer >= ``minimum`` (``ValueError`` naming the rule)."""
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str) and value.strip() == "auto":
        return auto_workers()
    elif isinstance(value, str) and value.strip().isdigit():
        n = int(value)
    else:
        raise ValueError(f"--workers must be 'auto' or an integer >= {minimum}, got {value!r}")
    if n < minimum:
        raise ValueError(f"--workers must be 'auto' or an integer >= {minimum}, got {n}")
    return n

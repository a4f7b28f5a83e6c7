"""Provenance: what produced an artefact (package versions, file hashes, host), recorded beside results."""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import time
from importlib import metadata

DEFAULT_PACKAGES = ("numpy", "h5py", "torch", "transformers", "pyAudioAnalysis", "scipy", "soundfile", "soxr")


def package_versions(names: tuple[str, ...] | list[str] = DEFAULT_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (``"not installed"`` for absent ones) plus the Python version."""
    out = {"python": sys.version.split()[0]}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


_SHA256_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file_cached(path: str | os.PathLike) -> str:
    """:func:`sha256_file`, read once per process for each version of a file.

    Keyed on (resolved path, size in bytes, mtime in ns): a file rewritten since is hashed again.
    Raises ``OSError`` when the file cannot be read, like :func:`sha256_file`.
    """
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA256_CACHE:
        _SHA256_CACHE[key] = sha256_file(path)
    return _SHA256_CACHE[key]


def host_info() -> dict[str, str]:
    """Machine and time stamp, for run records."""
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": str(os.cpu_count()),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }

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


def host_info() -> dict[str, str]:
    """Machine and time stamp, for run records."""
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": str(os.cpu_count()),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }

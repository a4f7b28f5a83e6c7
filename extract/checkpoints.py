"""wav2vec checkpoints: find the file (a local path, or a URL downloaded once into a cache) and read it safely.

Finding (:func:`resolve_checkpoint`): the cache is ``$SER_CACHE`` (or ``~/.cache/ser_toolkit``) ``/checkpoints/<file name>``. A download goes to
``<file name>.partial`` beside its target (a rerun resumes it) and is renamed only when complete, so an
interrupted one never leaves a truncated checkpoint behind (:func:`ser_common.download.fetch`). Offline, the
resolver fails within seconds (a connectivity probe with a short timeout runs before the download) and says
how to proceed: fetch the file elsewhere and pass its path.

Reading (:func:`load_checkpoint`): ``torch.load(weights_only=True)`` with only the harmless extra types a
fairseq checkpoint holds allowed (its args ``Namespace``, numpy scalars): never an unrestricted unpickle.

Every failure of either is a :class:`CheckpointError` (a ``ValueError``: ``ser-extract`` prints it as one
``Error: …`` line), except a local path that does not exist (:class:`FileNotFoundError`).
"""

from __future__ import annotations

import argparse
import os
import pickle
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from ser_common.download import cache_root  # the one cache folder (shared with the corpus and encoder downloads)

WAV2VEC_LARGE_URL = "https://dl.fbaipublicfiles.com/fairseq/wav2vec/wav2vec_large.pt"
"""The released wav2vec 1.0 large checkpoint (fairseq, ~300 MB)."""

CONNECT_TIMEOUT_S = 5.0


class CheckpointError(ValueError):
    """A checkpoint that cannot be had (not downloadable now) or used (unreadable, unsafe to unpickle, or not
    fitting the wav2vec architecture); the message names the file or URL and what to do."""


def is_url(path_or_url: str | os.PathLike) -> bool:
    """True for ``http://`` and ``https://`` addresses."""
    return urlparse(str(path_or_url)).scheme in ("http", "https")


def resolve_checkpoint(path_or_url: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                       timeout_s: float = CONNECT_TIMEOUT_S) -> Path:
    """Local path of a checkpoint: ``path_or_url`` itself if a file, else the cached download of that URL.

    ``None`` means :data:`WAV2VEC_LARGE_URL`. A URL already in the cache is not fetched again.
    Raises :class:`FileNotFoundError` for a local path that does not exist and
    :class:`CheckpointError` when a URL cannot be fetched (offline: within about ``timeout_s``).
    """
    src = str(path_or_url) if path_or_url is not None else WAV2VEC_LARGE_URL
    if not is_url(src):
        path = Path(src).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"checkpoint {path} not found (give an existing file, or a URL such as {WAV2VEC_LARGE_URL})")
        return path
    name = Path(urlparse(src).path).name
    if not name:
        raise ValueError(f"cannot tell a file name from URL {src!r}")
    target = cache_root(cache_dir) / "checkpoints" / name
    if target.is_file():
        return target
    _check_reachable(src, target, timeout_s)
    return _download(src, target)


def _offline_message(url: str, target: Path, reason: str) -> str:
    return (f"cannot download {url} ({reason}). This machine seems to be offline: download the file on a "
            f"machine with internet access, copy it here, and pass its path instead of the URL "
            f"(e.g. wav2vec:/path/to/{target.name}), or put it at {target} (the cache, set by $SER_CACHE).")


def _check_reachable(url: str, target: Path, timeout_s: float) -> None:
    """Open (and close) a TCP connection to the URL's host within ``timeout_s``, or raise."""
    parts = urlparse(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            pass
    except OSError as e:  # DNS failure, refused, unreachable, timeout
        raise CheckpointError(_offline_message(url, target, f"{type(e).__name__}: {e}")) from None


def _download(url: str, target: Path) -> Path:
    """Download with :func:`ser_common.download.fetch`: to ``<target>.partial`` (resumed by a rerun), renamed
    into place when complete."""
    from ser_common.download import DownloadError, PinnedFile, fetch

    try:
        return fetch(PinnedFile(url), target, what=target.name)
    except DownloadError as e:
        raise CheckpointError(_offline_message(url, target, str(e))) from e


# ---- reading ----------------------------------------------------------------------------------------------
def _safe_globals() -> list[Any]:
    """What a fairseq checkpoint may hold besides tensors and containers: its args Namespace, and numpy
    scalars/dtypes (old training states record losses as numpy floats). None of these runs code."""
    allowed: list[Any] = [argparse.Namespace, np.dtype]
    core = getattr(np, "_core", None) or np.core  # numpy 2 moved numpy.core to numpy._core
    scalar = core.multiarray.scalar
    allowed += [scalar, (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar")]
    for t in (np.float64, np.float32, np.float16, np.int64, np.int32, np.bool_):
        allowed.append(type(np.dtype(t)))
    return allowed


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a fairseq checkpoint with ``torch.load(weights_only=True)``: never an unrestricted unpickle.

    Returns the checkpoint dict (``args``, ``model`` and whatever else it holds). Raises
    :class:`FileNotFoundError` for a missing file and :class:`CheckpointError` for anything that is not a
    plain checkpoint (e.g. a pickled object of some other class).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"wav2vec checkpoint {path} not found")
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refusing to load {path}: it holds objects other than tensors, containers, argparse.Namespace "
            f"and numpy scalars, and this toolkit never unpickles arbitrary objects. torch said: "
            f"{str(e).splitlines()[-1] if str(e) else e!r}") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint: {e}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or not isinstance(ckpt["model"], Mapping):
        keys = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} is not a fairseq checkpoint {{'args', 'model', ...}}: found {keys}")
    return ckpt

"""Find a checkpoint file: a local path as given, or a URL downloaded once into a cache.

The cache is ``$SER_CACHE`` (or ``~/.cache/ser_toolkit``) ``/checkpoints/<file name>``. A download goes to
``<file name>.partial`` beside its target (a rerun resumes it) and is renamed only when complete, so an
interrupted one never leaves a truncated checkpoint behind (:func:`ser_common.download.fetch`). Offline, the
resolver fails within seconds (a connectivity probe with a short timeout runs before the download) and says
how to proceed: fetch the file elsewhere and pass its path.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from ser_common.download import cache_root  # the one cache folder (shared with the corpus and encoder downloads)

WAV2VEC_LARGE_URL = "https://dl.fbaipublicfiles.com/fairseq/wav2vec/wav2vec_large.pt"
"""The released wav2vec 1.0 large checkpoint (fairseq, ~300 MB)."""

CONNECT_TIMEOUT_S = 5.0


class CheckpointUnavailable(RuntimeError):
    """A checkpoint that is neither on disk nor downloadable now."""


def is_url(path_or_url: str | os.PathLike) -> bool:
    """True for ``http://`` and ``https://`` addresses."""
    return urlparse(str(path_or_url)).scheme in ("http", "https")


def resolve_checkpoint(path_or_url: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                       timeout_s: float = CONNECT_TIMEOUT_S) -> Path:
    """Local path of a checkpoint: ``path_or_url`` itself if a file, else the cached download of that URL.

    ``None`` means :data:`WAV2VEC_LARGE_URL`. A URL already in the cache is not fetched again.
    Raises :class:`FileNotFoundError` for a local path that does not exist and
    :class:`CheckpointUnavailable` when a URL cannot be fetched (offline: within about ``timeout_s``).
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
        raise CheckpointUnavailable(_offline_message(url, target, f"{type(e).__name__}: {e}")) from None


def _download(url: str, target: Path) -> Path:
    """Download with :func:`ser_common.download.fetch`: to ``<target>.partial`` (resumed by a rerun), renamed
    into place when complete."""
    from ser_common.download import DownloadError, PinnedFile, fetch

    try:
        return fetch(PinnedFile(url), target, what=target.name)
    except DownloadError as e:
        raise CheckpointUnavailable(_offline_message(url, target, str(e))) from e

"""Downloading a pinned file once: cached, resumable, verified before use. Standard library only.

Shared by the corpus download (:mod:`data_manifests.download`), the encoder download
(:mod:`extract.hub_fetch`) and the wav2vec checkpoint cache (:mod:`extract.checkpoints`), so there is one
cache folder and one way to fetch:

* :func:`cache_root`: ``$SER_CACHE``, else ``~/.cache/ser_toolkit``.
* :func:`fetch` downloads a :class:`PinnedFile` (URL, size in bytes, sha256) to ``<target>.partial`` and renames
  it to ``target`` only once its size and sha256 match the pin. An interrupted transfer leaves the
  ``.partial``; the next call resumes it with an HTTP ``Range`` request (a server that ignores ``Range``
  answers 200, and the download restarts from byte 0). A sha256 or size mismatch deletes the ``.partial``
  and says so: nothing unverified is ever renamed into place.
* Offline, a TCP connect to the URL's host (``CONNECT_TIMEOUT_S``) fails first, and :class:`DownloadUnavailable`
  says what to download, from where, and where to put it (plus the caller's hint, e.g. a Make variable).

    >>> pin = PinnedFile("https://example.org/c.zip", size=1234, sha256="ab…")   # doctest: +SKIP
    >>> fetch(pin, cache_root() / "downloads" / "c.zip", what="the corpus")     # doctest: +SKIP
"""

from __future__ import annotations

import http.client
import os
import socket
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from .provenance import sha256_file

CONNECT_TIMEOUT_S = 5.0
"""Seconds a TCP connect to a download host (DNS included) may take before the host counts as unreachable."""

READ_TIMEOUT_S = 60.0
"""Seconds a read may stall mid-transfer before the attempt is abandoned (and resumed)."""

ATTEMPTS = 3
"""Transfers per :func:`fetch` call: a dropped connection is resumed from the ``.partial`` this many times."""

CHUNK = 1 << 20
USER_AGENT = "ser-toolkit-download/1"


class DownloadError(RuntimeError):
    """A download that failed for a reason other than the network being down (HTTP error, bad checksum)."""


class DownloadUnavailable(DownloadError):
    """The host cannot be reached (offline, DNS failure, connection refused): nothing can be fetched now."""


@dataclass(frozen=True)
class PinnedFile:
    """One file to download and what it must be.

    Attributes:
        url: ``http(s)://`` address.
        size: expected size in bytes, or ``None`` (not pinned: only the sha256, if any, is checked).
        sha256: expected hex digest, or ``None`` (not pinned yet: the digest of what arrived is reported, so
            it can be pinned).
    """

    url: str
    size: int | None = None
    sha256: str | None = None

    @property
    def name(self) -> str:
        """The file name at the end of the URL's path (``download.zip``)."""
        return Path(urlparse(self.url).path).name


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir`` if given, else ``$SER_CACHE``, else ``~/.cache/ser_toolkit``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("SER_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ser_toolkit"


def partial_of(target: str | os.PathLike) -> Path:
    """The resumable download file of ``target``: ``<target>.partial``."""
    target = Path(target)
    return target.with_name(target.name + ".partial")


def unavailable_message(url: str, reason: str, what: str, put_at: str | os.PathLike, hint: str = "") -> str:
    """The offline message: what failed and why, what to download from where, where to put it, ``hint``."""
    msg = (f"cannot download {what} from {url} ({reason}); this machine seems to be offline. Download it on a "
           f"machine with internet access and put it at {put_at}")
    return msg + (f", {hint}" if hint else "") + "."


def check_reachable(url: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Open (and close) a TCP connection to the URL's host within ``timeout_s``.

    Raises:
        OSError: DNS failure, connection refused, no route, timeout.
    """
    parts = urlparse(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    with socket.create_connection((parts.hostname or "", port), timeout=timeout_s):
        pass


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _transfer(url: str, partial: Path, timeout_s: float, report: Callable[[str], None]) -> None:
    """One attempt: append the rest of ``url`` to ``partial`` (``Range: bytes=N-``), or restart on a 200."""
    have = partial.stat().st_size if partial.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout_s)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the partial is complete (or too long: verified next)
            return
        raise
    with resp:
        if have and resp.status == 206:
            mode, done = "ab", have
            report(f"resuming {url} at byte {have}")
        else:  # 200: the whole file (the server ignored Range, or there was nothing to resume)
            mode, done = "wb", 0
        total = resp.headers.get("Content-Length")
        total = int(total) + done if total and total.isdigit() else None
        next_report = done + max(total // 10, CHUNK) if total and total > 20 * CHUNK else None
        with open(partial, mode) as f:
            while True:
                block = resp.read(CHUNK)
                if not block:
                    break
                f.write(block)
                done += len(block)
                if next_report is not None and done >= next_report:
                    report(f"  {done / 1e6:.0f} / {total / 1e6:.0f} MB")
                    next_report += max(total // 10, CHUNK)
        if total is not None and done < total:  # the connection closed early without an exception
            raise http.client.IncompleteRead(b"", total - done)


def fetch(pin: PinnedFile, target: str | os.PathLike, *, what: str | None = None, hint: str = "",
          timeout_s: float = READ_TIMEOUT_S, connect_timeout_s: float = CONNECT_TIMEOUT_S,
          attempts: int = ATTEMPTS, report: Callable[[str], None] = _say) -> Path:
    """Download ``pin`` to ``target`` unless it is there already; returns ``target``.

    An existing ``target`` is trusted when its size matches the pin (it was verified before it was renamed
    there). Otherwise the data goes to ``<target>.partial`` (resumed if present) and is renamed to ``target``
    after the size and sha256 checks.

    Args:
        pin: URL, size and sha256 to expect.
        target: final path; its folder is created.
        what: the file's name in messages (default: its URL's file name).
        hint: appended to the offline message, e.g. ``"or pass EMODB=/path/to/emodb to make"``.
        timeout_s: seconds a read may stall; connect_timeout_s: seconds the reachability probe may take.
        attempts: transfers tried in this call when the connection drops midway (each resumes the last).
        report: receives progress lines (default: stderr).

    Raises:
        DownloadUnavailable: the host is unreachable (offline); the message says what to download, from where,
            and where to put it. A ``.partial`` is kept for resuming.
        DownloadError: an HTTP error (404, 500, …), a transfer that kept failing (the ``.partial`` is kept:
            rerun to resume), or a size/sha256 mismatch (the ``.partial`` is deleted).
    """
    target = Path(target)
    what = what or pin.name
    if target.is_file() and (pin.size is None or target.stat().st_size == pin.size):
        return target
    partial = partial_of(target)
    try:
        check_reachable(pin.url, connect_timeout_s)
    except OSError as e:
        raise DownloadUnavailable(unavailable_message(pin.url, f"{type(e).__name__}: {e}", what, target, hint)) \
            from None
    target.parent.mkdir(parents=True, exist_ok=True)
    report(f"downloading {what}: {pin.url} -> {target}"
           + (f" ({pin.size / 1e6:.1f} MB)" if pin.size else ""))
    for attempt in range(1, attempts + 1):
        try:
            _transfer(pin.url, partial, timeout_s, report)
            break
        except urllib.error.HTTPError as e:
            raise DownloadError(f"cannot download {what}: {pin.url} answered HTTP {e.code} {e.reason}; check the "
                                f"address (or download it by hand and put it at {target})") from None
        except urllib.error.URLError as e:  # connection refused/reset before any byte: the host went away
            if attempt == attempts:
                raise DownloadUnavailable(unavailable_message(pin.url, f"{type(e.reason).__name__}: {e.reason}",
                                                              what, target, hint)) from None
        except (OSError, http.client.HTTPException) as e:  # dropped midway, stalled read
            have = partial.stat().st_size if partial.exists() else 0
            if attempt == attempts:
                raise DownloadError(f"cannot download {what}: the transfer from {pin.url} broke off after {have} "
                                    f"bytes {attempts} times ({type(e).__name__}: {e}); {partial} is kept: rerun "
                                    f"to resume") from None
            report(f"transfer interrupted after {have} bytes ({type(e).__name__}); resuming")
    return _verify_and_place(pin, partial, target, what)


def _verify_and_place(pin: PinnedFile, partial: Path, target: Path, what: str) -> Path:
    """Check ``partial`` against the pin; rename it to ``target``, or delete it and raise on a mismatch."""
    size = partial.stat().st_size
    if pin.size is not None and size != pin.size:
        partial.unlink()
        raise DownloadError(f"{what} from {pin.url}: received {size} bytes, expected {pin.size}; the partial "
                            f"download {partial} was deleted: rerun to download it again (if this repeats, the "
                            f"file on the server changed: check the pin)")
    digest = sha256_file(partial)
    if pin.sha256 is not None and digest != pin.sha256.lower():
        partial.unlink()
        raise DownloadError(f"{what} from {pin.url}: sha256 mismatch: got {digest}, expected {pin.sha256}; the "
                            f"partial download {partial} was deleted: rerun to download it again (if this "
                            f"repeats, the file on the server changed: check the pin)")
    if pin.sha256 is None:
        print(f"note: {what} is not pinned; it has {size} bytes and sha256 {digest} (pin these to verify "
              f"later downloads)", file=sys.stderr)
    os.replace(partial, target)
    return target

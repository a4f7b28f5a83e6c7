"""An exclusive writer lock per store, of our own (independent of HDF5's file locking).

HDF5's own locking is often switched off on clusters (``HDF5_USE_FILE_LOCKING=FALSE``), so two writers of
one store are kept apart by a lock file ``<store>.h5.lock`` created atomically (``O_CREAT | O_EXCL``) and
holding who owns it (pid, host, command, start time). A second writer refuses at once, naming the owner.
A lock left by a process that died (same host, pid gone) is stale and taken over; a lock of another host
cannot be checked, so the message says how to remove it by hand.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from .errors import StoreError


class StoreLocked(StoreError):
    """Another live process holds the store's lock; the message names it and the lock file."""


def lock_path(store: str | os.PathLike) -> Path:
    """``<store>.lock`` beside the final store path (shared by its ``.partial``)."""
    store = Path(store)
    return store.with_name(store.name + ".lock")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StoreLock:
    """Hold ``<store>.lock`` for the lifetime of a writer: ``with StoreLock(path): ...``.

    Raises :class:`StoreLocked` when a live process holds it, :class:`StoreError` when the folder cannot
    be written.
    """

    STALE_UNREADABLE_S = 30.0
    """A lock file that cannot be parsed (its writer died between create and write) is stale after this."""

    def __init__(self, store: str | os.PathLike):
        self.store = Path(store)
        self.path = lock_path(self.store)
        self.held = False

    def _owner(self) -> dict | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _stale(self, owner: dict | None) -> bool:
        if owner is None or not isinstance(owner, dict):
            try:
                return time.time() - self.path.stat().st_mtime > self.STALE_UNREADABLE_S
            except FileNotFoundError:
                return True
        pid = owner.get("pid")
        return owner.get("host") == socket.gethostname() and isinstance(pid, int) and not _alive(pid)

    def acquire(self) -> "StoreLock":
        me = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)[:500],
              "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"{self.path.parent}: cannot create the stores folder ({e.strerror}); "
                             f"choose a writable --out") from None
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if self._stale(owner):
                    self.path.unlink(missing_ok=True)
                    continue
                who = (f"pid {owner.get('pid')} on {owner.get('host')} since {owner.get('started_utc')} "
                       f"({owner.get('command')})") if isinstance(owner, dict) else "an unknown process"
                raise StoreLocked(f"{self.store}: another process is writing this store: {who}. Wait for it to "
                                  f"finish; if no such process runs any more, delete {self.path}") from None
            except OSError as e:
                raise StoreError(f"{self.path.parent}: cannot write here ({e.strerror}); choose a writable "
                                 f"--out or fix the folder's permissions") from None
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise StoreLocked(f"{self.store}: could not take the lock {self.path}; delete it if no writer runs")

    def release(self) -> None:
        if self.held:
            owner = self._owner()
            if isinstance(owner, dict) and owner.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "StoreLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

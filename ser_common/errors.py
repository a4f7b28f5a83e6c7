"""The error types ``ser_common`` raises (each message names the file, the problem and the fix)."""

from __future__ import annotations


class StoreError(RuntimeError):
    """A store that cannot be used as asked (incomplete, incompatible, corrupt, locked, disk full)."""


class DiskFullError(StoreError):
    """Too little free space to commit the next batch; committed batches are kept and a rerun resumes."""

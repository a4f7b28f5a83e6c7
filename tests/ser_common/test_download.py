"""ser_common.download against a real HTTP server on loopback: success, resume, checksum, 404, offline."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from ser_common.download import (DownloadError, DownloadUnavailable, PinnedFile, cache_root, fetch,
                                 partial_of)
from tests.loopback_server import closed_port, serve

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()


def _quiet(_msg: str) -> None:
    pass


def test_download_verified_and_placed(tmp_path):
    with serve({"/f.bin": DATA}) as srv:
        target = fetch(PinnedFile(srv.url("/f.bin"), len(DATA), SHA), tmp_path / "d" / "f.bin", report=_quiet)
        assert target.read_bytes() == DATA and not partial_of(target).exists()
        n = len(srv.requests)
        assert fetch(PinnedFile(srv.url("/f.bin"), len(DATA), SHA), target, report=_quiet) == target
        assert len(srv.requests) == n  # idempotent: a placed file is not fetched again


def test_resume_after_dropped_connection(tmp_path):
    lines: list[str] = []
    with serve({"/f.bin": DATA}) as srv:
        srv.drop_after, srv.drops = 100_000, 1
        target = fetch(PinnedFile(srv.url("/f.bin"), len(DATA), SHA), tmp_path / "f.bin", report=lines.append)
        assert target.read_bytes() == DATA
        assert srv.requests[0][1] is None and srv.requests[1][1] == "bytes=100000-"  # resumed with Range
    assert any("interrupted after 100000 bytes" in m for m in lines)
    assert any("resuming" in m and "100000" in m for m in lines)


def test_partial_from_earlier_run_is_resumed(tmp_path):
    target = tmp_path / "f.bin"
    partial_of(target).write_bytes(DATA[:123_456])
    with serve({"/f.bin": DATA}) as srv:
        fetch(PinnedFile(srv.url("/f.bin"), len(DATA), SHA), target, report=_quiet)
        assert srv.requests == [("/f.bin", "bytes=123456-")]
    assert target.read_bytes() == DATA


def test_server_without_range_restarts_from_zero(tmp_path):
    target = tmp_path / "f.bin"
    partial_of(target).write_bytes(b"stale bytes")
    with serve({"/f.bin": DATA}) as srv:
        srv.ignore_range = True
        fetch(PinnedFile(srv.url("/f.bin"), len(DATA), SHA), target, report=_quiet)
    assert target.read_bytes() == DATA


def test_transfer_that_keeps_failing_keeps_partial(tmp_path):
    target = tmp_path / "f.bin"
    with serve({"/f.bin": DATA}) as srv:
        srv.drop_after, srv.drops = 1000, 10
        with pytest.raises(DownloadError, match="broke off .* rerun to resume"):
            fetch(PinnedFile(srv.url("/f.bin"), len(DATA), SHA), target, attempts=2, report=_quiet)
        assert partial_of(target).stat().st_size == 2000 and not target.exists()
        srv.drops = 0
        fetch(PinnedFile(srv.url("/f.bin"), len(DATA), SHA), target, report=_quiet)  # the rerun resumes
        assert srv.requests[-1] == ("/f.bin", "bytes=2000-")
    assert target.read_bytes() == DATA


def test_sha256_mismatch_deletes_partial(tmp_path):
    target = tmp_path / "f.bin"
    with serve({"/f.bin": DATA}) as srv:
        with pytest.raises(DownloadError, match="sha256 mismatch") as err:
            fetch(PinnedFile(srv.url("/f.bin"), len(DATA), "0" * 64), target, report=_quiet)
    assert SHA in str(err.value) and "was deleted" in str(err.value)
    assert not target.exists() and not partial_of(target).exists()


def test_size_mismatch_deletes_partial(tmp_path):
    target = tmp_path / "f.bin"
    with serve({"/f.bin": DATA}) as srv:
        with pytest.raises(DownloadError, match=f"received {len(DATA)} bytes, expected {len(DATA) + 1}"):
            fetch(PinnedFile(srv.url("/f.bin"), len(DATA) + 1, SHA), target, report=_quiet)
    assert not partial_of(target).exists()


def test_unpinned_file_reports_its_digest(tmp_path, capsys):
    with serve({"/f.bin": DATA}) as srv:
        fetch(PinnedFile(srv.url("/f.bin")), tmp_path / "f.bin", report=_quiet)
    assert f"sha256 {SHA}" in capsys.readouterr().err


def test_http_404_is_a_clear_error(tmp_path):
    with serve({}) as srv:
        with pytest.raises(DownloadError, match="answered HTTP 404") as err:
            fetch(PinnedFile(srv.url("/missing.zip")), tmp_path / "m.zip", report=_quiet)
    assert not isinstance(err.value, DownloadUnavailable)
    assert not any(tmp_path.iterdir())


def test_unreachable_host_fails_fast_with_offline_message(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/download.zip"
    t0 = time.perf_counter()
    with pytest.raises(DownloadUnavailable) as err:
        fetch(PinnedFile(url), tmp_path / "c.zip", what="the corpus", hint="or pass X=/path to make",
              report=_quiet)
    assert time.perf_counter() - t0 < 5
    msg = str(err.value)
    assert url in msg and "offline" in msg and str(tmp_path / "c.zip") in msg and "X=/path" in msg


def test_cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("SER_CACHE", str(tmp_path))
    assert cache_root() == tmp_path and cache_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("SER_CACHE")
    assert cache_root().parts[-2:] == (".cache", "ser_toolkit")

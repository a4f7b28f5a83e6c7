import hashlib
import os

import pytest

from ser_common.provenance import sha256_file, sha256_file_cached


def test_sha256_file_is_the_digest_of_the_bytes(tmp_path):
    path = tmp_path / "w.bin"
    data = os.urandom(3 * (1 << 20) + 17)          # several read chunks and a partial one
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert sha256_file(path, chunk=1000) == hashlib.sha256(data).hexdigest()


def test_cached_sha256_reads_a_file_once_per_size_and_mtime(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"a" * 100)
    first = sha256_file_cached(path)
    assert first == hashlib.sha256(b"a" * 100).hexdigest()
    st = path.stat()
    # same size and mtime: the cached digest is returned without reading the file again
    path.write_bytes(b"b" * 100)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert sha256_file_cached(path) == first
    assert sha256_file_cached(str(tmp_path / "." / "w.bin")) == first    # one key per resolved path
    # a new mtime (or size) is a new version: hashed again
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert sha256_file_cached(path) == hashlib.sha256(b"b" * 100).hexdigest()
    path.write_bytes(b"c" * 101)
    assert sha256_file_cached(path) == hashlib.sha256(b"c" * 101).hexdigest()


def test_cached_sha256_of_a_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        sha256_file_cached(tmp_path / "gone.bin")

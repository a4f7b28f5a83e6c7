"""data_manifests.download: a generated EmoDB-layout zip served on loopback -> verified, unpacked corpus."""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from dataclasses import replace

import pytest
import soundfile as sf
from click.testing import CliRunner

from data_manifests import build_emodb, download
from data_manifests.download import EMODB, EMODB_URL, MARKER, CorpusDownload, fetch_corpus, is_complete, main
from ser_common.download import DownloadError, DownloadUnavailable, PinnedFile
from tests.conftest import make_tone
from tests.loopback_server import closed_port, serve

SPEAKERS = ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16")
EMOTIONS = "NFTWLAENFT"


def _wav_bytes(seconds: float = 0.3, sr: int = 16_000, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, make_tone(seconds, sr, seed=seed), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def make_zip(names: list[str] | None = None, sr: int = 16_000, extra: dict[str, bytes] | None = None) -> bytes:
    """A zip in EmoDB's layout: ``wav/<name>.wav`` (one utterance per speaker) plus the corpus' notes."""
    names = names if names is not None else [f"{s}a01{e}a" for s, e in zip(SPEAKERS, EMOTIONS)]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, n in enumerate(names):
            zf.writestr(f"wav/{n}.wav", _wav_bytes(sr=sr, seed=i))
        zf.writestr("erkennung.txt", "recognition rates\n")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def _spec(url: str, data: bytes, n: int = 10) -> CorpusDownload:
    return replace(EMODB, pin=PinnedFile(url, len(data), hashlib.sha256(data).hexdigest()), n_audio=n)


def test_download_unpack_and_manifest(tmp_path):
    data = make_zip()
    dest = tmp_path / "data" / "emodb"
    with serve({"/download.zip": data}) as srv:
        spec = _spec(srv.url("/download.zip"), data)
        path, what = fetch_corpus(dest, spec, cache_dir=tmp_path / "cache")
        assert (path, what) == (dest, "downloaded")
        assert (tmp_path / "cache" / "downloads" / "emodb-download.zip").read_bytes() == data
        n = len(srv.requests)
        assert fetch_corpus(dest, spec, cache_dir=tmp_path / "cache") == (dest, "present")
        assert len(srv.requests) == n
    assert len(list((dest / "wav").glob("*.wav"))) == 10 and (dest / "erkennung.txt").is_file()
    marker = json.loads((dest / MARKER).read_text())
    assert marker["sha256"] == hashlib.sha256(data).hexdigest() and marker["n_audio"] == 10 and marker["pinned"]
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".")]  # no unpacking leftovers
    records = build_emodb(dest, "all")
    assert len(records) == 10 and {r.speaker for r in records} == set(SPEAKERS)


def test_wrong_layout_is_refused_and_nothing_left(tmp_path):
    dest = tmp_path / "emodb"
    for data, why in ((make_zip(sr=44_100), "44100 Hz, expected 16000"),
                      (make_zip(names=["03a01Fa", "notanemodbname"]), "notanemodbname.wav"),
                      (make_zip(names=["03a01Fa"]), "1 audio files in wav/, expected 10")):
        with serve({"/download.zip": data}) as srv:
            with pytest.raises(DownloadError, match="expected layout") as err:
                fetch_corpus(dest, _spec(srv.url("/download.zip"), data), cache_dir=tmp_path / "cache")
        assert why in str(err.value)
        assert not dest.exists() and not list(tmp_path.glob(".emodb*"))
        (tmp_path / "cache" / "downloads" / "emodb-download.zip").unlink()


def test_unsafe_member_names_are_refused(tmp_path):
    data = make_zip(extra={"../evil.txt": b"x"})
    with serve({"/download.zip": data}) as srv:
        with pytest.raises(DownloadError, match="outside the corpus folder"):
            fetch_corpus(tmp_path / "emodb", _spec(srv.url("/download.zip"), data), cache_dir=tmp_path / "c")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "emodb").exists()


def test_checksum_mismatch_deletes_download(tmp_path):
    data = make_zip()
    with serve({"/download.zip": data}) as srv:
        spec = replace(EMODB, pin=PinnedFile(srv.url("/download.zip"), len(data), "f" * 64), n_audio=10)
        with pytest.raises(DownloadError, match="sha256 mismatch.*was deleted"):
            fetch_corpus(tmp_path / "emodb", spec, cache_dir=tmp_path / "c")
    assert not list((tmp_path / "c" / "downloads").iterdir()) and not (tmp_path / "emodb").exists()


def test_offline_message_names_url_folder_and_make_variable(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/download/download.zip"
    dest = tmp_path / "emodb"
    t0 = time.perf_counter()
    with pytest.raises(DownloadUnavailable) as err:
        fetch_corpus(dest, replace(EMODB, pin=PinnedFile(url)), cache_dir=tmp_path / "c")
    assert time.perf_counter() - t0 < 5
    msg = str(err.value)
    for part in (url, "offline", str(tmp_path / "c" / "downloads" / "emodb-download.zip"), str(dest / "wav"),
                 "make demo EMODB=/path/to/emodb"):
        assert part in msg, part


def test_existing_folder_without_corpus_is_not_overwritten(tmp_path):
    dest = tmp_path / "emodb"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    with pytest.raises(DownloadError, match="not overwritten.*EMODB="):
        fetch_corpus(dest, replace(EMODB, pin=PinnedFile("http://127.0.0.1:9/x.zip")), cache_dir=tmp_path)
    assert (dest / "notes.txt").read_text() == "mine"


def test_cli(tmp_path, monkeypatch):
    data = make_zip()
    with serve({"/download.zip": data}) as srv:
        monkeypatch.setitem(download.CORPUS_DOWNLOADS, "emodb", _spec(srv.url("/download.zip"), data))
        res = CliRunner().invoke(main, ["emodb", str(tmp_path / "emodb"), "--cache", str(tmp_path / "c")])
        assert res.exit_code == 0, res.output
        assert res.stdout.strip() == f"EmoDB: {tmp_path / 'emodb'} (downloaded)"
        assert "downloading EmoDB (download.zip): http://127.0.0.1" in res.stderr
    monkeypatch.setitem(download.CORPUS_DOWNLOADS, "emodb",
                        _spec(f"http://127.0.0.1:{closed_port()}/download.zip", data))
    res = CliRunner().invoke(main, ["emodb", str(tmp_path / "other"), "--cache", str(tmp_path / "c2")])
    assert res.exit_code == 1 and res.output.startswith("Error: cannot download EmoDB")
    assert "Traceback" not in res.output


def test_the_real_pin():
    assert EMODB.pin.url == EMODB_URL == "http://emodb.bilderbar.info/download/download.zip"
    assert EMODB.n_audio == 535 and EMODB.sample_rate == 16_000 and EMODB.make_var == "EMODB"


@pytest.mark.shared
def test_shared_copy_counts_as_complete(emodb_dir):
    assert is_complete(emodb_dir)  # so `make fetch-demo-data EMODB=../shared/data/emodb` downloads nothing

import hashlib
import json

import pytest

from ser_common.manifest import ManifestError, ManifestRecord, manifest_sha256, read_manifest, write_manifest


def _rec(tmp_path, uid, label="happy", corpus="emodb", make_file=True, **kw):
    audio = tmp_path / f"{uid}.wav"
    if make_file:
        audio.write_bytes(b"x")
    return ManifestRecord(utt_id=uid, audio=str(audio), corpus=corpus, speaker="03", session="g1", label=label, **kw)


def test_roundtrip_and_optional_fields(tmp_path):
    recs = [_rec(tmp_path, "a", transcript="Hallo", duration=1.5, extra={"text_id": "a01"}),
            _rec(tmp_path, "b", label=None, start=0.5, end=1.0)]
    path = write_manifest(recs, tmp_path / "m.jsonl")
    lines = path.read_text().splitlines()
    assert "label" not in json.loads(lines[1])  # empty optional fields are left out
    assert read_manifest(path) == recs
    assert manifest_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_duplicates_unknown_labels_and_missing_audio_are_all_listed(tmp_path):
    recs = [_rec(tmp_path, "a"), _rec(tmp_path, "a"), _rec(tmp_path, "b", label="joyful"),
            _rec(tmp_path, "c", make_file=False)]
    path = write_manifest(recs, tmp_path / "m.jsonl")
    with pytest.raises(ManifestError) as e:
        read_manifest(path)
    msg = str(e.value)
    assert str(path) in msg
    assert "duplicate utt_id" in msg and "a (x2)" in msg
    assert "'joyful'" in msg and "b:" in msg
    assert "missing audio" in msg and "c.wav" in msg


def test_malformed_lines_name_the_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"utt_id": "a"}\nnot json\n')
    with pytest.raises(ManifestError, match=r"(?s)line 1: missing fields .*line 2"):
        read_manifest(path)


def test_empty_and_absent_manifest(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(ManifestError, match="empty"):
        read_manifest(tmp_path / "e.jsonl")
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(tmp_path / "nope.jsonl")


def test_unknown_corpus_accepts_any_label(tmp_path):
    rec = _rec(tmp_path, "a", label="bored-ish", corpus="my-own")
    assert read_manifest(write_manifest([rec], tmp_path / "m.jsonl"))[0].label == "bored-ish"

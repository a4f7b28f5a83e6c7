"""Manifest records are type-checked at load: wrong types, bad seconds, odd ids and non-UTF-8 bytes are
reported per line, naming the file, the line, the problem and the fix (never a traceback)."""

from __future__ import annotations

import json

import pytest

from ser_common.manifest import ManifestError, ManifestRecord, read_manifest

BASE = {"utt_id": "a", "audio": "/data/a.wav", "corpus": "my-own", "speaker": "s1", "session": "g1"}


def _write(tmp_path, *lines: str | dict, name: str = "m.jsonl"):
    path = tmp_path / name
    path.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines), encoding="utf-8")
    return path


def _error(path) -> str:
    with pytest.raises(ManifestError) as err:
        read_manifest(path, check_audio=False)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ")
    assert "malformed line(s)" in msg and "fix these lines" in msg
    return msg


@pytest.mark.parametrize("field,value,problem,fix", [
    ("start", -1.0, "start must be a finite, non-negative number of seconds, got -1.0", "start at 0 or later"),
    ("start", "1.5", "start must be a number of seconds, got string '1.5'", 'without quotes ("start": 1.5)'),
    ("end", "soon", "end must be a number of seconds, got string 'soon'", "give a number of seconds"),
    ("duration", True, "duration must be a number of seconds, got true", "leave the field out"),
    ("duration", [1.0], "duration must be a number of seconds, got a list", "give a number of seconds"),
    ("utt_id", "", "utt_id is empty", "unique non-empty id"),
    ("utt_id", "   ", "utt_id is empty", "unique non-empty id"),
    ("utt_id", "a\nb", "contains newline character(s)", "remove them"),
    ("utt_id", "a\rb", "contains carriage return character(s)", "remove them"),
    ("utt_id", "a\x00b", "contains NUL character(s)", "remove them"),
    ("utt_id", 7, "utt_id must be a string, got number 7", '"utt_id": "..."'),
    ("audio", None, "audio must be a string, got null", '"audio": "..."'),
    ("audio", "/x\x00.wav", "contains a NUL character", "remove it"),
    ("corpus", {"a": 1}, "corpus must be a string, got an object", '"corpus": "..."'),
    ("speaker", ["s1"], "speaker must be a string or an integer, got a list", '"speaker": "..."'),
    ("speaker", None, "speaker must be a string or an integer, got null", '"speaker": "..."'),
    ("session", False, "session must be a string or an integer, got false", '"session": "..."'),
    ("label", 3, "label must be a string or null, got number 3", "or leave it out"),
    ("transcript", ["hi"], "transcript must be a string or null, got a list", "or leave it out"),
    ("extra", [], "extra must be an object {...}, got a list", "use {} or leave the field out"),
    ("extra", None, "extra must be an object {...}, got null", "use {} or leave the field out"),
])
def test_wrong_types_and_ranges_name_line_problem_and_fix(tmp_path, field, value, problem, fix):
    path = _write(tmp_path, {**BASE, "utt_id": "ok"}, {**BASE, field: value})
    msg = _error(path)
    assert "1 malformed line(s)" in msg and "line 2: " in msg and "line 1:" not in msg
    assert problem in msg and fix in msg


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_seconds_are_refused(tmp_path, literal):
    line = json.dumps(BASE)[:-1] + f', "duration": {literal}}}'
    msg = _error(_write(tmp_path, line))
    assert "line 1: duration must be a finite, non-negative number of seconds" in msg


@pytest.mark.parametrize("start,end,shown", [(2.0, 1.0, "start (2 s) must be before end (1 s)"),
                                             (1.0, 1.0, "start (1 s) must be before end (1 s)"),
                                             (None, 0.0, "start (0 s) must be before end (0 s)")])
def test_start_must_be_before_end(tmp_path, start, end, shown):
    rec = {**BASE, "end": end, **({} if start is None else {"start": start})}
    msg = _error(_write(tmp_path, rec))
    assert f"line 1: {shown}" in msg and "fix the segment bounds" in msg


def test_every_problem_of_a_line_is_listed_and_every_line_is_reported(tmp_path):
    bad = {**BASE, "start": "0", "label": 1, "speaker": None}
    msg = _error(_write(tmp_path, bad, {**BASE, "utt_id": "b"}, {**BASE, "utt_id": "", "end": -2}))
    assert "2 malformed line(s)" in msg
    line1 = next(x for x in msg.splitlines() if "line 1:" in x)
    assert "speaker must be" in line1 and "label must be" in line1 and "start must be" in line1
    line3 = next(x for x in msg.splitlines() if "line 3:" in x)
    assert "utt_id is empty" in line3 and "end must be a finite, non-negative" in line3


@pytest.mark.parametrize("line,kind", [("[1, 2]", "a list"), ('"just a string"', "string 'just a string'"),
                                       ("42", "number 42"), ("null", "null"), ("true", "true")])
def test_valid_json_that_is_not_an_object_is_a_malformed_line(tmp_path, line, kind):
    msg = _error(_write(tmp_path, BASE, line))
    assert f"line 2: not a JSON object but {kind}; each line must be one record" in msg


def test_deeply_nested_json_is_a_malformed_line_not_a_crash(tmp_path):
    msg = _error(_write(tmp_path, BASE, "[" * 200_000))
    assert "line 2: " in msg


def test_non_utf8_bytes_name_the_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    good = json.dumps(BASE).encode()
    bad = json.dumps({**BASE, "utt_id": "b", "transcript": "caf\u00e9"}, ensure_ascii=False).encode("latin-1")
    path.write_bytes(good + b"\n" + bad + b"\n")
    msg = _error(path)
    assert "line 2: not UTF-8 text (byte 0xe9" in msg and "save the manifest as UTF-8" in msg
    assert "UnicodeDecodeError" not in msg


def test_lone_surrogate_escape_is_refused(tmp_path):
    line = json.dumps(BASE)[:-1] + ', "transcript": "x\\udc80y"}'
    msg = _error(_write(tmp_path, line))
    assert "line 1: transcript contains a lone surrogate escape" in msg


def test_good_records_still_load_ints_become_strings_and_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    recs = [{**BASE, "speaker": 3, "session": 1, "start": 0, "end": 2, "duration": 2, "label": "",
             "transcript": None, "extra": {"k": [1]}},
            {**BASE, "utt_id": "b", "label": "=happy", "transcript": "two\nlines"}]
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in recs).encode())
    a, b = read_manifest(path, check_audio=False)
    assert (a.speaker, a.session, a.label, a.start, a.end, a.duration) == ("3", "1", None, 0.0, 2.0, 2.0)
    assert isinstance(a.start, float) and a.extra == {"k": [1]}
    assert b.label == "=happy" and b.transcript == "two\nlines"


def test_from_dict_refuses_non_dicts_and_wrong_types_directly():
    with pytest.raises(ValueError, match="not a JSON object but a list"):
        ManifestRecord.from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="start must be a number of seconds"):
        ManifestRecord.from_dict({**BASE, "start": "0.5"})
    assert ManifestRecord.from_dict({**BASE, "start": 0.5}).start == 0.5

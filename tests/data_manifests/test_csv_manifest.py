"""A transcript table nobody here prepared: ``ser-manifest csv`` (any detectable delimiter, UTF-8 with a BOM,
no audio or an audio column), with every problem reported per row and a clear error for missing columns."""

import warnings
from collections import Counter

import pytest
from click.testing import CliRunner

from data_manifests import CorpusError, CorpusWarning, FoldWarning, build_csv
from data_manifests.cli import main
from ser_common.manifest import ManifestError, read_manifest, write_manifest

from tests.data_manifests.conftest import write_wav

SPEAKERS = ("s1", "s2", "s3", "s4", "s5")
EMOTIONS = ("Angry", "joy", " NEUTRAL ", "sad")
MAP = "angry=angry,joy=happy,neutral=neutral,sad=sad"
COLS = {"utt_id_col": "id", "text_col": "sentence", "label_col": "emotion", "speaker_col": "spk"}
CLI_COLS = ["--utt-id", "id", "--text", "sentence", "--label", "emotion", "--speaker", "spk"]


def write_table(path, rows, header=("id", "sentence", "emotion", "spk", "split"), delimiter=";", bom=True,
                encoding="utf-8"):
    """A table as Excel writes 'CSV UTF-8' in a semicolon locale: BOM, ';', cells with ';' or ',' quoted."""
    def cell(c):
        return f'"{c}"' if any(ch in c for ch in (delimiter, ",", '"')) else c
    text = "\r\n".join(delimiter.join(cell(c) for c in row) for row in [header, *rows]) + "\r\n"
    path.write_bytes(("\ufeff" if bom else "").encode("utf-8") + text.encode(encoding))
    return path


def every_speaker_every_emotion():
    """20 rows: 5 speakers × 4 emotions, texts with commas and semicolons, a train/test split."""
    return [(f"u{i:02d}", f"Well; I said, take {i}", emo, spk, "test" if spk == "s5" else "train")
            for i, (spk, emo) in enumerate((s, e) for s in SPEAKERS for e in EMOTIONS)]


@pytest.fixture
def table(tmp_path):
    return write_table(tmp_path / "texts.csv", every_speaker_every_emotion())


def test_bom_semicolons_text_only_records(table):
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # a balanced, mapped table warns about nothing
        recs = build_csv(table, **COLS, split_col="split", label_map=MAP)
    assert len(recs) == 20 and [r.utt_id for r in recs][:3] == ["u00", "u01", "u02"]   # the table's order
    r = recs[2]
    assert (r.utt_id, r.transcript, r.label, r.speaker, r.corpus) == ("u02", "Well; I said, take 2", "neutral", "s1",
                                                                     "texts")
    assert r.audio is None and r.duration is None and r.extra == {"split": "train"}
    assert Counter(r.label for r in recs) == {"angry": 5, "happy": 5, "neutral": 5, "sad": 5}
    # the split goes to extra; the folds are speaker groups, one speaker each here
    assert {r.speaker: r.session for r in recs} == dict(zip(SPEAKERS, ("g1", "g2", "g3", "g4", "g5")))
    assert {r.extra["split"] for r in recs if r.speaker == "s5"} == {"test"}


def test_cli_writes_a_text_only_manifest_that_loads_without_audio(table, tmp_path):
    out = tmp_path / "texts.jsonl"
    res = CliRunner().invoke(main, ["csv", str(table), *CLI_COLS, "--split", "split", "--label-map", MAP,
                                    "--corpus", "calls-text", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert res.stderr == ""
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["session", "neutral", "happy", "sad", "angry", "total", "speakers"]
    assert lines[2].split() == ["g1", "1", "1", "1", "1", "4", "1"]
    assert lines[-2:] == ["20 utterances, text only (no audio)", f"wrote {out}"]
    first = out.read_text(encoding="utf-8").splitlines()[0]
    assert '"audio"' not in first and '"transcript": "Well; I said, take 0"' in first
    recs = read_manifest(out, check_audio=False)
    assert len(recs) == 20 and recs[0].corpus == "calls-text" and recs[0].audio is None
    with pytest.raises(ManifestError) as e:
        read_manifest(out)          # an audio corpus is checked as before: text-only records are named
    assert str(e.value).startswith(f"{out}: 20 record(s) without audio (text-only):\n  u00\n")


def test_missing_columns_are_named_with_the_columns_the_table_has(table, tmp_path):
    with pytest.raises(CorpusError) as e:
        build_csv(table, utt_id_col="ID", text_col="transcript", label_col="emotion", speaker_col="spk")
    assert str(e.value) == (f"{table}: no column 'ID' (--utt-id), 'transcript' (--text); the table's columns "
                            "(delimiter ';') are: 'id', 'sentence', 'emotion', 'spk', 'split'. Column names are "
                            "case-sensitive: 'ID' -> 'id'")
    res = CliRunner().invoke(main, ["csv", str(table), "--utt-id", "id", "--text", "sentence", "--label", "label",
                                    "--speaker", "spk", "--audio", "wav", "-o", str(tmp_path / "m.jsonl")])
    assert res.exit_code == 1
    assert res.stderr == (f"Error: {table}: no column 'label' (--label), 'wav' (--audio); the table's columns "
                          "(delimiter ';') are: 'id', 'sentence', 'emotion', 'spk', 'split'\n")
    assert not (tmp_path / "m.jsonl").exists()
    one = tmp_path / "one.csv"
    one.write_text("id:sentence:emotion:spk\nu1:hi:angry:s1\n")
    with pytest.raises(CorpusError, match="are: 'id:sentence:emotion:spk'. Only one column was found: if the cells "
                                          "are separated by another character, pass it with --delimiter"):
        build_csv(one, **COLS)
    assert len(build_csv(one, **COLS, delimiter=":")) == 1


def test_every_bad_row_is_reported_with_its_line(tmp_path):
    rows = [("u1", "Hello", "angry", "s1", "train"),
            ("u2", "  ", "sad", "s1", "train"),            # empty text
            ("u3", "Hi", "calm", "s2", "train"),           # not in the map
            ("u4", "Hey", "angry", "", "train"),           # no speaker
            ("u5", "Yo", "Calm", "s2", "train"),           # not in the map (after lower-casing)
            ("u6", "Ok", "sad"),                           # too few cells
            ("", "Who?", "sad", "s3", "dev")]              # no id
    table = write_table(tmp_path / "bad.csv", rows)
    with pytest.raises(CorpusError) as e:
        build_csv(table, **COLS, label_map="angry=angry,sad=sad")
    assert str(e.value) == (
        f"{table}: 6 invalid row(s):\n"
        "  line 3: empty text (column 'sentence') for 'u2'\n"
        "  line 5: empty speaker (column 'spk') for 'u4'; a speaker is never guessed\n"
        "  line 7: 3 cell(s), the header has 5 (delimiter ';'); quote cells that contain ';' or line breaks\n"
        "  line 8: empty utt_id (column 'id')\n"
        "  lines 4, 6: label 'calm' is not in --label-map\n"
        "--label-map maps angry, sad. Add the missing names to it (e.g. calm=<label>; the toolkit's classes are "
        "neutral, happy, sad, angry), or remove those rows (--skip-invalid leaves them out). Fix the other rows "
        "listed, or leave them out too with --skip-invalid.")
    with pytest.warns(CorpusWarning, match="6 invalid row\\(s\\), left out:\n  line 3: empty text"):
        recs = build_csv(table, **COLS, label_map="angry=angry,sad=sad", n_groups=2, skip_invalid=True)
    assert [r.utt_id for r in recs] == ["u1"]


def test_duplicate_ids_always_fail_and_are_listed_with_the_other_problems(tmp_path):
    table = write_table(tmp_path / "dup.csv", [("u1", "Hello", "angry", "s1", "a"), ("u2", "", "sad", "s1", "a"),
                                               ("u1", "Again", "sad", "s2", "a")])
    for skip in (False, True):
        with pytest.raises(CorpusError) as e:
            build_csv(table, **COLS, skip_invalid=skip)
        assert str(e.value) == (
            f"{table}: 1 duplicate utt_id(s); ids must be unique (--skip-invalid does not choose between them):\n"
            "  line 4: utt_id 'u1' already on line 2\n"
            "and 1 other invalid row(s):\n"
            "  line 3: empty text (column 'sentence') for 'u2'\n"
            "Fix these rows, or pass skip_invalid=True (CLI: --skip-invalid) to leave them out with a warning.")


def test_comma_tab_and_forced_delimiters_and_empty_labels(tmp_path):
    rows = [("u1", "Hi, there", "Angry", "s1"), ("u2", "Bye", "", "s2")]
    header = ("id", "sentence", "emotion", "spk")
    for delimiter in (",", "\t"):
        table = write_table(tmp_path / "t.csv", rows, header=header, delimiter=delimiter, bom=False)
        with pytest.warns(CorpusWarning) as caught:
            recs = build_csv(table, **COLS)
        assert [(r.transcript, r.label) for r in recs] == [("Hi, there", "angry"), ("Bye", None)]
        assert f"{table}: 1 row(s) have an empty label (column 'emotion'); left unlabelled" in \
            [str(w.message) for w in caught]
    res = CliRunner().invoke(main, ["csv", str(table), *CLI_COLS, "--delimiter", "\\t", "-o",
                                    str(tmp_path / "m.jsonl")])
    assert res.exit_code == 0, res.output
    assert "1 row(s) have an empty label" in res.stderr


def test_a_table_that_is_not_utf8_is_refused_with_the_fix(tmp_path):
    table = write_table(tmp_path / "latin.csv", [("u1", "Café", "angry", "s1", "a")], bom=False, encoding="latin-1")
    with pytest.raises(CorpusError) as e:
        build_csv(table, **COLS)
    assert str(e.value) == (f"{table}: not UTF-8 text (byte 0xe9 on line 2); save the table as UTF-8 (e.g. "
                            "`iconv -f latin1 -t utf-8 latin.csv > utf8.csv`, or Excel's 'CSV UTF-8')")
    (tmp_path / "empty.csv").write_bytes(b"\xef\xbb\xbf\r\n")
    with pytest.raises(CorpusError, match="the table is empty; expected a header line naming the columns"):
        build_csv(tmp_path / "empty.csv", **COLS)


def test_audio_column_relative_to_the_table(tmp_path):
    for i, spk in enumerate(SPEAKERS):
        for j, emo in enumerate(("angry", "sad")):
            write_wav(tmp_path / "wavs" / f"{spk}_{emo}.wav", 0.05, sr=44_100, seed=i * 10 + j)
    rows = [(f"{spk}_{emo}", f"text {spk} {emo}", emo, spk, f"wavs/{spk}_{emo}.wav")
            for spk in SPEAKERS for emo in ("angry", "sad")]
    header = ("id", "sentence", "emotion", "spk", "wav")
    table = write_table(tmp_path / "with_audio.csv", rows, header=header)
    recs = build_csv(table, **COLS, audio_col="wav")
    assert recs[0].audio == str(tmp_path / "wavs" / "s1_angry.wav")
    assert recs[0].duration == pytest.approx(0.05)
    assert len(read_manifest(write_manifest(recs, tmp_path / "audio.jsonl"))) == 10      # audio checked as usual
    rows += [("ghost", "boo", "sad", "s1", "wavs/ghost.wav"), ("noaudio", "hm", "sad", "s1", "")]
    table = write_table(tmp_path / "with_audio.csv", rows, header=header)
    with pytest.raises(CorpusError) as e:
        build_csv(table, **COLS, audio_col="wav")
    assert str(e.value) == (f"{table}: 1 invalid row(s):\n  line 13: empty audio path (column 'wav') for "
                            "'noaudio'\nFix these rows, or pass skip_invalid=True (CLI: --skip-invalid) to leave them "
                            "out with a warning.")
    with pytest.warns(CorpusWarning) as caught:
        recs = build_csv(table, **COLS, audio_col="wav", skip_invalid=True)
    assert len(recs) == 10
    assert f"{table}: 1 row(s) with missing, unreadable or empty audio, left out:\n  line 12: audio file not " \
           f"found: {tmp_path / 'wavs' / 'ghost.wav'}" in [str(w.message) for w in caught]


def test_confound_warning_when_every_speaker_carries_one_label(tmp_path):
    rows = [(f"u{i}", f"text {i}", emo, spk, "x") for i, (spk, emo) in
            enumerate((s, e) for s, e in zip(SPEAKERS, ("angry", "sad", "angry", "sad", "angry")) for _ in range(3))]
    table = write_table(tmp_path / "acted.csv", rows)
    with pytest.warns(FoldWarning) as caught:
        build_csv(table, **COLS)
    msg = str(caught[0].message)
    assert msg.startswith(f"{table}: speakers and labels are confounded:\n  every one of the 5 speakers carries a "
                          "single label (speaker -> label: s1 -> angry, s2 -> sad, s3 -> angry, s4 -> sad, "
                          "s5 -> angry)\n  fold group g1 (speaker s1) has no sad\n")
    assert msg.endswith("speaker-independent folds then measure speakers, not emotions. Check that the 'spk' column "
                        "(--speaker) names who speaks: a speaker-independent evaluation needs speakers who each carry "
                        "several classes.")
    res = CliRunner().invoke(main, ["csv", str(table), *CLI_COLS, "-o", str(tmp_path / "m.jsonl")])
    assert res.exit_code == 0 and "WARNING: " + msg in res.stdout and "warning: " + msg in res.stderr

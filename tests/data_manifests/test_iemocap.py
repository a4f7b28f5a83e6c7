import json
import shutil
from collections import Counter

import pytest
from click.testing import CliRunner

from data_manifests import CORPORA, CorpusError, CorpusWarning, build_iemocap
from data_manifests.cli import main
from data_manifests.iemocap import speaker_of
from ser_common.manifest import read_manifest

from tests.data_manifests.conftest import IEMOCAP_DIALOGS, make_iemocap_tree, wav_seconds

ALL_UTTS = {u[0]: u for d in IEMOCAP_DIALOGS.values() for utts in d.values() for u in utts}


def build_quietly(root, scheme="4class", **kw):
    with pytest.warns(CorpusWarning, match="1 utterance\\(s\\) have no transcription line"):
        return build_iemocap(root, scheme, **kw)


def test_speaker_is_session_plus_the_letter_before_the_final_digits():
    assert speaker_of("Ses01F_impro01_M003") == "Ses01M"
    assert speaker_of("Ses01F_script01_1_F000") == "Ses01F"
    assert speaker_of("Ses05M_script03_2_M041") == "Ses05M"
    with pytest.raises(ValueError, match="Ses01F_impro01_MXX0"):
        speaker_of("Ses01F_impro01_MXX0")


def test_four_class_counts_merge_and_fields(iemocap_root):
    recs = build_quietly(iemocap_root)
    by_id = {r.utt_id: r for r in recs}
    assert len(recs) == 10
    assert Counter(r.session for r in recs) == {"Session1": 5, "Session2": 3, "Session3": 2}
    assert Counter(r.label for r in recs) == {"neutral": 3, "happy": 3, "sad": 2, "angry": 2}
    # hap and exc both become happy; fru, xxx and sur are dropped
    assert by_id["Ses01F_impro01_F001"].label == "happy"
    assert by_id["Ses01F_script01_1_F000"].label == "happy"
    assert by_id["Ses02M_impro02_M000"].label == "happy"
    assert not {"Ses01F_impro01_M000", "Ses01F_impro01_M001", "Ses02M_impro02_F001"} & set(by_id)
    # lines that are not utterances never become records
    assert not any("XX" in r.utt_id for r in recs)

    r = by_id["Ses01F_script01_1_M000"]
    assert (r.corpus, r.speaker, r.session) == ("iemocap", "Ses01M", "Session1")
    assert r.transcript == "Well, I don't know."
    assert r.extra == {"dialog": "Ses01F_script01_1", "scripted": True, "start": 3.0, "end": 4.5}
    assert r.start is None and r.end is None  # the wav is the segment
    assert r.audio.endswith("Session1/sentences/wav/Ses01F_script01_1/Ses01F_script01_1_M000.wav")
    assert r.duration == pytest.approx(wav_seconds(3.0, 4.5), abs=1e-4)

    f = by_id["Ses01F_impro01_F000"]
    assert f.transcript == "Excuse me." and f.extra["scripted"] is False and f.extra["start"] == 6.2901
    assert by_id["Ses02M_impro02_F000"].speaker == "Ses02F"  # female speaker of a dialog named ...M_...
    assert by_id["Ses02M_impro02_M001"].transcript is None  # no transcription line: left empty (warned)
    assert {r.speaker for r in recs} == {"Ses01F", "Ses01M", "Ses02F", "Ses02M", "Ses03F", "Ses03M"}


def test_all_scheme_keeps_every_class_under_readable_names(iemocap_root):
    recs = build_quietly(iemocap_root, "all")
    assert len(recs) == len(ALL_UTTS) == 13
    labels = {r.utt_id: r.label for r in recs}
    assert labels["Ses01F_impro01_M000"] == "frustrated"
    assert labels["Ses01F_impro01_M001"] == "no_agreement"
    assert labels["Ses01F_script01_1_F000"] == "excited"
    assert labels["Ses01F_impro01_F001"] == "happy"
    assert labels["Ses02M_impro02_F001"] == "surprised"
    assert CORPORA["iemocap"] is build_iemocap


def test_missing_wav_is_an_error_listing_the_utterances_or_skipped_with_a_warning(iemocap_root):
    gone = iemocap_root / "Session2/sentences/wav/Ses02M_impro02"
    shutil.rmtree(gone)
    with pytest.raises(CorpusError) as e:
        build_iemocap(iemocap_root)
    msg = str(e.value)
    assert "3 labelled utterance(s) without a readable wav" in msg
    assert "Ses02M_impro02_F000" in msg and "Ses02M_impro02_M000" in msg and "--skip-invalid" in msg
    with pytest.warns(CorpusWarning, match="left out"):
        recs = build_iemocap(iemocap_root, skip_invalid=True)
    assert len(recs) == 7 and "Session2" not in {r.session for r in recs}


def test_unknown_code_and_malformed_line_name_file_and_line(tmp_path):
    dialogs = {"Session1": {"Ses01F_impro01": [("Ses01F_impro01_F000", "joy", 1.0, 2.0, "Hi."),
                                               ("Ses01F_impro01_M000", "neu", 3.0, 4.0, "Hello.")]}}
    root = make_iemocap_tree(tmp_path / "I", dialogs)
    label_file = root / "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt"
    with pytest.raises(CorpusError) as e:
        build_iemocap(root)
    assert f"{label_file}:3" in str(e.value) and "'joy'" in str(e.value)
    label_file.write_text(label_file.read_text().replace("[3.0000 - 4.0000]\t", "[3.0000 4.0000]\t"))
    with pytest.raises(CorpusError, match="not '\\[start - end\\]"):
        build_iemocap(root)


def test_duplicate_ids_and_wrong_session_are_errors(tmp_path):
    dup = ("Ses01F_impro01_F000", "neu", 1.0, 2.0, "Hi.")
    root = make_iemocap_tree(tmp_path / "dup", {"Session1": {"Ses01F_impro01": [dup], "Ses01F_impro02": [dup]}})
    with pytest.raises(CorpusError, match="labelled more than once(.|\n)*Ses01F_impro01_F000"):
        build_iemocap(root)
    root = make_iemocap_tree(tmp_path / "ses", {"Session2": {"Ses01F_impro01": [dup]}})
    with pytest.raises(CorpusError, match="does not belong to Session2"):
        build_iemocap(root)


def test_not_an_iemocap_tree(tmp_path):
    with pytest.raises(CorpusError, match="no Session1..Session5 folders"):
        build_iemocap(tmp_path)
    (tmp_path / "Session1").mkdir()
    with pytest.raises(CorpusError, match="EmoEvaluation"):
        build_iemocap(tmp_path)


def test_cli_writes_a_readable_manifest_and_prints_the_table(iemocap_root, tmp_path):
    out = tmp_path / "m" / "iemocap.jsonl"
    res = CliRunner().invoke(main, ["iemocap", str(iemocap_root), "-o", str(out)])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["session", "neutral", "happy", "sad", "angry", "total", "speakers"]
    assert lines[2].split() == ["Session1", "1", "2", "1", "1", "5", "2"]
    assert lines[-3].split() == ["total", "3", "3", "2", "2", "10", "6"]
    assert "no transcription line" in res.stderr
    recs = read_manifest(out)
    assert len(recs) == 10 and recs == build_quietly(iemocap_root)
    assert json.loads(out.read_text().splitlines()[0])["extra"]["dialog"] == "Ses01F_impro01"

    res = CliRunner().invoke(main, ["iemocap", str(iemocap_root), "-o", str(out), "--labels", "all"])
    assert res.exit_code == 0 and len(read_manifest(out)) == 13
    assert "frustrated" in res.stdout.splitlines()[0]


def test_cli_error_exits_1_with_the_message(tmp_path):
    res = CliRunner().invoke(main, ["iemocap", str(tmp_path), "-o", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 1
    assert "no Session1..Session5 folders" in res.stderr
    assert not (tmp_path / "x.jsonl").exists()

from collections import Counter

import pytest
from click.testing import CliRunner

from data_manifests import CorpusError, CorpusWarning, build_folder
from data_manifests.cli import main
from ser_common.manifest import read_manifest

from tests.data_manifests.conftest import write_wav


def make_pool(root, speakers=("ann", "bob", "cy"), per_speaker=2):
    for s in speakers:
        for i in range(per_speaker):
            suffix = "flac" if i % 2 else "wav"
            write_wav(root / "calls" / s / f"{s}_{i:03d}.{suffix}", 0.03, sr=8_000)
    return root


def test_unlabelled_pool_with_folder_speakers(tmp_path):
    root = make_pool(tmp_path / "new_calls")
    recs = build_folder(root)
    assert len(recs) == 6
    assert all(r.label is None and r.session == "pool" and r.corpus == "new_calls" for r in recs)
    assert recs[0].utt_id == "calls/ann/ann_000" and recs[0].speaker == "ann"
    assert recs[1].audio.endswith("ann_001.flac") and recs[1].duration == pytest.approx(0.03)


def test_speaker_sources_and_groups(tmp_path):
    root = make_pool(tmp_path / "p", speakers=("s1", "s2", "s3", "s4", "s5", "s6"))
    recs = build_folder(root, corpus="calls", speaker_from="filename-prefix")
    assert {r.speaker for r in recs} == {"s1", "s2", "s3", "s4", "s5", "s6"}
    assert set(Counter(r.session for r in recs)) == {"g1", "g2", "g3", "g4", "g5"}
    none = build_folder(root, speaker_from="none")
    assert {(r.speaker, r.session) for r in none} == {("unknown", "pool")}
    with pytest.raises(ValueError, match="unknown speaker source"):
        build_folder(root, speaker_from="voice")


def test_labels_csv_by_utt_id_or_filename(tmp_path):
    root = make_pool(tmp_path / "p")
    (tmp_path / "by_id.csv").write_text("utt_id,label\ncalls/ann/ann_000,angry\ncalls/bob/bob_001,happy\n")
    with pytest.warns(CorpusWarning, match="4 of 6 audio file\\(s\\) have no row"):
        recs = build_folder(root, labels_csv=tmp_path / "by_id.csv")
    assert {r.utt_id: r.label for r in recs if r.label} == {"calls/ann/ann_000": "angry", "calls/bob/bob_001": "happy"}
    rows = "".join(f"{f},{lab}\n" for f, lab in [("ann_000.wav", "neutral"), ("calls/ann/ann_001.flac", "sad"),
                                                    ("bob_000.wav", "happy"), ("bob_001.flac", "happy"),
                                                    ("cy_000.wav", "angry"), ("cy_001.flac", "angry")])
    (tmp_path / "by_name.csv").write_text("filename,label\n" + rows)
    recs = build_folder(root, corpus="emodb", labels_csv=tmp_path / "by_name.csv")
    assert Counter(r.label for r in recs) == {"happy": 2, "angry": 2, "neutral": 1, "sad": 1}


def test_labels_csv_problems_are_all_listed(tmp_path):
    root = make_pool(tmp_path / "p")
    csv = tmp_path / "bad.csv"
    csv.write_text("filename,label\nann_000.wav,angry\nann_000.wav,sad\nnobody.wav,sad\nbob_000.wav,\n"
                   "cy_000.wav,joyful\n")
    with pytest.raises(CorpusError) as e:
        build_folder(root, corpus="emodb", labels_csv=csv)
    msg = str(e.value)
    assert str(csv) in msg and "4 invalid row(s)" in msg
    assert "line 3: 'ann_000.wav' labelled twice" in msg
    assert "line 4: filename 'nobody.wav' matches no audio file" in msg
    assert "line 5: empty label" in msg
    assert "line 6: label 'joyful' not in the emodb label set" in msg
    csv.write_text("file,emotion\na,b\n")
    with pytest.raises(CorpusError, match="header must have 'label'"):
        build_folder(root, labels_csv=csv)


def test_empty_folder_and_suffix_twins(tmp_path):
    with pytest.raises(CorpusError, match="no .wav or .flac"):
        build_folder(tmp_path)
    write_wav(tmp_path / "a.wav")
    write_wav(tmp_path / "a.flac")
    with pytest.raises(CorpusError, match="differ only in their suffix(.|\n)*a \\(x2\\)"):
        build_folder(tmp_path)


def test_cli_folder(tmp_path):
    root = make_pool(tmp_path / "p")
    (tmp_path / "labels.csv").write_text("filename,label\nann_000.wav,angry\n")
    out = tmp_path / "pool.jsonl"
    res = CliRunner().invoke(main, ["folder", str(root), "-o", str(out), "--corpus", "calls"])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0].split() == ["session", "<unlabelled>", "total", "speakers"]
    recs = read_manifest(out)
    assert len(recs) == 6 and {r.label for r in recs} == {None} and recs[0].corpus == "calls"
    res = CliRunner().invoke(main, ["folder", str(root), "-o", str(out), "--labels-csv", str(tmp_path / "labels.csv"),
                                    "--speaker-from", "none"])
    assert res.exit_code == 0, res.output
    assert "5 of 6 audio file(s) have no row" in res.stderr
    assert Counter(r.label for r in read_manifest(out)) == {None: 5, "angry": 1}

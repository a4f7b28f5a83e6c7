"""EmoDB and RAVDESS naming rules on generated trees: layouts, odd files and the errors they raise."""

from collections import Counter

import pytest
from click.testing import CliRunner

from data_manifests import CorpusError, CorpusWarning, build_emodb, build_ravdess
from data_manifests.cli import main
from ser_common.manifest import read_manifest

from tests.data_manifests.conftest import write_wav

EMODB_SPEAKERS = ("03", "08", "09", "10", "11")


def make_emodb(folder, names=None):
    names = names or [f"{s}a01{e}a.wav" for s in EMODB_SPEAKERS for e in "WLTNF"]
    for i, name in enumerate(names):
        write_wav(folder / name, 0.02, sr=(16_000, 48_000)[i % 2], seed=i)
    return folder


def test_emodb_files_directly_in_root_any_rate_wav_or_flac(tmp_path):
    names = [f"{s}a01{e}a.{'flac' if i % 2 else 'wav'}" for i, (s, e) in
             enumerate((s, e) for s in EMODB_SPEAKERS for e in "WLTNF")]
    make_emodb(tmp_path, names)
    (tmp_path / "._03a01Wa.wav").write_bytes(b"resource fork")  # hidden: ignored silently
    recs = build_emodb(tmp_path)
    assert len(recs) == 20 and Counter(r.label for r in recs)["angry"] == 5
    assert {r.session for r in recs} == {"g1", "g2", "g3", "g4", "g5"}
    assert all(r.duration == pytest.approx(0.02) for r in recs)
    assert len(build_emodb(tmp_path, "all")) == 25


def test_emodb_prefers_the_wav_folder_and_warns_about_stray_files(tmp_path):
    make_emodb(tmp_path / "wav")
    (tmp_path / "erkennung.txt").write_text("not looked at: outside wav/")
    (tmp_path / "wav" / "notes.txt").write_text("stray")
    with pytest.warns(CorpusWarning, match="notes.txt"):
        recs = build_emodb(tmp_path)
    assert len(recs) == 20 and all("/wav/" in r.audio for r in recs)


def test_emodb_unknown_emotion_and_malformed_names_are_listed(tmp_path):
    make_emodb(tmp_path / "wav", [f"{s}a01Wa.wav" for s in EMODB_SPEAKERS] + ["03a01Xa.wav", "03z01Wa.wav",
                                                                              "recording.wav"])
    with pytest.raises(CorpusError) as e:
        build_emodb(tmp_path)
    msg = str(e.value)
    assert "3 malformed file name(s)" in msg
    assert "03a01Xa.wav: emodb: unknown label code 'X'" in msg
    assert "03z01Wa.wav" in msg and "recording.wav" in msg and "--skip-invalid" in msg
    with pytest.warns(CorpusWarning, match="3 malformed"):
        assert len(build_emodb(tmp_path, skip_invalid=True)) == 5


def test_emodb_duplicate_ids_and_too_few_speakers(tmp_path):
    make_emodb(tmp_path / "a", [f"{s}a01Wa.wav" for s in EMODB_SPEAKERS] + ["03a01Wa.flac"])
    with pytest.raises(CorpusError, match="more than one file(.|\n)*03a01Wa.flac"):
        build_emodb(tmp_path / "a")
    make_emodb(tmp_path / "b", ["03a01Wa.wav", "08a01Wa.wav"])
    with pytest.raises(CorpusError, match="2 speakers cannot form 5"):
        build_emodb(tmp_path / "b")
    assert {r.session for r in build_emodb(tmp_path / "b", n_groups=2)} == {"g1", "g2"}


def test_emodb_unreadable_audio(tmp_path):
    make_emodb(tmp_path)
    (tmp_path / "03a02Wa.wav").write_bytes(b"RIFF broken")
    with pytest.raises(CorpusError, match="unreadable or empty(.|\n)*03a02Wa.wav"):
        build_emodb(tmp_path)
    with pytest.warns(CorpusWarning):
        assert len(build_emodb(tmp_path, skip_invalid=True)) == 20


def make_ravdess(root, actors=range(1, 6)):
    for a in actors:
        for emo in ("01", "02", "03", "05"):
            write_wav(root / f"Actor_{a:02d}" / f"03-01-{emo}-01-01-01-{a:02d}.wav", 0.02, sr=48_000, channels=2)
    return root


def test_ravdess_generated_layout_skips_song_files(tmp_path):
    root = make_ravdess(tmp_path)
    write_wav(root / "Actor_01" / "03-02-03-01-01-01-01.wav")  # song
    with pytest.warns(CorpusWarning, match="1 file\\(s\\) that are not audio-only speech"):
        recs = build_ravdess(root)
    assert len(recs) == 15 and Counter(r.label for r in recs) == {"neutral": 5, "happy": 5, "angry": 5}
    assert {r.speaker for r in recs} == {f"Actor_{a:02d}" for a in range(1, 6)}
    assert recs[0].extra == {"intensity": "normal", "statement": 1, "repetition": 1, "gender": "male"}
    assert recs[0].transcript == "Kids are talking by the door"


def test_ravdess_errors(tmp_path):
    with pytest.raises(CorpusError, match="no Actor_XX folders"):
        build_ravdess(tmp_path)
    root = make_ravdess(tmp_path)
    write_wav(root / "Actor_02" / "03-01-03-01-01-01-07.wav")   # actor 07 in Actor_02
    write_wav(root / "Actor_02" / "03-01-09-01-01-01-02.wav")   # emotion 09
    write_wav(root / "Actor_02" / "03-01-03-03-01-01-02.wav")   # intensity 03
    with pytest.raises(CorpusError) as e:
        build_ravdess(root)
    msg = str(e.value)
    assert "3 malformed" in msg and "in Actor_02" in msg and "unknown label code '09'" in msg
    assert "intensity '03'" in msg


def test_cli_names_malformed_files_or_skips_them(tmp_path):
    make_emodb(tmp_path / "wav")
    write_wav(tmp_path / "wav" / "03a01Fa_copy.wav")
    out = tmp_path / "m.jsonl"
    res = CliRunner().invoke(main, ["emodb", str(tmp_path), "-o", str(out)])
    assert res.exit_code == 1 and "03a01Fa_copy.wav" in res.stderr and "--skip-invalid" in res.stderr
    res = CliRunner().invoke(main, ["emodb", str(tmp_path), "-o", str(out), "--skip-invalid", "--labels", "all"])
    assert res.exit_code == 0, res.output
    assert "warning:" in res.stderr and "03a01Fa_copy.wav" in res.stderr
    assert len(read_manifest(out)) == 25

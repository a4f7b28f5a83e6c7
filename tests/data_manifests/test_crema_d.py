from collections import Counter

import pytest
from click.testing import CliRunner

from data_manifests import CORPORA, CorpusError, CorpusWarning, build_crema_d
from data_manifests.cli import main
from data_manifests.crema_d import SENTENCES
from ser_common.manifest import read_manifest

from tests.data_manifests.conftest import CREMA_ACTORS, make_crema_tree, write_wav


def test_counts_labels_transcripts_and_groups(crema_root):
    recs = build_crema_d(crema_root)
    assert len(recs) == 4 * len(CREMA_ACTORS)
    assert Counter(r.label for r in recs) == {"angry": 6, "happy": 6, "neutral": 6, "sad": 6}
    r = next(r for r in recs if r.utt_id == "1003_DFA_ANG_XX")
    assert (r.speaker, r.label, r.transcript) == ("1003", "angry", "Don't forget a jacket")
    assert r.extra == {"sentence": "DFA", "intensity": "unspecified"}
    assert r.duration == pytest.approx(0.04)
    assert next(r for r in recs if r.utt_id == "1001_IEO_HAP_HI").extra["intensity"] == "high"
    sessions = {}
    for r in recs:
        assert sessions.setdefault(r.speaker, r.session) == r.session
    assert set(sessions.values()) == {"g1", "g2", "g3", "g4", "g5"}
    assert len(SENTENCES) == 12
    all_recs = CORPORA["crema-d"](crema_root, "all")
    assert len(all_recs) == 36 and Counter(r.label for r in all_recs)["disgusted"] == 6


def test_files_directly_in_root(tmp_path):
    root = make_crema_tree(tmp_path)
    for f in (root / "AudioWAV").iterdir():
        f.rename(root / f.name)
    (root / "AudioWAV").rmdir()
    assert len(build_crema_d(root)) == 24


def test_unknown_codes_and_empty_audio(crema_root):
    write_wav(crema_root / "AudioWAV" / "1001_DFA_JOY_XX.wav")
    write_wav(crema_root / "AudioWAV" / "1001_XYZ_ANG_XX.wav")
    write_wav(crema_root / "AudioWAV" / "1001_DFA_ANG_ZZ.wav")
    with pytest.raises(CorpusError) as e:
        build_crema_d(crema_root)
    msg = str(e.value)
    assert "3 malformed" in msg and "'JOY'" in msg and "'XYZ'" in msg and "'ZZ'" in msg
    for name in ("1001_DFA_JOY_XX.wav", "1001_XYZ_ANG_XX.wav", "1001_DFA_ANG_ZZ.wav"):
        (crema_root / "AudioWAV" / name).unlink()
    write_wav(crema_root / "AudioWAV" / "1007_MTI_SAD_XX.wav", 0.0)  # a header and no samples
    with pytest.raises(CorpusError, match="empty audio"):
        build_crema_d(crema_root)
    with pytest.warns(CorpusWarning, match="1007_MTI_SAD_XX"):
        assert len(build_crema_d(crema_root, skip_invalid=True)) == 24


def test_cli(crema_root, tmp_path):
    out = tmp_path / "c.jsonl"
    res = CliRunner().invoke(main, ["crema-d", str(crema_root), "-o", str(out), "--labels", "all", "--groups", "3"])
    assert res.exit_code == 0, res.output
    recs = read_manifest(out)
    assert len(recs) == 36 and {r.session for r in recs} == {"g1", "g2", "g3"}
    assert res.stdout.splitlines()[-3].split()[-2:] == ["36", "6"]

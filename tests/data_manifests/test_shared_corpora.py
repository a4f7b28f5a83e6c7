"""The real EmoDB and RAVDESS in ../shared: exact counts, speakers and speaker-independent balanced groups."""

from collections import Counter, defaultdict

import pytest
from click.testing import CliRunner

from data_manifests import build_emodb, build_ravdess
from data_manifests.cli import main
from data_manifests.emodb import SENTENCES
from ser_common.manifest import read_manifest

pytestmark = pytest.mark.shared

BUILT: dict = {}


def built(builder, root, scheme):
    """Each (corpus, scheme) manifest is built once per test session."""
    key = (builder.__name__, scheme)
    if key not in BUILT:
        BUILT[key] = builder(root, scheme)
    return BUILT[key]


def assert_speaker_independent_balanced_groups(recs, n_speakers, max_spread):
    sessions_of = defaultdict(set)
    for r in recs:
        sessions_of[r.speaker].add(r.session)
    assert len(sessions_of) == n_speakers
    assert all(len(s) == 1 for s in sessions_of.values()), "a speaker spans two fold groups"
    sizes = Counter(r.session for r in recs)
    assert sorted(sizes) == ["g1", "g2", "g3", "g4", "g5"]
    assert max(sizes.values()) - min(sizes.values()) <= max_spread


def test_emodb_four_class(emodb_dir):
    recs = built(build_emodb, emodb_dir, "4class")
    assert len(recs) == 339
    assert Counter(r.label for r in recs) == {"neutral": 79, "happy": 71, "sad": 62, "angry": 127}
    assert_speaker_independent_balanced_groups(recs, 10, max_spread=12)
    r = next(r for r in recs if r.utt_id == "03a01Fa")
    assert (r.speaker, r.label, r.transcript) == ("03", "happy", "Der Lappen liegt auf dem Eisschrank.")
    assert r.extra == {"text_id": "a01", "version": "a", "gender": "male"}
    assert 1.5 < r.duration < 2.5
    assert {r.transcript for r in recs} == set(SENTENCES.values())
    assert all(r.duration and r.duration > 0 for r in recs)


def test_emodb_all(emodb_dir):
    recs = built(build_emodb, emodb_dir, "all")
    assert len(recs) == 535
    assert Counter(r.label for r in recs) == {"neutral": 79, "happy": 71, "sad": 62, "angry": 127, "bored": 81,
                                              "disgusted": 46, "fearful": 69}
    assert_speaker_independent_balanced_groups(recs, 10, max_spread=12)
    assert 24 < sum(r.duration for r in recs) / 60 < 25.5  # 24.8 min


def test_ravdess_four_class(ravdess_dir):
    recs = built(build_ravdess, ravdess_dir, "4class")
    assert len(recs) == 672
    assert Counter(r.label for r in recs) == {"neutral": 96, "happy": 192, "sad": 192, "angry": 192}
    assert_speaker_independent_balanced_groups(recs, 24, max_spread=28)
    r = next(r for r in recs if r.utt_id == "03-01-05-02-02-01-12")
    assert (r.speaker, r.label, r.transcript) == ("Actor_12", "angry", "Dogs are sitting by the door")
    assert r.extra == {"intensity": "strong", "statement": 2, "repetition": 1, "gender": "female"}
    assert all(r.duration and r.duration > 1 for r in recs)


def test_ravdess_all(ravdess_dir):
    recs = built(build_ravdess, ravdess_dir, "all")
    assert len(recs) == 1440
    counts = Counter(r.label for r in recs)
    assert counts["neutral"] == 96 and counts["calm"] == 192 and len(counts) == 8
    assert_speaker_independent_balanced_groups(recs, 24, max_spread=60)


def test_cli_on_real_emodb(emodb_dir, tmp_path):
    out = tmp_path / "emodb.jsonl"
    res = CliRunner().invoke(main, ["emodb", str(emodb_dir), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[-3].split() == ["total", "79", "71", "62", "127", "339", "10"]
    recs = read_manifest(out)
    assert recs == built(build_emodb, emodb_dir, "4class")
    assert all(r.audio.startswith("/") for r in recs)

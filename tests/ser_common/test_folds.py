import numpy as np
import pytest

from ser_common.folds import fold_splits, sample_per_class, speaker_groups


def test_speaker_groups_are_balanced_deterministic_and_disjoint():
    speakers = [f"s{i:02d}" for i in range(24) for _ in range(10 + i % 3)]
    groups = speaker_groups(speakers)
    assert groups == speaker_groups(list(reversed(speakers)))
    assert sorted(set(groups.values())) == ["g1", "g2", "g3", "g4", "g5"]
    load = {g: sum(1 for s in speakers if groups[s] == g) for g in set(groups.values())}
    assert max(load.values()) - min(load.values()) <= 12
    with pytest.raises(ValueError, match="3 speakers"):
        speaker_groups(["a", "b", "c"])


def test_fold_splits_leave_one_session_out():
    sessions = ["Ses01", "Ses02", "Ses01", "Ses03", "Ses02"]
    splits = fold_splits(sessions)
    assert [g for g, _, _ in splits] == ["Ses01", "Ses02", "Ses03"]
    for g, train, test in splits:
        assert set(np.asarray(sessions)[test]) == {g}
        assert g not in set(np.asarray(sessions)[train])
        assert sorted(np.concatenate([train, test]).tolist()) == list(range(5))


def test_sample_per_class_is_stratified_seeded_and_restricted_to_candidates():
    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 5
    candidates = np.arange(0, 85, 2)  # only even indices may be drawn
    s1 = sample_per_class(labels, candidates, k=10, seed=0)
    assert set(s1.tolist()) <= set(candidates.tolist())
    counts = {c: sum(labels[i] == c for i in s1) for c in "abc"}
    assert counts == {"a": 10, "b": 10, "c": 3}  # class c has only 3 even indices (80, 82, 84)
    assert np.array_equal(s1, sample_per_class(labels, candidates, k=10, seed=0))
    assert not np.array_equal(s1, sample_per_class(labels, candidates, k=10, seed=1))

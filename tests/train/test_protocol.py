import numpy as np
import pytest

from train.config import TrainConfig
from train.inputs import load_inputs
from train.protocol import (cross_validate, learning_curve, parse_ks, resolve_ks, speaker_independent_folds,
                            subsample)


def test_folds_are_leave_one_session_out_speaker_independent_and_skip_unlabelled(toy_store):
    inputs = load_inputs(toy_store)
    folds, notes = speaker_independent_folds(inputs)
    assert [f.name for f in folds] == ["Ses01", "Ses02", "Ses03", "Ses04", "Ses05"] and not notes
    spk, ses = inputs.audio.speakers, inputs.audio.sessions
    for f in folds:
        assert not set(spk[f.train]) & set(spk[f.test])
        assert set(ses[f.test]) == {f.name} and f.name not in set(ses[f.train])
        assert (inputs.y[f.train] >= 0).all() and (inputs.y[f.test] >= 0).all()
    assert sorted(np.concatenate([f.test for f in folds]).tolist()) == inputs.labelled.tolist()


def test_k_sampling_draws_only_from_the_training_folds(toy_store):
    inputs = load_inputs(toy_store)
    folds, _ = speaker_independent_folds(inputs)
    for f in folds:
        rows = subsample(inputs, f.train, 5, seed=3)
        assert set(rows) <= set(f.train.tolist())
        assert np.bincount(inputs.y[rows], minlength=4).tolist() == [5, 5, 5, 5]
    r = cross_validate(inputs, "mean", TrainConfig(epochs=2), k=5, seeds=(0, 1))
    assert all(f["n_train"] == 20 and f["train_counts"] == {c: 5 for c in inputs.classes} for f in r.folds)
    assert len(r.folds) == 10 and r.confusion.sum() == 2 * 120
    assert r.summary["std_over"] == "seeds" and set(r.summary["per_seed"]["ua"]) == {"0", "1"}
    assert r.pooled["std_over"] == "seeds" and r.pooled["n_predictions"] == 120 and r.warnings == []


def test_ks_parse_and_skip_values_that_equal_all_data(toy_store):
    assert parse_ks("25, 50,all") == [25, 50, None]
    with pytest.raises(ValueError):
        parse_ks("0")
    inputs = load_inputs(toy_store)  # 24 per class per fold in training
    kept, notes = resolve_ks(inputs, [5, 24, 500, None])
    assert kept == [5, None] and len(notes) == 2 and "k=500 skipped" in notes[1]


def test_learning_curve_rows(toy_store):
    inputs = load_inputs(toy_store)
    c = learning_curve(inputs, "mean", TrainConfig(epochs=2), ks=[4, None], seeds=(0, 1))
    rows = c.rows()
    assert [(r["k"], r["seed"]) for r in rows] == [(4, 0), (4, 1), ("all", 0), ("all", 1)]
    assert rows[0]["n_train"] == 16 and rows[2]["n_train"] == 96
    assert rows[1]["ua_pooled"] == c.results[0].pooled["per_seed"]["ua"]["1"]

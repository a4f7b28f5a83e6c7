"""``--class-weight balanced``: per-class loss weights, the same weighted-mean semantics in both engines."""

import json

import numpy as np
import pytest

from train.cli import run as cli
from train.config import TrainConfig
from train.inputs import load_inputs
from train.protocol import cross_validate, speaker_independent_folds
from train.jobs import Job
from train.trainer import class_weights, predict_proba, train_frame, train_pooled

from .toy_stores import toy_rows, write_toy_store


def imbalanced_rows(minority: str = "sad", keep_every: int = 4):
    """:func:`toy_rows` (no unlabelled rows) keeping only every ``keep_every``-th utterance of ``minority``."""
    out, seen = [], 0
    for row in toy_rows(0):
        if row[1] == minority:
            seen += 1
            if seen % keep_every:
                continue
        out.append(row)
    return out


def test_balanced_weights_are_n_over_classes_times_count_and_zero_for_an_absent_class():
    y = np.array([0, 0, 0, 1, 2, 2, -1])
    rows = np.arange(6)
    np.testing.assert_allclose(class_weights(y, rows, 4, "balanced"), [6 / 12, 6 / 4, 6 / 8, 0.0])
    assert class_weights(y, rows, 4, "none") is None
    np.testing.assert_allclose(class_weights(np.array([0, 1, 2, 3]), np.arange(4), 4, "balanced"), 1.0)
    with pytest.raises(ValueError, match="class weight \\(--class-weight\\) must be one of none, balanced"):
        TrainConfig(class_weight="inverse")
    assert TrainConfig(class_weight="none") == TrainConfig()


@pytest.mark.parametrize("head", ["mean", "meanmax"])
def test_pooled_trainer_equals_frame_trainer_with_balanced_class_weights(head, tmp_path):
    inputs = load_inputs(write_toy_store(tmp_path / "imb.h5", seed=4, sep=1.0, rows=imbalanced_rows()))
    cfg = TrainConfig(epochs=6, lr=3e-3, dropout=0.0, class_weight="balanced")
    folds, _ = speaker_independent_folds(inputs)
    jobs = [Job(f.train[: 50 + 4 * f.index], seed=s, stream=f.index) for s in (0, 1) for f in folds]
    no_angry = inputs.labelled[inputs.y[inputs.labelled] != inputs.classes.index("angry")]
    jobs.append(Job(no_angry, seed=2, stream=9))            # a class absent from a job: weight 0
    weights = [class_weights(inputs.y, j.train, 4, "balanced") for j in jobs]
    assert all(len(set(w[w > 0].round(6))) > 1 for w in weights) and weights[-1][3] == 0  # really weighted
    batched = train_pooled(inputs, head, cfg, jobs)
    plain = train_pooled(inputs, head, TrainConfig(epochs=6, lr=3e-3, dropout=0.0), jobs[:1])[0]
    test = inputs.labelled
    for job, fast in zip(jobs, batched):
        slow = train_frame(inputs, head, cfg, job)          # frames, autograd, F.cross_entropy(weight=...)
        assert fast.steps == slow.steps
        ref = predict_proba(slow, inputs, test, precompute=False)
        np.testing.assert_allclose(predict_proba(fast, inputs, test), ref, atol=2e-4)
        np.testing.assert_allclose(fast.head.classifier.weight.detach().numpy(),
                                   slow.head.classifier.weight.detach().numpy(), atol=2e-4)
    # the weights change the model (else the equivalence above would prove nothing about them)
    assert np.abs(predict_proba(plain, inputs, test) - predict_proba(batched[0], inputs, test)).max() > 1e-2


def test_balanced_weights_raise_minority_recall_on_an_imbalanced_store(tmp_path):
    inputs = load_inputs(write_toy_store(tmp_path / "imb.h5", seed=5, sep=0.7, rows=imbalanced_rows()))
    sad = inputs.classes.index("sad")
    counts = np.bincount(inputs.y[inputs.labelled], minlength=4)
    assert counts[sad] * 3 < counts.min(where=np.arange(4) != sad, initial=10 ** 9)   # sad is the minority
    recall = {}
    for mode in ("none", "balanced"):
        r = cross_validate(inputs, "mean", TrainConfig(epochs=30, lr=1e-2, class_weight=mode), seeds=(0, 1))
        recall[mode] = r.confusion[sad, sad] / r.confusion[sad].sum()
    assert recall["balanced"] >= recall["none"] + 0.3, recall


def test_class_weight_flag_reaches_the_run_config(tmp_path, toy_store, capsys):
    out = tmp_path / "runs"
    assert cli(["cv", "--store", str(toy_store), "--head", "mean", "--epochs", "2", "--class-weight", "balanced",
                "--out", str(out)]) == 0
    [run] = list(out.iterdir())
    assert json.loads((run / "config.json").read_text())["train_config"]["class_weight"] == "balanced"
    capsys.readouterr()
    assert cli(["cv", "--store", str(toy_store), "--head", "mean", "--class-weight", "inverse",
                "--out", str(out)]) != 0
    assert "--class-weight" in capsys.readouterr().err

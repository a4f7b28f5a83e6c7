"""A repeated --store is used, not silently dropped: stores of one feature set from several corpora train
together, each utterance keeping its corpus; stores of other features are refused."""

from __future__ import annotations

import csv
import json

import pytest

from train.cli import run as cli
from train.data import combine_stores, load_store
from train.inputs import load_inputs
from tests.train.toy_stores import AUDIO_PROV, write_toy_store

FAST = ["--epochs", "2", "--workers", "1"]


@pytest.fixture
def two_corpora(tmp_path):
    a = write_toy_store(tmp_path / "a" / "toy.h5", provenance={**AUDIO_PROV, "manifest": "/m/emodb.jsonl",
                                                                "manifest_sha256": "1" * 64})
    b = write_toy_store(tmp_path / "b" / "toy.h5", provenance={**AUDIO_PROV, "manifest": "/m/ravdess.jsonl",
                                                                "manifest_sha256": "2" * 64}, seed=3)
    return a, b


def test_combined_store_keeps_each_corpus(two_corpora):
    a, b = two_corpora
    one, two = load_store(a), load_store(b)
    both = combine_stores([one, two])
    assert both.n == one.n + two.n and both.frames.shape[0] == one.frames.shape[0] + two.frames.shape[0]
    assert both.utt_ids[0] == f"emodb/{one.utt_ids[0]}" and both.utt_ids[-1] == f"ravdess/{two.utt_ids[-1]}"
    assert set(both.sessions) == {f"{c}/{s}" for c in ("emodb", "ravdess") for s in set(one.sessions)}
    i = one.n + 5
    assert (both.frames[both.offsets[i]:both.offsets[i + 1]] == two.frames[two.offsets[5]:two.offsets[6]]).all()
    assert both.provenance["corpora"] == ["emodb", "ravdess"]


def test_cv_uses_every_store_and_refuses_other_features(tmp_path, two_corpora, capsys):
    a, b = two_corpora
    out = tmp_path / "runs"
    assert cli(["cv", "--store", str(a), "--store", str(b), "--head", "mean", "--out", str(out), *FAST]) == 0
    [run] = list(out.iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["folds"]) == 10          # 5 sessions of each corpus, never mixed
    rows = list(csv.DictReader(open(run / "predictions.csv")))
    assert {r["utt_id"].split("/")[0] for r in rows} == {"emodb", "ravdess"}
    other = write_toy_store(tmp_path / "c" / "toy.h5", provenance={**AUDIO_PROV, "layer": 9})
    capsys.readouterr()
    assert cli(["cv", "--store", str(a), "--store", str(other), "--head", "mean", "--out", str(out), *FAST]) == 1
    err = capsys.readouterr().err
    assert "cannot be combined" in err and "layer" in err and "Traceback" not in err


def test_fit_on_two_corpora_predicts_on_both(tmp_path, two_corpora):
    a, b = two_corpora
    model = tmp_path / "m.pt"
    assert cli(["fit", "--store", str(a), "--store", str(b), "--head", "mean", "-o", str(model), *FAST[:2]]) == 0
    assert cli(["predict", "--model", str(model), "--store", str(a), "--store", str(b),
                "-o", str(tmp_path / "p.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert len(rows) == len(load_inputs([a, b]).y)

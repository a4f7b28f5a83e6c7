import csv
import json

import numpy as np
import pytest

from train.bundle import ProvenanceMismatch, bundle_inputs, fit_bundle, load_bundle, predict, save_bundle
from train.cli import run as cli
from train.config import TrainConfig
from train.data import load_store
from train.inputs import load_inputs
from train.suggest import read_id_list, suggest, uncertainty

from .toy_stores import AUDIO_PROV, write_toy_store

FAST = ["--epochs", "8", "--lr", "1e-2", "--mlp-hidden", "8", "--lstm-hidden", "8"]


@pytest.mark.parametrize("head", ["mean", "mlp", "bimodal"])
def test_fit_save_load_predict_roundtrip(head, tmp_path, toy_store, toy_text):
    text = toy_text if head == "bimodal" else None
    inputs = load_inputs(toy_store, text)
    b = fit_bundle(inputs, head, TrainConfig(epochs=8, lr=1e-2, mlp_hidden=8, lstm_hidden=8), k=10, seed=1)
    assert b.meta["n_train"] == 40 and b.meta["train_counts"] == {c: 10 for c in inputs.classes}
    path = save_bundle(b, tmp_path / "m.pt")
    again = load_bundle(path)
    assert again.head == head and again.classes == b.classes and again.config == b.config
    p1 = predict(b, bundle_inputs(b, load_store(toy_store), load_store(text) if text else None))
    p2 = predict(again, bundle_inputs(again, load_store(toy_store), load_store(text) if text else None))
    np.testing.assert_allclose(p1.proba, p2.proba, atol=1e-6)
    assert len(p1.utt_ids) == 124 and (p1.labels == "").sum() == 4
    labelled = p1.labels != ""
    assert (np.array(b.classes)[p1.pred[labelled]] == p1.labels[labelled]).mean() > 0.5


def test_predict_refuses_a_store_with_other_features_naming_the_keys(tmp_path, toy_store, toy_dir):
    b = fit_bundle(load_inputs(toy_store), "mean", TrainConfig(epochs=2))
    other = write_toy_store(tmp_path / "other.h5", provenance={**AUDIO_PROV, "layer": 7, "compute_dtype": "bfloat16"})
    with pytest.raises(ProvenanceMismatch, match=r"\(layer\): layer: trained on 3, store has 7"):
        bundle_inputs(b, load_store(other))
    with pytest.raises(ProvenanceMismatch, match="feature"):
        bundle_inputs(b, load_store(toy_dir / "lld.h5"))
    same = write_toy_store(tmp_path / "same.h5", provenance={**AUDIO_PROV, "compute_dtype": "bfloat16"}, seed=9)
    bundle_inputs(b, load_store(same))  # compute_dtype is not compared
    with pytest.raises(ProvenanceMismatch, match="trained on one store"):
        bundle_inputs(b, load_store(toy_store), load_store(toy_dir / "bert-toy.h5"))


def test_suggest_ranks_unlabelled_by_uncertainty(toy_store):
    inputs = load_inputs(toy_store)
    b = fit_bundle(inputs, "mean", TrainConfig(epochs=5, lr=1e-2))
    rows = suggest(b, inputs, n=3, strategy="entropy")
    assert [r["rank"] for r in rows] == [1, 2, 3] and all(r["utt_id"].startswith("U_") for r in rows)
    assert rows[0]["score"] >= rows[1]["score"] >= rows[2]["score"]
    every = suggest(b, inputs, n=200, strategy="margin", include_labelled=True, exclude={"U_00"})
    assert len(every) == 123 and "U_00" not in {r["utt_id"] for r in every}
    bal = suggest(b, inputs, n=8, strategy="entropy", balanced=True, include_labelled=True)
    preds = [r["pred"] for r in bal]
    assert len(set(preds[:4])) == min(4, len(set(r["pred"] for r in every)))  # round-robin over predicted classes
    p = np.array([[0.5, 0.5, 0, 0], [1, 0, 0, 0]])
    assert uncertainty(p, "entropy")[0] == pytest.approx(np.log(2)) and uncertainty(p, "margin").tolist() == [1, 0]


def test_read_id_list_formats(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"utt_id": "x", "label": "sad"}) + "\n")
    (tmp_path / "b.csv").write_text("utt_id,label\ny,sad\n")
    (tmp_path / "c.txt").write_text("z\n\n")
    assert [read_id_list(tmp_path / n) for n in ("a.jsonl", "b.csv", "c.txt")] == [{"x"}, {"y"}, {"z"}]


def test_fit_predict_suggest_commands(tmp_path, toy_store, toy_dir, capsys):
    model = tmp_path / "m.pt"
    assert cli(["fit", "--store", str(toy_store), "--head", "attention", "-o", str(model), *FAST]) == 0
    assert cli(["predict", "--model", str(model), "--store", str(toy_store), "-o", str(tmp_path / "p.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert len(rows) == 124 and list(rows[0])[:3] == ["utt_id", "label", "pred"]
    (tmp_path / "done.csv").write_text("utt_id\nU_01\n")
    assert cli(["suggest", "--model", str(model), "--store", str(toy_store), "--n", "2", "--strategy", "margin",
                "--exclude", str(tmp_path / "done.csv"), "-o", str(tmp_path / "s.csv")]) == 0
    sug = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert len(sug) == 2 and "U_01" not in {r["utt_id"] for r in sug} and list(sug[0])[:4] == ["rank", "utt_id", "score", "pred"]
    capsys.readouterr()
    assert cli(["predict", "--model", str(model), "--store", str(toy_dir / "lld.h5"), "-o", str(tmp_path / "x.csv")]) == 1
    assert "features differ" in capsys.readouterr().err

"""Cross-corpus evaluation: train on some corpora, test on another (cv --test-store), leave one corpus out
(loco), and predict's metrics file. Three tiny generated corpora of one feature set, with their own
utterance ids and speakers (see :mod:`tests.train.toy_stores`)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from train.cli import run as cli
from train.inputs import load_inputs
from train.protocol import cross_corpus
from train.config import schedule_config
from train.runs import RUN_FILES, missing_files
from tests.train.toy_stores import AUDIO_PROV, TEXT_PROV, toy_rows, write_toy_store

FAST = ["--epochs", "3", "--lr", "0.01", "--workers", "1"]
CORPORA = ("emodb", "ravdess", "crema")


def corpus_rows(corpus: str, labels: dict[str, str] | None = None):
    """toy_rows with the corpus's own utterance ids and speakers (``<corpus>_…``), labels mapped by ``labels``."""
    labels = labels or {}
    return [(f"{corpus}_{u}", labels.get(lab, lab), f"{corpus}_{spk}", sess, i)
            for (u, lab, spk, sess, i) in toy_rows()]


def corpus_store(tmp_path, corpus: str, seed: int, labels: dict[str, str] | None = None, **prov):
    return write_toy_store(tmp_path / corpus / "toy.h5", rows=corpus_rows(corpus, labels), seed=seed, sep=1.5,
                           provenance={**AUDIO_PROV, "manifest": f"/m/{corpus}.jsonl", **prov})


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpora")
    return [corpus_store(d, c, seed=i) for i, c in enumerate(CORPORA)]


def only_run(out):
    [run] = [p for p in out.iterdir() if p.is_dir()]
    return run


def test_train_on_two_test_on_third_writes_a_run_folder(tmp_path, three, capsys):
    a, b, c = three
    out = tmp_path / "runs"
    assert cli(["cv", "--store", str(a), "--store", str(b), "--test-store", str(c), "--head", "mean",
                "--seeds", "0,1", "--out", str(out), *FAST]) == 0
    printed = capsys.readouterr().out
    assert "trained on emodb + ravdess, tested on each of crema" in printed and "test corpus" in printed
    run = only_run(out)
    assert missing_files(run, RUN_FILES) == []
    cv_keys = {"head", "store", "k", "seeds", "classes", "folds", "summary", "pooled", "warnings", "confusion",
               "seconds", "fit_seconds", "eval_seconds", "notes"}
    m = json.loads((run / "metrics.json").read_text())
    assert cv_keys <= set(m) and m["protocol"] == "cross-corpus"
    assert m["train_corpora"] == ["emodb", "ravdess"] and m["test_corpora"] == ["crema"]
    n_test = len(toy_rows()) - 4                        # the 4 unlabelled rows are not scored
    assert [(f["seed"], f["fold"], f["n_test"], f["n_train"]) for f in m["folds"]] == \
        [(0, "crema", n_test, 2 * n_test), (1, "crema", n_test, 2 * n_test)]
    assert m["n_scored"] == n_test and m["not_scored"] == {"unlabelled": 4, "outside_classes": {}}
    assert set(m["pooled"]["per_seed"]["ua"]) == {"0", "1"} and m["pooled"]["n_predictions"] == n_test
    assert m["pooled"]["ua"] > 0.5                      # the toy classes separate across corpora too
    assert np.array(m["confusion"]).sum() == 2 * n_test
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train_files"] == [str(a), str(b)] and cfg["test_files"] == [str(c)]
    prov = json.loads((run / "provenance.json").read_text())
    assert [f["path"] for f in prov["files"]["test"]] == [str(c.resolve())] and prov["files"]["test"][0]["sha256"]
    assert len(prov["files"]["train"]) == 2 and len(prov["test_stores"]) == 1
    rows = list(csv.DictReader(open(run / "predictions.csv")))
    assert len(rows) == 2 * n_test and {r["fold"] for r in rows} == {"crema"}
    assert all(r["utt_id"].startswith("crema_") for r in rows)
    cm = list(csv.reader(open(run / "confusion.csv")))
    assert sum(int(v) for row in cm[1:] for v in row[1:]) == 2 * n_test


def test_several_test_stores_are_scored_each_and_pooled(tmp_path, three):
    a, b, c = three
    inputs = load_inputs([a])
    test = load_inputs([b, c], classes=inputs.classes)
    r = cross_corpus(inputs, test, "mean", schedule_config("paper", epochs=2), seeds=(0,))
    assert [f["fold"] for f in r.folds] == ["ravdess", "crema"]
    assert r.pooled["n_predictions"] == sum(f["n_test"] for f in r.folds)
    assert r.summary["std_over"] == "test corpora"
    assert set(r.predictions["fold"]) == {"ravdess", "crema"}


def test_test_store_of_other_features_is_refused(tmp_path, three, capsys):
    a, b, _ = three
    other = corpus_store(tmp_path, "crema", seed=5, layer=9)
    out = tmp_path / "runs"
    assert cli(["cv", "--store", str(a), "--store", str(b), "--test-store", str(other), "--head", "mean",
                "--out", str(out), *FAST]) == 1
    err = capsys.readouterr().err
    assert "cannot test on it" in err and "layer" in err and str(other) in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


def test_test_labels_outside_the_training_classes_are_reported_not_scored(tmp_path, three, capsys):
    a, b, _ = three
    odd = corpus_store(tmp_path, "crema", seed=6, labels={"sad": "fear"})
    out = tmp_path / "runs"
    assert cli(["cv", "--store", str(a), "--test-store", str(odd), "--head", "mean", "--out", str(out), *FAST]) == 0
    printed = capsys.readouterr().out
    assert "labelled fear are not among the training classes" in printed
    assert "no test utterance of sad" in printed
    m = json.loads((only_run(out) / "metrics.json").read_text())
    n_fear = sum(1 for r in toy_rows() if r[1] == "sad")
    assert m["not_scored"]["outside_classes"] == {"fear": n_fear}
    assert m["n_scored"] == len(toy_rows()) - 4 - n_fear and m["classes"] == ["neutral", "happy", "sad", "angry"]
    assert np.array(m["confusion"])[2].sum() == 0       # no sad row scored


def test_no_scorable_test_row_is_refused(tmp_path, three, capsys):
    a, _, _ = three
    odd = corpus_store(tmp_path, "crema", seed=6,
                       labels={"sad": "fear", "happy": "fear", "angry": "fear", "neutral": "fear"})
    assert cli(["cv", "--store", str(a), "--test-store", str(odd), "--head", "mean", "--out",
                str(tmp_path / "runs"), *FAST]) == 1
    err = capsys.readouterr().err
    assert "no test utterance carries one of the training classes" in err and "fear" in err


def test_shared_speakers_and_ids_are_warned_about(tmp_path, three, capsys):
    a, _, _ = three
    twin = corpus_store(tmp_path, "emodb", seed=9)     # same ids and speakers as a, other file
    assert cli(["cv", "--store", str(a), "--test-store", str(twin), "--head", "mean", "--out",
                str(tmp_path / "runs"), *FAST]) == 0
    printed = capsys.readouterr().out
    assert "scored utterance ids also occur in training corpus" in printed
    assert "not speaker-independent" in printed


def test_k_subsamples_the_training_corpora(tmp_path, three):
    a, b, c = three
    out = tmp_path / "runs"
    assert cli(["cv", "--store", str(a), "--store", str(b), "--test-store", str(c), "--head", "mean", "--k", "5",
                "--out", str(out), *FAST]) == 0
    m = json.loads((only_run(out) / "metrics.json").read_text())
    assert m["k"] == 5 and m["folds"][0]["n_train"] == 20
    assert set(m["folds"][0]["train_counts"].values()) == {5}


def test_bimodal_cross_corpus_needs_test_text(tmp_path):
    stores = {}
    for i, c in enumerate(("emodb", "crema")):
        stores[c] = (corpus_store(tmp_path, c, seed=i),
                     write_toy_store(tmp_path / c / "bert.h5", dims=6, seed=10 + i, sep=1.5, text=True,
                                     rows=corpus_rows(c), provenance=TEXT_PROV))
    (a, at), (c, ct) = stores["emodb"], stores["crema"]
    out = tmp_path / "runs"
    base = ["cv", "--store", str(a), "--text", str(at), "--test-store", str(c), "--head", "bimodal",
            "--out", str(out), "--epochs", "1", "--workers", "1"]
    assert cli(base) == 1                                 # --text without --test-text
    assert cli([*base, "--test-text", str(ct)]) == 0
    m = json.loads((only_run(out) / "metrics.json").read_text())
    assert m["n_scored"] == len(toy_rows()) - 4


def test_loco_with_three_corpora(tmp_path, three, capsys):
    out = tmp_path / "loco"
    args = ["loco", *[x for s in three for x in ("--store", str(s))], "--head", "mean", "--out", str(out),
            "--in-corpus", *FAST]
    assert cli(args) == 0
    printed = capsys.readouterr().out
    runs = sorted(p for p in (out / "runs").iterdir())
    assert len(runs) == 6                               # 3 held-out corpora + 3 in-corpus cv runs
    for run in runs:
        assert missing_files(run, RUN_FILES) == []
    cross = [json.loads((r / "metrics.json").read_text()) for r in runs]
    cross = [m for m in cross if m.get("protocol") == "cross-corpus"]
    assert sorted(m["test_corpora"][0] for m in cross) == sorted(CORPORA)
    for m in cross:
        assert m["test_corpora"][0] not in m["train_corpora"] and len(m["train_corpora"]) == 2
    table = (out / "loco.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| held-out corpus | train corpora | n_train | n_test | UA % |")
    assert [line.split(" | ")[0][2:] for line in lines[2:]] == [*CORPORA, "mean over held-out corpora"]
    assert "| emodb | ravdess + crema | 240 | 120 |" in table and table.strip().splitlines()[-1] in printed
    data = json.loads((out / "loco.json").read_text())
    assert [r["held_out"] for r in data["rows"]] == list(CORPORA)
    assert all(r["in_corpus_ua"] is not None and r["run_dir"] for r in data["rows"])
    assert data["rows"][0]["ua"] == pytest.approx(cross[[m["test_corpora"][0] for m in cross].index("emodb")]
                                                  ["pooled"]["ua"])


def test_loco_refuses_one_store(tmp_path, three, capsys):
    assert cli(["loco", "--store", str(three[0]), "--out", str(tmp_path / "loco"), *FAST]) != 0
    err = capsys.readouterr().err
    assert "at least two --store" in err and "Traceback" not in err
    assert not (tmp_path / "loco").exists()


def test_predict_writes_metrics_beside_the_predictions(tmp_path, three, capsys):
    a, _, c = three
    model = tmp_path / "m.pt"
    assert cli(["fit", "--store", str(a), "--head", "mean", "-o", str(model), "--epochs", "2"]) == 0
    odd = corpus_store(tmp_path, "crema", seed=6, labels={"sad": "fear"})
    out = tmp_path / "p" / "preds.csv"
    assert cli(["predict", "--model", str(model), "--store", str(odd), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    m = json.loads((tmp_path / "p" / "preds.metrics.json").read_text())
    n_fear = sum(1 for r in toy_rows() if r[1] == "sad")
    assert m["n_scored"] == len(toy_rows()) - 4 - n_fear
    assert m["not_scored"] == {"unlabelled": 4, "outside_classes": {"fear": n_fear}}
    assert m["classes"] == ["neutral", "happy", "sad", "angry"] and m["per_class"]["sad"]["n"] == 0
    assert m["per_class"]["sad"]["recall"] is None
    assert f"UA {100 * m['ua']:.1f}" in printed and "preds.metrics.json" in printed
    cm = np.array(m["confusion"])
    assert cm.sum() == m["n_scored"]
    rows = list(csv.reader(open(tmp_path / "p" / "preds.confusion.csv")))
    assert rows[0] == ["true\\pred", *m["classes"]] and np.array([r[1:] for r in rows[1:]], int).tolist() == cm.tolist()
    # recomputed from the predictions CSV
    preds = [r for r in csv.DictReader(open(out)) if r["label"] in m["classes"]]
    assert m["wa"] == pytest.approx(np.mean([r["label"] == r["pred"] for r in preds]))
    # --metrics elsewhere; refused when nothing can be scored
    assert cli(["predict", "--model", str(model), "--store", str(c), "-o", str(out),
                "--metrics", str(tmp_path / "m" / "scores.json")]) == 0
    assert (tmp_path / "m" / "scores.json").is_file() and (tmp_path / "m" / "scores.confusion.csv").is_file()
    none = corpus_store(tmp_path, "none", seed=7, labels={c_: "" for c_ in ("sad", "happy", "angry", "neutral")})
    capsys.readouterr()
    assert cli(["predict", "--model", str(model), "--store", str(none), "-o", str(tmp_path / "n.csv"),
                "--metrics", str(tmp_path / "n.json")]) == 1
    assert "nothing to score" in capsys.readouterr().err
    assert cli(["predict", "--model", str(model), "--store", str(none), "-o", str(tmp_path / "n.csv")]) == 0
    assert not (tmp_path / "n.metrics.json").exists()


def test_one_corpus_given_twice_is_refused_before_any_work(tmp_path, capsys):
    a = write_toy_store(tmp_path / "a.h5", provenance={**AUDIO_PROV, "manifest_sha256": "f" * 64})
    b = write_toy_store(tmp_path / "b.h5", seed=3, provenance={**AUDIO_PROV, "manifest_sha256": "f" * 64})
    out = tmp_path / "out"
    assert cli(["loco", "--store", str(a), "--store", str(a), "--out", str(out)]) != 0
    assert cli(["cv", "--store", str(a), "--test-store", str(b), "--head", "mean", "--out", str(out)]) != 0
    assert capsys.readouterr().err.count("hold the same corpus") == 2
    assert not out.exists()

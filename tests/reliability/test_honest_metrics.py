"""Every reported number is honest: pooled scores beside fold means, folds missing a class are flagged,
repeated seeds count once, and the pooled figures reach metrics.json, the summary, curve.csv and the tables.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from tests.train.toy_stores import relabel, write_toy_store, write_toy_folder
from train.cli import run as cli
from train.config import TrainConfig
from train.inputs import load_inputs
from train.metrics import confusion_matrix, scores_from_confusion
from train.protocol import cross_validate, dedupe_seeds, learning_curve, pooled_scores
from train.reports import format_cv_summary, plot_curve, read_curve_csv, write_curve_csv
from train.runs import write_run

torch.set_num_threads(1)

FAST = ["--epochs", "2", "--lr", "1e-2", "--mlp-hidden", "8", "--lstm-hidden", "8"]
CFG = TrainConfig(epochs=3, lr=1e-2, mlp_hidden=8)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    d = write_toy_folder(tmp_path_factory.mktemp("honest_stores"))
    # session Ses03 has no 'angry' utterance (relabelled 'sad'): its fold UA averages over 3 classes
    gap = d / "gap" / "gap.h5"
    gap.parent.mkdir()
    write_toy_store(gap, seed=4, sep=0.8, rows=relabel({"angry": "sad"}, where=lambda r: r[3] == "Ses03"))
    return d


def test_pooled_scores_are_the_summed_confusion_and_differ_from_the_fold_mean():
    folds = [np.array([[2, 0], [0, 0]]),          # class 1 absent: fold UA = recall of class 0 = 1.0
             np.array([[0, 1], [1, 3]])]          # recalls 0 and 3/4: fold UA 0.375
    fold_mean = np.mean([scores_from_confusion(cm)["ua"] for cm in folds])
    pooled = pooled_scores({0: folds[0] + folds[1]})
    assert fold_mean == pytest.approx(0.6875)
    assert pooled["ua"] == pytest.approx((2 / 3 + 3 / 4) / 2) and pooled["ua_std"] == 0
    assert pooled["wa"] == pytest.approx(5 / 7) and pooled["n_predictions"] == 7 and pooled["std_over"] is None
    two = pooled_scores({0: np.array([[3, 1], [0, 2]]), 1: np.array([[4, 0], [1, 1]])})
    assert two["ua"] == pytest.approx(np.mean([(3 / 4 + 1) / 2, (1 + 1 / 2) / 2]))
    assert two["ua_std"] == pytest.approx(np.std([(3 / 4 + 1) / 2, (1 + 1 / 2) / 2])) and two["std_over"] == "seeds"
    assert set(two["per_seed"]["ua"]) == {"0", "1"}


def test_confusion_matrix_refuses_indices_outside_the_classes():
    with pytest.raises(ValueError, match=r"y_true holds class indices outside \[0, 3\): \[-1, 0\]"):
        confusion_matrix([0, -1], [0, 0], 3)
    with pytest.raises(ValueError, match="y_pred holds class indices outside"):
        confusion_matrix([0, 1], [0, 3], 3)


def test_cv_reports_pooled_scores_in_the_result_metrics_json_and_the_summary(stores, tmp_path):
    inputs = load_inputs(stores / "wav2vec-toy.h5")
    r = cross_validate(inputs, "meanmax", CFG, k=6, seeds=(0, 1))
    p = r.pooled
    # every seed tests the same utterances: the mean pooled UA/WA equal those of the matrix summed over seeds
    total = scores_from_confusion(r.confusion)
    assert p["ua"] == pytest.approx(total["ua"]) and p["wa"] == pytest.approx(total["wa"])
    for s in (0, 1):
        rows = r.predictions["seed"] == s
        cm = confusion_matrix(r.predictions["y"][rows], r.predictions["pred"][rows], 4)
        assert p["per_seed"]["ua"][str(s)] == pytest.approx(scores_from_confusion(cm)["ua"])
    assert p["n_predictions"] == 120 and p["std_over"] == "seeds"
    run_dir = write_run(r, inputs, tmp_path)
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["pooled"]["ua"] == pytest.approx(p["ua"]) and m["pooled"]["f1_std"] == pytest.approx(p["f1_std"])
    assert m["warnings"] == [] and "per seed" in m["pooled"]["method"]
    text = format_cv_summary(r)
    line = next(x for x in text.splitlines() if x.startswith("pooled"))
    assert f"UA {100 * p['ua']:.1f} ± {100 * p['ua_std']:.1f}" in line
    assert "all 120 held-out predictions together; per seed, mean ± std over seeds" in line


def test_a_fold_without_some_class_is_warned_about_and_the_pooled_ua_counts_it(stores, tmp_path, capsys):
    gap = stores / "gap" / "gap.h5"
    assert cli(["cv", "--store", str(gap), "--head", "mean", "--out", str(tmp_path), *FAST]) == 0
    out = capsys.readouterr().out
    warning = ("fold Ses03: no test utterance of angry: this fold's UA and F1 average over the other 3 classes "
               "(the pooled scores count every class)")
    assert f"warning: {warning}" in out
    (run_dir,) = tmp_path.iterdir()
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["warnings"] == [warning]
    fold_ua = {f["fold"]: f["ua"] for f in m["folds"]}
    assert m["summary"]["ua_mean"] == pytest.approx(np.mean(list(fold_ua.values())))
    assert m["pooled"]["ua"] == pytest.approx(scores_from_confusion(np.array(m["confusion"]))["ua"])
    assert m["pooled"]["ua"] != pytest.approx(m["summary"]["ua_mean"])   # the two summaries really differ here


def test_repeated_seeds_count_once_and_say_so(stores, tmp_path, capsys):
    assert dedupe_seeds([3, 1, 3, 3, 2, 1]) == ((3, 1, 2), "seeds 3,1,3,3,2,1 repeat a seed: each distinct seed "
                                                           "runs once (3,1,2: 3 seeds)")
    assert dedupe_seeds([0, 1]) == ((0, 1), None)
    inputs = load_inputs(stores / "wav2vec-toy.h5")
    once = cross_validate(inputs, "mean", CFG, k=6, seeds=(0,))
    thrice = cross_validate(inputs, "mean", CFG, k=6, seeds=(0, 0, 0))
    assert thrice.seeds == (0,) and len(thrice.folds) == 5 and thrice.summary == once.summary
    assert "seeds 0,0,0 repeat a seed: each distinct seed runs once (0: 1 seed)" in thrice.notes
    assert thrice.summary["std_over"] == "folds"  # one seed: the std is over folds, not a fake 0 over seeds
    assert cli(["cv", "--store", str(stores / "wav2vec-toy.h5"), "--head", "mean", "--seeds", "0,0,0",
                "--out", str(tmp_path), *FAST]) == 0
    cap = capsys.readouterr()
    assert "note: seeds 0,0,0 repeat a seed: each distinct seed runs once (0: 1 seed)" in cap.err
    assert "seeds 0;" in cap.out and "(std over folds)" in cap.out
    (run_dir,) = tmp_path.iterdir()
    assert json.loads((run_dir / "metrics.json").read_text())["seeds"] == [0]
    assert json.loads((run_dir / "config.json").read_text())["seeds"] == [0]


def test_curve_csv_and_plot_carry_the_pooled_ua(stores, tmp_path, capsys):
    inputs = load_inputs(stores / "wav2vec-toy.h5")
    c = learning_curve(inputs, "mean", CFG, ks=[4, None], seeds=(0, 1))
    rows = c.rows()
    for row, (r, s) in zip(rows, [(c.results[0], 0), (c.results[0], 1), (c.results[1], 0), (c.results[1], 1)]):
        assert row["ua_pooled"] == pytest.approx(r.pooled["per_seed"]["ua"][str(s)])
    path = write_curve_csv([{**r, "schedule": "paper"} for r in rows], tmp_path / "curve.csv")
    back = read_curve_csv(path)
    assert {"ua_pooled", "wa_pooled", "f1_pooled"} <= set(back[0]) and back[0]["ua_pooled"] == pytest.approx(rows[0]["ua_pooled"], abs=1e-6)
    assert plot_curve(back, tmp_path / "curve.png").stat().st_size > 0
    # a curve.csv written before the pooled columns still reads and plots
    old = tmp_path / "old.csv"
    with open(old, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["store", "head", "k", "seed", "n_train", "ua", "wa", "f1", "run_dir"])
        w.writerow(["s", "mean", 4, 0, 16, 0.5, 0.5, 0.5, ""])
        w.writerow(["s", "mean", "all", 0, 96, 0.7, 0.7, 0.7, ""])
    assert plot_curve(read_curve_csv(old), tmp_path / "old.png").stat().st_size > 0
    # the CLI prints the pooled UA beside the fold mean
    assert cli(["curve", "--store", str(stores / "wav2vec-toy.h5"), "--head", "mean", "--ks", "4,all", "--seeds", "0",
                "--out", str(tmp_path / "cli"), *FAST]) == 0
    out = capsys.readouterr().out
    assert "UA % (fold mean)" in out and "pooled UA %" in out
    csv_rows = list(csv.DictReader(open(tmp_path / "cli" / "curve.csv")))
    assert all(r["ua_pooled"] not in ("", None) for r in csv_rows) and len(csv_rows) == 2


def test_tables_show_pooled_figures_beside_mean_and_std(stores, tmp_path):
    out = tmp_path / "results"
    d = tmp_path / "stores"
    d.mkdir()
    for name in ("wav2vec-toy.h5", "lld.h5", "bert-toy.h5"):
        (d / name).write_bytes((stores / name).read_bytes())
    assert cli(["tables", "--stores", str(d), "--out", str(out), "--seeds", "0", "--k", "6", "--ks", "all", "--workers", "1", *FAST]) == 0
    res = json.loads((out / "results.json").read_text())
    t1 = (out / "table1.md").read_text()
    for row in res["table1"]["paper"]:
        for e in (row["pretrained"], row["lld"]):
            run = json.loads((out / e["run_dir"] / "metrics.json").read_text())
            assert e["ua_pooled"] == pytest.approx(run["pooled"]["ua"])
            assert f"{100 * e['ua']:.1f} ± {100 * e['ua_std']:.1f} (pooled {100 * e['ua_pooled']:.1f})" in t1
    t2 = (out / "table2.md").read_text()
    assert "| model | UA % | WA % | macro F1 % | pooled UA % | pooled WA % | pooled F1 % | run |" in t2
    for e in res["table2"]["paper"]:
        cells = f"| {100 * e['ua_pooled']:.1f} | {100 * e['wa_pooled']:.1f} | {100 * e['f1_pooled']:.1f} |"
        assert cells in t2
    assert "pooled" in (out / "summary.md").read_text() and res["warnings"] == [] and res["skipped_stores"] == []


def test_the_pooled_addition_leaves_the_fold_scores_alone(stores):
    inputs = load_inputs(stores / "wav2vec-toy.h5")
    r = cross_validate(inputs, "mean", CFG, k=6, seeds=(0,))
    for f in r.folds:
        rows = r.predictions["fold"] == f["fold"]
        cm = confusion_matrix(r.predictions["y"][rows], r.predictions["pred"][rows], 4)
        assert f["ua"] == scores_from_confusion(cm)["ua"]
    assert r.summary["ua_mean"] == pytest.approx(np.mean([f["ua"] for f in r.folds]))
    assert r.pooled["ua"] == pytest.approx(scores_from_confusion(r.confusion)["ua"])

"""Calibration: temperature scaling, ECE, cross-fitted run-folder numbers, calibrated bundles, abstention."""

import csv
import json

import numpy as np
import pytest
import torch

from train.bundle import bundle_inputs, load_bundle, predict, save_bundle
from train.calibration import (apply_temperature, calibration_bins, cross_fitted, expected_calibration_error,
                               fit_temperature, nll)
from train.cli import run as cli
from train.data import load_store

from .toy_stores import toy_rows, write_toy_store

FAST = ["--epochs", "8", "--lr", "1e-2"]


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("t_true", [2.5, 0.5])
def test_temperature_recovers_a_known_temperature(t_true):
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, (20000, 4))
    y = np.array([rng.choice(4, p=p) for p in _softmax(z)])         # labels drawn from softmax(z)
    proba = _softmax(z * t_true).astype(np.float32)                   # a model over/under-confident by t_true
    t = fit_temperature(proba, y)
    assert t == pytest.approx(t_true, rel=0.05)
    assert nll(proba, y, t) < nll(proba, y, 1.0)
    calibrated = apply_temperature(proba, t)
    np.testing.assert_array_equal(calibrated.argmax(1), proba.argmax(1))        # argmax untouched
    np.testing.assert_allclose(calibrated, _softmax(z * t_true / t), atol=1e-5)  # = scaling the logits
    assert expected_calibration_error(calibrated, y) < 0.02 < expected_calibration_error(proba, y)
    np.testing.assert_array_equal(apply_temperature(proba, 1.0), proba.astype(np.float64))


def test_ece_on_hand_made_cases():
    # 4 predictions at confidence 0.9 (3 right) and 2 at 0.55 (both right): |0.75 - 0.9| and |1 - 0.55|
    proba = np.array([[0.9, 0.1]] * 4 + [[0.55, 0.45]] * 2)
    y = np.array([0, 0, 0, 1, 0, 0])
    assert expected_calibration_error(proba, y) == pytest.approx(4 / 6 * 0.15 + 2 / 6 * 0.45)
    bins = calibration_bins(proba, y)
    assert len(bins) == 15 and sum(b["count"] for b in bins) == 6
    full = [b for b in bins if b["count"]]
    assert [(b["count"], b["accuracy"], b["confidence"]) for b in full] == [(2, 1.0, 0.55), (4, 0.75, 0.9)]
    assert full[0]["lo"] < 0.55 <= full[0]["hi"] and full[1]["lo"] < 0.9 <= full[1]["hi"]
    assert all(b["accuracy"] is None and b["confidence"] is None for b in bins if not b["count"])
    # calibrated: in each bin the accuracy equals the confidence
    perfect = np.array([[0.8, 0.2]] * 5 + [[1.0, 0.0]] * 3)
    assert expected_calibration_error(perfect, np.array([0, 0, 0, 0, 1, 0, 0, 0])) == pytest.approx(0.0)
    # confidence exactly 1 falls in the last bin (lo, hi]
    assert calibration_bins(np.array([[1.0, 0.0]]), np.array([0]))[-1]["count"] == 1
    with pytest.raises(ValueError, match="class indices"):
        expected_calibration_error(proba, np.array([0, 0, 0, 1, 0, -1]))


def test_cross_fitting_never_uses_a_folds_own_labels():
    rng = np.random.default_rng(1)
    proba = _softmax(rng.normal(0, 3, (300, 3)))
    y = rng.integers(0, 3, 300)
    groups = np.repeat(["a", "b", "c"], 100)
    _, temps = cross_fitted(proba, y, groups)
    y2 = y.copy()
    y2[:100] = proba[:100].argmax(1)                       # fold a's labels changed only
    cal2, temps2 = cross_fitted(proba, y2, groups)
    assert temps2["a"] == temps["a"] and temps2["b"] != temps["b"] and temps2["c"] != temps["c"]
    np.testing.assert_allclose(cal2[:100], apply_temperature(proba[:100], temps["a"]))
    with pytest.raises(ValueError, match="at least two folds"):
        cross_fitted(proba, y, np.repeat("a", 300))


def test_cv_run_folder_has_raw_and_cross_fitted_ece_and_a_reliability_plot(tmp_path, toy_store):
    out = tmp_path / "runs"
    assert cli(["cv", "--store", str(toy_store), "--head", "mean", "--seeds", "0,1", "--out", str(out), *FAST]) == 0
    [run] = list(out.iterdir())
    cal = json.loads((run / "metrics.json").read_text())["calibration"]
    assert (run / "reliability.png").stat().st_size > 10_000
    assert cal["n_predictions"] == 240 and cal["n_folds"] == 5 and len(cal["bins"]) == 15
    assert sum(b["count"] for b in cal["bins"]) == sum(b["count"] for b in cal["bins_calibrated"]) == 240
    assert sorted(cal["temperature_per_fold"]) == [f"Ses0{i}" for i in range(1, 6)]
    assert 0 < cal["ece"] < 1 and 0 < cal["ece_calibrated"] < 1 and cal["temperature"] > 0
    # the recorded raw ECE is that of the held-out predictions in predictions.csv
    rows = list(csv.DictReader(open(run / "predictions.csv")))
    classes = json.loads((run / "config.json").read_text())["classes"]
    proba = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
    y = np.array([classes.index(r["label"]) for r in rows])
    assert cal["ece"] == pytest.approx(expected_calibration_error(proba, y), abs=1e-4)
    # cross-fitted: fold Ses01's temperature comes from the other folds' predictions only
    other = np.array([r["fold"] != "Ses01" for r in rows])
    assert cal["temperature_per_fold"]["Ses01"] == pytest.approx(fit_temperature(proba[other], y[other]), rel=1e-3)


def _csv(path):
    return list(csv.DictReader(open(path)))


def test_fit_calibrates_by_default_and_predict_and_suggest_use_the_temperature(tmp_path, toy_store, capsys):
    model, raw_model = tmp_path / "m.pt", tmp_path / "raw.pt"
    assert cli(["fit", "--store", str(toy_store), "--head", "mean", "-o", str(model), *FAST]) == 0
    out = capsys.readouterr().out
    assert "probabilities calibrated: temperature T = " in out and "5-fold speaker-independent CV" in out
    b = load_bundle(model)
    cal = b.calibration
    assert b.temperature == cal["temperature"] and b.temperature != 1.0
    assert cal["n_folds"] == 5 and cal["n_predictions"] == 120 and 0 <= cal["ece_after"] < 1
    assert cli(["fit", "--store", str(toy_store), "--head", "mean", "-o", str(raw_model), "--no-calibrate",
                *FAST]) == 0
    raw = load_bundle(raw_model)
    assert raw.temperature == 1.0 and raw.calibration is None
    np.testing.assert_array_equal(raw.state_dict["classifier.weight"], b.state_dict["classifier.weight"])

    for m, name in ((model, "p.csv"), (raw_model, "raw.csv")):
        assert cli(["predict", "--model", str(m), "--store", str(toy_store), "-o", str(tmp_path / name)]) == 0
    out = capsys.readouterr().out
    assert "probabilities calibrated" in out and "probabilities uncalibrated (T = 1)" in out
    p, r = _csv(tmp_path / "p.csv"), _csv(tmp_path / "raw.csv")
    cols = [f"p_{c}" for c in b.classes]
    pc = np.array([[float(x[c]) for c in cols] for x in p])
    pr = np.array([[float(x[c]) for c in cols] for x in r])
    assert [x["pred"] for x in p] == [x["pred"] for x in r]                     # argmax unchanged
    assert np.abs(pc - pr).max() > 0.01                                        # probabilities changed
    np.testing.assert_allclose(pc, apply_temperature(pr, b.temperature), atol=2e-5)
    from train.suggest import suggest

    inputs = bundle_inputs(b, load_store(toy_store))
    sug = suggest(b, inputs, n=3, include_labelled=True)
    got = predict(b, inputs)
    row = {u: i for i, u in enumerate(got.utt_ids)}[sug[0]["utt_id"]]
    assert [sug[0][c] for c in cols] == pytest.approx(got.proba[row].tolist())    # suggest ranks calibrated too


def test_abstain_below_marks_the_rows_below_the_threshold(tmp_path, toy_store, capsys):
    model = tmp_path / "m.pt"
    assert cli(["fit", "--store", str(toy_store), "--head", "mean", "-o", str(model), *FAST]) == 0
    capsys.readouterr()
    assert cli(["predict", "--model", str(model), "--store", str(toy_store), "-o", str(tmp_path / "p.csv"),
                "--abstain-below", "0.6"]) == 0
    out = capsys.readouterr().out
    rows = _csv(tmp_path / "p.csv")
    assert list(rows[0])[:4] == ["utt_id", "label", "pred", "abstain"]
    top = np.array([max(float(v) for k, v in x.items() if k.startswith("p_")) for x in rows])
    flag = np.array([x["abstain"] == "true" for x in rows])
    assert set(x["abstain"] for x in rows) == {"true", "false"}
    np.testing.assert_array_equal(flag, top < 0.6)
    kept = [x for x in rows if x["abstain"] == "false" and x["label"]]
    acc = np.mean([x["pred"] == x["label"] for x in kept])
    assert (f"abstain: {flag.sum()} of 124 rows" in out and f"coverage {100 * (1 - flag.mean()):.1f} %" in out
            and f"kept labelled rows: accuracy (WA) {100 * acc:.1f} %" in out)
    # without the flag the CSV keeps its columns
    assert cli(["predict", "--model", str(model), "--store", str(toy_store), "-o", str(tmp_path / "q.csv")]) == 0
    assert "abstain" not in _csv(tmp_path / "q.csv")[0]


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.1", "nan"])
def test_invalid_abstention_threshold_is_refused(value, tmp_path, toy_store, capsys):
    assert cli(["predict", "--model", str(tmp_path / "none.pt"), "--store", str(toy_store),
                "-o", str(tmp_path / "p.csv"), "--abstain-below", value]) != 0
    err = capsys.readouterr().err
    assert "--abstain-below" in err and "must be a probability in (0, 1)" in err
    assert not (tmp_path / "p.csv").exists()


def test_a_bundle_saved_without_a_temperature_loads_uncalibrated(tmp_path, toy_store, capsys):
    model = tmp_path / "m.pt"
    assert cli(["fit", "--store", str(toy_store), "--head", "mean", "-o", str(model), *FAST]) == 0
    d = torch.load(model, map_location="cpu", weights_only=True)
    del d["temperature"], d["calibration"]                # as saved before calibration existed
    old = tmp_path / "old.pt"
    torch.save(d, old)
    b = load_bundle(old)
    assert b.temperature == 1.0 and b.calibration is None
    save_bundle(b, tmp_path / "again.pt")
    assert load_bundle(tmp_path / "again.pt").temperature == 1.0
    capsys.readouterr()
    assert cli(["predict", "--model", str(old), "--store", str(toy_store), "-o", str(tmp_path / "p.csv"),
                "--abstain-below", "0.5"]) == 0
    assert "probabilities uncalibrated (T = 1): the model has no temperature" in capsys.readouterr().out
    d["temperature"] = -1.0
    torch.save(d, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="damaged ser-train model bundle.*temperature -1.0"):
        load_bundle(tmp_path / "bad.pt")


def test_fit_on_one_session_skips_calibration_with_a_warning_unless_asked(tmp_path, capsys):
    rows = [(u, lab, spk, "Ses01", i) for (u, lab, spk, _, i) in toy_rows()]
    one = write_toy_store(tmp_path / "one.h5", rows=rows)
    assert cli(["fit", "--store", str(one), "--head", "mean", "-o", str(tmp_path / "m.pt"), *FAST]) == 0
    assert "warning: not calibrated" in capsys.readouterr().err
    assert load_bundle(tmp_path / "m.pt").calibration is None
    assert cli(["fit", "--store", str(one), "--head", "mean", "-o", str(tmp_path / "n.pt"), "--calibrate",
                *FAST]) == 1
    assert "cannot calibrate" in capsys.readouterr().err and not (tmp_path / "n.pt").exists()

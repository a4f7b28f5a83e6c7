"""Prediction and suggestion CSVs cannot inject spreadsheet formulas: text cells beginning with ``=``, ``+``,
``-``, ``@``, tab or CR get a leading ``'`` (OWASP CSV-injection advice); numbers stay numbers."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from ser_common.spreadsheet import FORMULA_TRIGGERS, restore_cell, safe_cell
from train.bundle import Predictions
from train.suggest import write_suggestions

EVIL_IDS = ["=1+2.flac", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)", "\t=tab", "\r=cr", "'=quoted", "ok_01"]
SAFE_IDS = ["'=1+2.flac", "'+cmd|' /C calc'!A0", "'-2+3", "'@SUM(A1:A9)", "'\t=tab", "'\r=cr", "''=quoted", "ok_01"]


@pytest.mark.parametrize("raw,safe", list(zip(EVIL_IDS, SAFE_IDS)))
def test_safe_cell_prefixes_formula_triggers_and_restore_undoes_it(raw, safe):
    assert safe_cell(raw) == safe
    assert restore_cell(safe_cell(raw)) == raw


@pytest.mark.parametrize("number", [0, 3, -1, -0.25, 1e-9, np.float32(-0.5), np.int64(-7), np.float64(0.125)])
def test_numbers_are_left_as_numbers(number):
    assert safe_cell(number) is number


def test_other_values():
    assert safe_cell(None) == "" and safe_cell("") == "" and safe_cell(b"=x") == "'=x"
    assert safe_cell(np.str_("-neutral")) == "'-neutral" and type(safe_cell(np.str_("a"))) is str
    assert restore_cell("'plain") == "'plain" and restore_cell("'") == "'"
    assert set(FORMULA_TRIGGERS) == {"=", "+", "-", "@", "\t", "\r"}


def _read(path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_prediction_csv_neutralises_ids_labels_and_class_names(tmp_path):
    classes = ("neutral", "=happy", "-sad")
    n = len(EVIL_IDS)
    labels = np.array(["neutral", "=happy", "@angry", "", "-sad", "+x", "neutral", "neutral"])
    proba = np.full((n, 3), 1 / 3)
    pred = np.arange(n) % 3
    path = Predictions(classes, np.array(EVIL_IDS), labels, pred, proba).write_csv(tmp_path / "p.csv")
    rows = _read(path)
    assert rows[0] == ["utt_id", "label", "pred", "p_neutral", "p_=happy", "p_-sad"]
    assert [r[0] for r in rows[1:]] == SAFE_IDS
    assert [r[1] for r in rows[1:]] == ["neutral", "'=happy", "'@angry", "", "'-sad", "'+x", "neutral", "neutral"]
    assert [r[2] for r in rows[1:]] == [safe_cell(classes[p]) for p in pred]
    assert rows[2][2] == "'=happy" and rows[3][2] == "'-sad"
    for r in rows[1:]:
        assert r[3:] == ["0.333333"] * 3  # probabilities: plain numbers, no quote
    # no text cell of the file starts a formula
    assert not any(cell.startswith(FORMULA_TRIGGERS) for r in rows for cell in r[:3])


def test_suggestion_csv_neutralises_text_keeps_numbers(tmp_path):
    classes = ["=a", "b"]
    rows = [{"rank": i + 1, "utt_id": u, "score": -0.5 if i == 0 else 0.25, "pred": classes[i % 2],
             "p_=a": 0.75, "p_b": 0.25} for i, u in enumerate(EVIL_IDS)]
    path = write_suggestions(rows, classes, tmp_path / "s.csv")
    out = _read(path)
    assert out[0] == ["rank", "utt_id", "score", "pred", "p_=a", "p_b"]
    assert [r[1] for r in out[1:]] == SAFE_IDS
    assert [r[0] for r in out[1:]] == [str(i + 1) for i in range(len(EVIL_IDS))]  # rank: a number
    assert out[1][2] == "-0.500000" and out[2][2] == "0.250000"  # a negative score stays a number
    assert [r[3] for r in out[1:]] == ["'=a" if i % 2 == 0 else "b" for i in range(len(EVIL_IDS))]
    assert all(r[4:] == ["0.750000", "0.250000"] for r in out[1:])
    assert [restore_cell(r[1]) for r in out[1:]] == EVIL_IDS


def test_a_suggestions_csv_fed_back_as_exclude_matches_escaped_ids(tmp_path):
    from train.suggest import read_id_list, write_suggestions

    rows = [{"rank": 1, "utt_id": "=1+2", "score": 0.5, "pred": "sad", "p_sad": 1.0},
            {"rank": 2, "utt_id": "'quoted", "score": 0.4, "pred": "sad", "p_sad": 1.0},
            {"rank": 3, "utt_id": "plain", "score": 0.3, "pred": "sad", "p_sad": 1.0}]
    path = write_suggestions(rows, ["sad"], tmp_path / "s.csv")
    assert "'=1+2" in path.read_text()
    assert read_id_list(path) == {"=1+2", "'quoted", "plain"}

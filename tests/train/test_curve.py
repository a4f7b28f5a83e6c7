"""``ser-train curve`` with several --store: one line per feature set (stores of one feature set from several
corpora joined), forecasts and backtests from its curve.csv, pooled UA recovered for old curve files."""

from __future__ import annotations

import csv

import click
import pytest

from train.cli import _curve_lines
from train.cli import run as cli
from train.reports import fill_pooled_from_runs, read_curve_csv

from .toy_stores import AUDIO_PROV, LLD_PROV, TEXT_PROV, write_toy_store

FAST = ["--epochs", "2", "--lr", "1e-2", "--workers", "1"]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Two corpora (emodb, ravdess) with one feature set each of 'toy' and 'lld', and text stores."""
    d = tmp_path_factory.mktemp("corpora")
    out = {}
    for i, corpus in enumerate(("emodb", "ravdess")):
        m = {"manifest": f"/m/{corpus}.jsonl", "manifest_sha256": str(i + 1) * 64}
        out[corpus] = write_toy_store(d / corpus / "toy.h5", provenance={**AUDIO_PROV, **m}, seed=i)
        out[f"{corpus}-lld"] = write_toy_store(d / corpus / "lld.h5", provenance={**LLD_PROV, **m}, seed=5 + i)
        out[f"{corpus}-text"] = write_toy_store(d / corpus / "bert.h5", dims=6, text=True,
                                                provenance={**TEXT_PROV, **m}, seed=7 + i)
    return out


def test_stores_are_grouped_by_feature_identity(corpora):
    c = {k: str(v) for k, v in corpora.items()}
    (both,) = _curve_lines((c["emodb"], c["ravdess"]), ())
    assert both.name == "toy+emodb+ravdess" and both.audio.provenance["corpora"] == ["emodb", "ravdess"]
    assert {s.split("/")[0] for s in both.audio.sessions} == {"emodb", "ravdess"}
    lines = _curve_lines((c["emodb"], c["emodb-lld"]), ())
    assert [x.name for x in lines] == ["toy", "lld"]
    lines = _curve_lines((c["emodb"], c["emodb-lld"], c["ravdess"], c["ravdess-lld"]), ())
    assert [x.name for x in lines] == ["toy+emodb+ravdess", "lld+emodb+ravdess"]
    with_text = _curve_lines((c["emodb"], c["ravdess"]), (c["emodb-text"], c["ravdess-text"]))
    assert with_text[0].text is not None and with_text[0].text.n == both.audio.n
    assert _curve_lines((c["emodb"], c["emodb-lld"]), (c["emodb-text"],))[1].text.name == "bert"
    with pytest.raises(click.UsageError, match="one --text per --store"):
        _curve_lines((c["emodb"], c["ravdess"]), (c["emodb-text"],))
    with pytest.raises(click.UsageError, match="given twice"):
        _curve_lines((c["emodb"], c["emodb"]), ())


def test_curve_joins_corpora_and_forecasts_with_the_limit(tmp_path, corpora, capsys):
    out = tmp_path / "curve"
    assert cli(["curve", "--store", str(corpora["emodb"]), "--store", str(corpora["ravdess"]), "--head", "mean",
                "--ks", "2,4,all", "--seeds", "0",
                "--out", str(out), "--target-ua", "0.3", "--target-ua", "0.99", *FAST]) == 0
    text = capsys.readouterr().out
    rows = list(csv.DictReader(open(out / "curve.csv")))
    assert {r["store"] for r in rows} == {"toy+emodb+ravdess"}     # one line (lld apart: see above)
    assert "joins one feature set from 2 corpora" in text
    assert "forecasts fitted on pooled UA" in text and "pooled UA 99.0%" in text
    assert "no forecast: the log-linear fit would extrapolate" in text and "--ks 2,4,all" in text
    # the forecast command reads the same curve; --backtest checks it on its own largest size
    assert cli(["forecast", "--curve", str(out / "curve.csv"), "--target-ua", "0.99", "--backtest"]) == 0
    text = capsys.readouterr().out
    assert "pooled UA 99.0%: no forecast" in text and "limit 3x" in text
    assert "fit on sizes" in text and "toy+emodb+ravdess" in text and "size ratio" in text
    assert cli(["forecast", "--curve", str(out / "curve.csv"), "--backtest", "--metric", "ua"]) == 0
    assert "fold mean" in capsys.readouterr().out
    assert cli(["forecast", "--curve", str(out / "curve.csv")]) != 0
    assert "--target-ua, or --backtest" in capsys.readouterr().err
    assert cli(["forecast", "--curve", str(out / "curve.csv"), "--backtest", "--schedule", "nope"]) != 0
    assert "no rows of schedule 'nope'" in capsys.readouterr().err

    # an old curve.csv (no pooled columns) gets its pooled UA back from the run folders' predictions
    new = read_curve_csv(out / "curve.csv")
    keep = ["store", "head", "schedule", "k", "seed", "n_train", "ua", "wa", "f1", "run_dir"]
    with open(tmp_path / "old.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keep, extrasaction="ignore")
        w.writeheader()
        w.writerows(new)
    old = read_curve_csv(tmp_path / "old.csv")
    assert "ua_pooled" not in old[0]
    assert fill_pooled_from_runs(old, out) == len(old)
    for a, b in zip(old, new):
        for m in ("ua_pooled", "wa_pooled", "f1_pooled"):
            assert a[m] == pytest.approx(b[m], abs=1e-6)
    assert cli(["forecast", "--curve", str(tmp_path / "old.csv"), "--target-ua", "0.5"]) == 0
    assert "recomputed from their run folders' predictions.csv" in capsys.readouterr().out

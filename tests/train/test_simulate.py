"""ser-train simulate: the active-learning simulation writes its curve, summary, plot and provenance."""

import csv
import json

from train.cli import run as cli


def test_simulate_compares_strategies_with_random_as_the_reference(tmp_path, toy_store, capsys):
    out = tmp_path / "al"
    assert cli(["simulate", "--store", str(toy_store), "--out", str(out), "--strategies", "random,entropy",
                "--balanced", "--seeds", "0,1", "--start", "2", "--step", "4", "--budget", "16",
                "--epochs", "5", "--lr", "1e-2"]) == 0
    for name in ("curve.csv", "summary.csv", "summary.md", "active_learning.png", "run.json"):
        assert (out / name).is_file(), name
    with open(out / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert {r["strategy"] for r in summary} == {"random", "entropy", "entropy-balanced"}
    assert all(float(r["gain_mean"]) == 0 for r in summary if r["strategy"] == "random")
    sizes = [int(r["n_labelled"]) for r in summary if r["strategy"] == "entropy"]
    assert sizes[0] == 8 and sizes[-1] == 16 and sizes == sorted(sizes)   # 2 per class × 4 classes, +4 a round
    run = json.loads((out / "run.json").read_text())
    assert run["train_config"]["schedule"] == "converged" and run["train_config"]["epochs"] == 5
    assert "gain over random" in capsys.readouterr().out


def test_simulate_refuses_an_unknown_strategy(tmp_path, toy_store, capsys):
    assert cli(["simulate", "--store", str(toy_store), "--out", str(tmp_path), "--strategies", "oracle"]) == 2
    assert "unknown strategies ['oracle']" in capsys.readouterr().err


def test_a_budget_below_the_starting_set_is_refused(tmp_path, toy_store, capsys):
    assert cli(["simulate", "--store", str(toy_store), "--out", str(tmp_path / "al"), "--start", "3",
                "--budget", "12"]) == 1
    assert "--budget 12 leaves nothing to select: the starting set is already --start 3 × 4 classes = 12" in \
        capsys.readouterr().err
    assert not (tmp_path / "al" / "curve.csv").exists()

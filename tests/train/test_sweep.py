"""ser-train sweep: every layer store of an @all extraction, and the layer sum, through the run cache."""

import json

import pytest

from train.cli import run as cli
from train.config import TrainConfig
from train.inputs import load_inputs
from train.protocol import cross_validate

from .test_layers import N_LAYERS, SIGNAL_LAYER, write_layer_stores

FAST = ["--epochs", "30", "--lr", "3e-2", "--dropout", "0"]


def test_sweep_finds_the_signal_layer_and_matches_cv_run_by_run(tmp_path):
    d = write_layer_stores(tmp_path / "stores")
    out = tmp_path / "sweep"
    assert cli(["sweep", "--store", str(d / "hf-toy-l0.h5"), "--out", str(out), "--seeds", "0", *FAST,
                "--workers", "1"]) == 0
    res = json.loads((out / "sweep.json").read_text())
    assert [r["layer"] for r in res["rows"]] == [*range(N_LAYERS), "sum"]
    assert res["best_layer"] == SIGNAL_LAYER
    weights = res["rows"][-1]["paper"]["layer_weights"]
    assert max(range(N_LAYERS), key=lambda i: weights[i]) == SIGNAL_LAYER     # the sum found the layer too
    assert len(list((out / "runs").iterdir())) == N_LAYERS + 1                # one run folder per cell
    alone = cross_validate(load_inputs(d / f"hf-toy-l{SIGNAL_LAYER}.h5"), "mean",
                           TrainConfig(epochs=30, lr=3e-2, dropout=0.0), seeds=(0,))
    assert res["rows"][SIGNAL_LAYER]["paper"]["ua"] == pytest.approx(100 * alone.summary["ua_mean"])
    md = (out / "sweep.md").read_text()
    assert "**(best layer)**" in md and "| sum |" in md and "paper (custom, see sweep.json)" in md


def test_sweep_refuses_a_single_store_and_a_bimodal_head(tmp_path, toy_store, capsys):
    assert cli(["sweep", "--store", str(toy_store), "--out", str(tmp_path / "o")]) == 1
    assert "layer stores of an @all extraction" in capsys.readouterr().err
    assert cli(["sweep", "--store", str(toy_store), "--out", str(tmp_path / "o"), "--head", "bimodal"]) == 2

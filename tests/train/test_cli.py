"""ser-train's options: one per TrainConfig field, one meaning per name, values that reach the run."""

import json
from dataclasses import fields

import pytest
from click.testing import CliRunner

from train.cli import main, run as cli
from train.config import TrainConfig

FAST = ["--epochs", "2", "--lr", "1e-2", "--mlp-hidden", "8", "--lstm-hidden", "8"]


@pytest.mark.parametrize("command", ["cv", "loco", "curve", "tables", "fit"])
def test_every_training_field_has_a_flag_in_every_training_command(command):
    text = CliRunner().invoke(main, [command, "--help"], terminal_width=200).output
    for f in fields(TrainConfig):
        if f.name == "layer_sum":                     # set by --layer-sum from the stacked store
            continue
        flag = "--" + f.name.replace("_", "-")
        assert flag in text, f"{command} lacks {flag}"
    assert "--workers" in text and "--hidden " not in text and "--layers " not in text


def test_training_flags_reach_the_run_config(tmp_path, toy_store, toy_text):
    assert cli(["cv", "--store", str(toy_store), "--text", str(toy_text), "--head", "bimodal", "--k", "4",
                "--out", str(tmp_path), *FAST, "--align", "additive", "--input-proj", "0", "--lstm-impl", "packed",
                "--audio-stride", "1", "--no-bucket", "--eval-batch", "7", "--workers", "1"]) == 0
    (run_dir,) = tmp_path.iterdir()
    cfg = json.loads((run_dir / "config.json").read_text())["train_config"]
    assert (cfg["align"], cfg["input_proj"], cfg["lstm_impl"], cfg["audio_stride"], cfg["bucket"],
            cfg["eval_batch"], cfg["mlp_hidden"]) == ("additive", 0, "packed", 1, False, 7, 8)


def test_bad_values_of_generated_flags_are_refused_in_one_line(toy_store, capsys):
    assert cli(["cv", "--store", str(toy_store), "--head", "mlp", "--mlp-layers", "-1"]) == 1
    assert "mlp_layers (--mlp-layers) must be an integer >= 0" in capsys.readouterr().err
    assert cli(["cv", "--store", str(toy_store), "--head", "mlp", "--workers", "two"]) == 2


def test_configs_written_before_the_rename_still_load():
    old = TrainConfig().to_dict()
    old["hidden"], old["layers"] = old.pop("mlp_hidden"), old.pop("mlp_layers")
    old["hidden"] = 32
    assert TrainConfig.from_dict(old).mlp_hidden == 32


def test_tables_take_k_all_and_a_store_path(toy_dir, toy_text, tmp_path):
    assert cli(["tables", "--stores", str(toy_dir), "--out", str(tmp_path), "--k", "all", "--ks", "4,all",
                "--text", str(toy_text), "--seeds", "0", *FAST]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["k"] is None and res["stores"]["text"]["file"] == "bert-toy.h5"
    assert "with all training utterances" in (tmp_path / "table1.md").read_text()


def test_the_cli_names_every_suggestion_strategy():
    from train.cli import SUGGEST_STRATEGIES
    from train.suggest import STRATEGIES

    assert SUGGEST_STRATEGIES == STRATEGIES

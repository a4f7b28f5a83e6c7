import csv
import json

import pytest

from train.cli import run as cli
from train.config import TrainConfig
from train.inputs import load_inputs
from train.protocol import cross_validate
from train.runs import missing_files, write_run
from train.store_folder import identify_stores

FAST = ["--epochs", "2", "--lr", "1e-2", "--mlp-hidden", "8", "--lstm-hidden", "8"]


def test_a_run_folder_holds_every_file_and_traces_the_numbers(tmp_path, toy_store):
    inputs = load_inputs(toy_store)
    r = cross_validate(inputs, "meanmax", TrainConfig(epochs=3), k=6, seeds=(0, 1))
    run_dir = write_run(r, inputs, tmp_path, command="ser-train cv --test")
    assert run_dir.name.endswith("-meanmax-wav2vec-toy-k6") and not missing_files(run_dir)
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["train_config"]["epochs"] == 3 and cfg["seeds"] == [0, 1] and cfg["command"] == "ser-train cv --test"
    prov = json.loads((run_dir / "provenance.json").read_text())["stores"][0]
    assert prov["provenance"]["encoder"] == "toy-encoder" and len(prov["sha256"]) == 64 and prov["size_bytes"] > 0
    assert "torch" in json.loads((run_dir / "versions.json").read_text())["packages"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["summary"]["ua_mean"] == pytest.approx(r.summary["ua_mean"]) and len(metrics["folds"]) == 10
    with open(run_dir / "predictions.csv") as f:
        preds = list(csv.DictReader(f))
    assert len(preds) == 240 and set(preds[0]) >= {"utt_id", "fold", "seed", "label", "pred", "p_neutral", "p_angry"}
    with open(run_dir / "confusion.csv") as f:
        cm = list(csv.reader(f))
    assert cm[0][1:] == list(inputs.classes) and sum(int(v) for row in cm[1:] for v in row[1:]) == 240
    assert write_run(r, inputs, tmp_path) != run_dir  # never overwrites an earlier run


def test_cv_command_prints_a_summary_and_writes_a_run(tmp_path, toy_store, capsys):
    assert cli(["cv", "--store", str(toy_store), "--head", "mean", "--k", "6", "--seeds", "0,1",
                "--out", str(tmp_path), *FAST]) == 0
    out = capsys.readouterr().out
    assert "Ses03" in out and "mean ± std" in out and "UA" in out and "run folder:" in out
    (run_dir,) = tmp_path.iterdir()
    assert not missing_files(run_dir)


def test_curve_and_forecast_commands(tmp_path, toy_store, toy_dir, capsys):
    assert cli(["curve", "--store", str(toy_store), "--store", str(toy_dir / "lld.h5"), "--head", "mean",
                "--ks", "3,6,500,all", "--seeds", "0,1", "--out", str(tmp_path), "--target-ua", "0.8", *FAST]) == 0
    out = capsys.readouterr().out
    assert "k=500 skipped" in out and "UA 80.0%" in out
    assert (tmp_path / "curve.png").stat().st_size > 0
    rows = list(csv.DictReader(open(tmp_path / "curve.csv")))
    assert len(rows) == 2 * 3 * 2 and {r["k"] for r in rows} == {"3", "6", "all"}
    assert all(0 <= float(r["ua_pooled"]) <= 1 for r in rows)  # pooled UA beside the fold mean
    assert "pooled UA %" in out
    assert cli(["forecast", "--curve", str(tmp_path / "curve.csv"), "--target-ua", "0.6"]) == 0
    assert "UA 60.0%" in capsys.readouterr().out


def test_identify_stores(toy_dir, tmp_path):
    s = identify_stores(toy_dir)
    assert (s.pretrained.name, s.lld.name, s.text.name) == ("wav2vec-toy.h5", "lld.h5", "bert-toy.h5")
    import shutil

    for p in toy_dir.iterdir():
        shutil.copy(p, tmp_path / p.name)
    shutil.copy(toy_dir / "wav2vec-toy.h5", tmp_path / "hf-other.h5")
    with pytest.raises(Exception, match="several pre-trained audio stores"):
        identify_stores(tmp_path)
    assert identify_stores(tmp_path, audio="hf-other").pretrained.name == "hf-other.h5"


def test_tables_write_both_tables_the_figure_and_traceable_results(toy_dir, tmp_path, capsys):
    out = tmp_path / "results" / "toy"
    assert cli(["tables", "--stores", str(toy_dir), "--out", str(out), "--seeds", "0", "--k", "6",
                "--ks", "3,all", *FAST]) == 0
    for name in ("table1.md", "table2.md", "figure2.png", "curve.csv", "results.json", "summary.md"):
        assert (out / name).is_file(), name
    t1 = (out / "table1.md").read_text()
    for head in ("mean", "meanmax", "attention", "mlp"):
        assert f"| {head} |" in t1
    assert "54.9-58.5" in t1 and "LLD UA" in t1
    assert "(pooled " in t1  # each UA has its pooled figure beside the mean ± std
    t2 = (out / "table2.md").read_text()
    assert "bimodal (wav2vec-toy + bert-toy)" in t2 and "73.9" in t2 and "pooled UA %" in t2
    res = json.loads((out / "results.json").read_text())
    # every number links to a complete run folder
    dirs = [r["pretrained"]["run_dir"] for r in res["table1"]["paper"]] + [r["run_dir"] for r in res["table2"]["paper"]]
    for d in dirs + [r["run_dir"] for r in res["curve"]]:
        assert not missing_files(out / d)
    assert len(res["runs"]) == len(list((out / "runs").iterdir()))  # identical runs are shared, not redone
    assert res["stores"]["pretrained"]["encoder"] == "toy-encoder" and "toy-encoder" in (out / "summary.md").read_text()


COMMANDS = ("cv", "loco", "curve", "tables", "fit", "predict", "suggest", "forecast", "sweep", "simulate")
NAMED_OPTIONS = {"cv": ["--store", "--head", "--k", "--seeds", "--out", "--workers"], "loco": ["--in-corpus"],
                 "curve": ["--ks", "--target-ua"], "tables": ["--stores", "--also-converged", "--table2-head"],
                 "fit": ["-o, --output", "--calibrate"], "predict": ["--model", "-o, --output"],
                 "suggest": ["--strategy", "--n"], "forecast": ["--curve", "--backtest"],
                 "sweep": ["--store", "--also-converged"], "simulate": ["--strategies", "--budget"]}


def test_the_overview_names_every_command(capsys):
    assert cli(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"ser-train {c}" in out for c in COMMANDS), "the overview gives an example line per command"


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_explains_its_options(cmd, capsys):
    assert cli([cmd, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage: ser-train {cmd} [OPTIONS]")
    missing = [o for o in NAMED_OPTIONS[cmd] if o not in out]
    assert not missing, f"ser-train {cmd} --help does not describe {missing}"


def test_bad_inputs_give_one_line_errors(tmp_path, toy_store, capsys):
    assert cli(["cv", "--store", str(tmp_path / "missing.h5"), "--head", "mean"]) == 1
    assert "store not found" in capsys.readouterr().err
    assert cli(["cv", "--store", str(toy_store), "--head", "nope"]) == 2
    assert cli(["cv", "--store", str(toy_store), "--head", "bimodal", "--epochs", "1", "--out", str(tmp_path)]) == 1
    assert "needs a text store" in capsys.readouterr().err

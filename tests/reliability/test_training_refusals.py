"""The trainer refuses degenerate or broken input with one clear line instead of reporting numbers.

Covered: NaN/Inf frames in a store, invalid training values (``--lr nan`` …), training that diverges (pooled
fast path, frame-level path, parallel workers), stores with fewer than two classes, ``predict`` on labels
the model does not know, unreadable stores in a ``tables`` folder, and output folders that cannot be written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np
import pytest
import torch

from ser_common.store import StoreError
from tests.train.toy_stores import poison, relabel, write_toy_store, write_toy_folder
from train.cli import run as cli
from train.config import TrainConfig
from train.data import find_nonfinite, load_store
from train.inputs import load_inputs
from train.parallel import can_fork
from train.protocol import cross_validate, speaker_independent_folds
from train.store_folder import identify_stores
from train.fitting import fit_jobs
from train.jobs import Job, TrainingDiverged
from train.trainer import train_frame, train_pooled

torch.set_num_threads(1)  # the parallel path forks only from a one-thread parent

FAST = ["--epochs", "2", "--lr", "1e-2", "--mlp-hidden", "8", "--lstm-hidden", "8"]
DIVERGE = ["--epochs", "2", "--lr", "1e24", "--no-normalize", "--mlp-hidden", "8"]
"""On ``huge`` (frames ~1e15, not standardised) one Adam step at lr 1e24 makes the logits overflow."""


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    d = write_toy_folder(tmp_path_factory.mktemp("refusal_stores"))
    write_toy_store(d / "huge.h5", seed=2, sep=1.2, dtype="float32", scale=np.full(8, 1e15, np.float32))
    return d


def _err(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, err
    return lines[0]


# -- 1. non-finite frames ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_store_with_nonfinite_frames_is_refused_naming_the_file_and_utterance(value, tmp_path, capsys):
    path = poison(write_toy_store(tmp_path / "bad.h5"), utt_index=7, frame=2, dim=3, value=value)
    with pytest.raises(StoreError, match=r"bad\.h5: utterance 'S1_0_07' holds NaN/Inf frame values "
                                         r"\(first: utterance 'S1_0_07', its frame 2, row \d+ of /data\).*re-extract"):
        load_store(path)
    assert cli(["cv", "--store", str(path), "--head", "mean", "--out", str(tmp_path / "runs"), *FAST]) == 1
    err = _err(capsys)
    assert str(path) in err and "'S1_0_07'" in err and "NaN/Inf" in err and "ser-extract" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_several_bad_utterances_are_counted_and_the_first_named(tmp_path):
    path = write_toy_store(tmp_path / "bad.h5", dtype="float32")
    poison(path, 40, dim=5)
    poison(path, 3, frame=1, value=float("inf"))
    poison(path, 3, frame=4)
    with pytest.raises(StoreError, match=r"2 utterances hold NaN/Inf frame values \(first: utterance 'S1_0_03', its frame 1"):
        load_store(path)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_find_nonfinite_agrees_with_numpy_and_accepts_the_largest_finite_values(dtype):
    x = torch.randn(3000, 7).to(dtype)
    offsets = np.array([0, 10, 500, 1200, 1201, 3000])
    big = torch.finfo(dtype).max
    x[3, 0], x[2999, 6] = big, -big
    utts, first = find_nonfinite(x, offsets, chunk_values=64)
    assert utts.tolist() == [] and first is None
    x[1200, 2], x[600, 1], x[601, 6] = float("nan"), float("-inf"), float("inf")
    utts, first = find_nonfinite(x, offsets, chunk_values=64)
    assert utts.tolist() == [2, 3] and first == 600
    assert first == int(np.flatnonzero(~np.isfinite(x.float().numpy()).all(1))[0])


# -- 2. invalid training values and diverging training --------------------------------------------------------
@pytest.mark.parametrize("option, value, message", [
    ("--lr", "nan", "learning rate (--lr) must be a positive finite number, got nan"),
    ("--lr", "inf", "learning rate (--lr) must be a positive finite number, got inf"),
    ("--lr", "0", "learning rate (--lr) must be a positive finite number, got 0.0"),
    ("--lr", "-1e-3", "learning rate (--lr) must be a positive finite number, got -0.001"),
    ("--lr", "1e38", "learning rate (--lr) 1e+38 is too large"),
    ("--dropout", "nan", "dropout (--dropout) must be a probability in [0, 1), got nan"),
    ("--dropout", "1", "dropout (--dropout) must be a probability in [0, 1), got 1.0"),
    ("--epochs", "0", "epochs (--epochs) must be a positive integer, got 0"),
    ("--batch-size", "0", "batch_size (--batch-size) must be a positive integer, got 0"),
])
def test_invalid_training_values_are_refused_before_any_work(option, value, message, stores, tmp_path, capsys):
    for cmd in (["cv", "--store", str(stores / "wav2vec-toy.h5"), "--head", "mean", "--out", str(tmp_path / "cv")],
                ["fit", "--store", str(stores / "wav2vec-toy.h5"), "--head", "mean", "-o", str(tmp_path / "m.pt")],
                ["tables", "--stores", str(stores), "--out", str(tmp_path / "tables")]):
        assert cli([*cmd, option, value]) == 1
        assert message in _err(capsys)
    assert not any(tmp_path.iterdir())  # nothing was written, nothing was trained


def test_train_config_refuses_nan_directly():
    with pytest.raises(ValueError, match="positive finite number, got nan"):
        TrainConfig(lr=float("nan"))
    with pytest.raises(ValueError, match=r"probability in \[0, 1\), got nan"):
        TrainConfig(dropout=float("nan"))
    assert TrainConfig(lr=np.float64(1e-3), epochs=np.int64(3)).epochs == 3  # numpy scalars are fine


DIVERGED = (r"training diverged: head '{head}', fold Ses0\d \(seed 0\): the (loss became \S+|loss became NaN/Inf "
            r"\(non-finite gradient\)) at epoch 1, step \d+ of \d+; no score is reported: lower the learning rate "
            r"\(--lr, now 1e\+24")


@pytest.mark.parametrize("head, extra", [("mean", []), ("meanmax", ["--frame-level"]), ("attention", ["--workers", "1"]),
                                         ("mlp", ["--workers", "2"])])
def test_diverging_training_stops_with_a_clear_error_and_writes_no_run(head, extra, stores, tmp_path, capsys):
    import re

    out = tmp_path / "runs"
    assert cli(["cv", "--store", str(stores / "huge.h5"), "--head", head, "--out", str(out), *DIVERGE, *extra]) == 1
    err = _err(capsys)
    assert re.search(DIVERGED.format(head=head), err), err
    assert not out.exists() or not any(out.iterdir())  # no run folder for a diverged run


def test_the_pooled_engine_names_the_diverged_job(stores):
    inputs = load_inputs(stores / "huge.h5")
    cfg = TrainConfig(epochs=2, lr=1e24, normalize=False)
    folds, _ = speaker_independent_folds(inputs)
    jobs = [Job(f.train, 0, f.index, fold=f.name) for f in folds]
    with pytest.raises(TrainingDiverged, match=r"head 'mean', fold Ses01 \(seed 0\): the loss became NaN/Inf .* at "
                                               r"epoch 1, step 2 of 12"):
        train_pooled(inputs, "mean", cfg, jobs)
    with pytest.raises(TrainingDiverged, match=r"head 'mean', fold Ses03 \(seed 0\): the loss became nan at epoch 1"):
        train_frame(inputs, "mean", cfg, jobs[2])
    # outside cross-validation (ser-train fit) the job is named by its seed and size
    with pytest.raises(TrainingDiverged, match=r"head 'mlp', seed 4, 120 training utterances: the loss became nan"):
        fit_jobs(inputs, "mlp", TrainConfig(epochs=2, lr=1e24, normalize=False, mlp_hidden=8), [Job(inputs.labelled, 4)])


def test_a_healthy_run_is_not_stopped_by_the_checks(stores):
    inputs = load_inputs(stores / "wav2vec-toy.h5")
    r = cross_validate(inputs, "mlp", TrainConfig(epochs=2, lr=1e-2, mlp_hidden=8), k=6)
    assert np.isfinite(r.predictions["proba"]).all() and 0 < r.summary["ua_mean"] <= 1


def test_worker_errors_reach_the_caller_with_the_same_type_and_message(stores):
    inputs = load_inputs(stores / "huge.h5")
    cfg = TrainConfig(epochs=2, lr=1e24, normalize=False, mlp_hidden=8)
    folds, _ = speaker_independent_folds(inputs)
    jobs = [Job(f.train, 0, f.index, fold=f.name) for f in folds[:3]]
    assert can_fork("cpu")
    with pytest.raises(TrainingDiverged) as serial:
        fit_jobs(inputs, "mlp", cfg, jobs[:1])
    with pytest.raises(TrainingDiverged) as parallel:
        fit_jobs(inputs, "mlp", cfg, jobs[:1] * 2, workers=2)
    assert str(parallel.value) == str(serial.value)
    assert "fold Ses01 (seed 0): the loss became nan" in str(parallel.value)


def _die(*args, **kwargs):
    os._exit(3)


def _unpicklable(*args, **kwargs):
    class Local(Exception):
        pass

    raise Local("something odd in the worker")


def test_a_worker_that_dies_or_raises_oddly_gives_a_clear_error_not_a_hang(stores, monkeypatch):
    import train.parallel

    inputs = load_inputs(stores / "wav2vec-toy.h5")
    folds, _ = speaker_independent_folds(inputs)
    jobs = [Job(f.train, 0, f.index, fold=f.name) for f in folds[:2]]
    cfg = TrainConfig(epochs=1, mlp_hidden=8)
    monkeypatch.setattr(train.parallel, "train_frame", _die)  # the forked workers inherit the patch
    with pytest.raises(RuntimeError, match=r"a worker process fitting head 'mlp' \(fold Ses0\d \(seed 0\)\) died "
                                           r"without an answer .* rerun with fewer --workers"):
        fit_jobs(inputs, "mlp", cfg, jobs, workers=2)
    monkeypatch.setattr(train.parallel, "train_frame", _unpicklable)
    with pytest.raises(RuntimeError, match="Local: something odd in the worker"):
        fit_jobs(inputs, "mlp", cfg, jobs, workers=2)


def test_a_bundle_with_nonfinite_weights_is_refused_by_predict_and_suggest(stores, tmp_path, capsys):
    model = tmp_path / "m.pt"
    assert cli(["fit", "--store", str(stores / "wav2vec-toy.h5"), "--head", "mean", "-o", str(model), *FAST]) == 0
    d = torch.load(model, weights_only=True)
    d["state_dict"]["classifier.weight"][0, 0] = float("nan")
    torch.save(d, model)
    for cmd in ("predict", "suggest"):
        assert cli([cmd, "--model", str(model), "--store", str(stores / "wav2vec-toy.h5"), "-o", str(tmp_path / "x.csv")]) == 1
        assert "m.pt: the model holds NaN/Inf values (weights classifier.weight): it was saved from a diverged fit" in _err(capsys)
    assert not (tmp_path / "x.csv").exists()


# -- 3. degenerate labels ---------------------------------------------------------------------------------------
def test_a_store_with_one_class_is_refused_for_cv_curve_fit_and_tables(tmp_path, capsys):
    d = tmp_path / "stores"
    d.mkdir()
    one = write_toy_store(d / "wav2vec-toy.h5", rows=relabel({c: "sad" for c in ("neutral", "happy", "angry")}))
    msg = f"{one}: every labelled utterance (120) is 'sad': cannot {{}} with fewer than two classes"
    out = tmp_path / "out"
    for cmd, what in ((["cv", "--store", str(one), "--head", "mean", "--out", str(out)], "cross-validate"),
                      (["curve", "--store", str(one), "--head", "mean", "--out", str(out)], "cross-validate"),
                      (["fit", "--store", str(one), "--head", "mean", "-o", str(out / "m.pt")], "fit a model"),
                      (["tables", "--stores", str(d), "--out", str(out)], "cross-validate")):
        assert cli([*cmd, *FAST]) == 1
        assert msg.format(what) in _err(capsys)
    assert not out.exists()  # a refused run leaves nothing behind, not even its output folder


def test_a_training_job_of_one_class_is_refused(stores):
    inputs = load_inputs(stores / "wav2vec-toy.h5")
    sad = np.flatnonzero(inputs.y == inputs.classes.index("sad"))
    for head in ("mean", "mlp"):
        with pytest.raises(ValueError, match=r"a training job \(fold X \(seed 0\)\) holds only class 'sad' \(30 "
                                             r"utterances\): a classifier needs at least two classes"):
            fit_jobs(inputs, head, TrainConfig(epochs=1, mlp_hidden=8), [Job(sad, 0, 0, fold="X")])


def test_predict_says_when_no_label_of_the_store_is_among_the_models_classes(stores, tmp_path, capsys):
    model = tmp_path / "m.pt"
    assert cli(["fit", "--store", str(stores / "wav2vec-toy.h5"), "--head", "mean", "-o", str(model), *FAST]) == 0
    other = write_toy_store(tmp_path / "other.h5",
                            rows=relabel({"neutral": "calm", "sad": "calm", "happy": "bored", "angry": "bored"}))
    capsys.readouterr()
    assert cli(["predict", "--model", str(model), "--store", str(other), "-o", str(tmp_path / "p.csv")]) == 0
    out = capsys.readouterr().out
    assert ("none of the store's labels (bored, calm) are among the model's classes (neutral, happy, sad, angry): "
            "predictions written, no scores") in out and "UA" not in out
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 125
    # some labels known, some not: scores over the known ones, the others are named
    mixed = write_toy_store(tmp_path / "mixed.h5", rows=relabel({"neutral": "calm"}))
    assert cli(["predict", "--model", str(model), "--store", str(mixed), "-o", str(tmp_path / "q.csv")]) == 0
    out = capsys.readouterr().out
    assert "over the 90 rows whose label is among the model's classes; 30 rows labelled calm are not among them" in out


# -- 5. unreadable stores in a tables folder, unwritable outputs -------------------------------------------------
def _tables_folder(stores, tmp_path):
    d = tmp_path / "stores"
    d.mkdir()
    for name in ("wav2vec-toy.h5", "lld.h5", "bert-toy.h5"):
        shutil.copy(stores / name, d / name)
    (d / "broken.h5").write_bytes(b"this is not an HDF5 file" * 20)
    return d


def test_identify_stores_reports_and_skips_an_unreadable_store(stores, tmp_path):
    d = _tables_folder(stores, tmp_path)
    s = identify_stores(d)
    assert (s.pretrained.name, s.lld.name, s.text.name) == ("wav2vec-toy.h5", "lld.h5", "bert-toy.h5")
    assert len(s.skipped) == 1 and s.skipped[0].startswith("broken.h5: skipped, unreadable (not a readable HDF5 store")
    for p in d.glob("*-toy.h5"):
        p.unlink()
    with pytest.raises(StoreError, match=r"no pre-trained audio store .*skipped: broken\.h5: skipped, unreadable"):
        identify_stores(d)


def test_tables_go_on_without_an_unreadable_store_and_a_nan_lld_store(stores, tmp_path, capsys):
    d = _tables_folder(stores, tmp_path)
    poison(d / "lld.h5", 5)
    out = tmp_path / "results"
    assert cli(["tables", "--stores", str(d), "--out", str(out), "--seeds", "0", "--k", "6", "--ks", "all", "--workers", "1", *FAST]) == 0
    err = capsys.readouterr().err
    assert "warning: broken.h5: skipped, unreadable (not a readable HDF5 store" in err
    assert "warning: lld.h5: skipped, the LLD store cannot be used (utterance 'S1_0_05' holds NaN/Inf" in err
    res = json.loads((out / "results.json").read_text())
    assert [s.split(":")[0] for s in res["skipped_stores"]] == ["broken.h5", "lld.h5"]
    assert res["table1"]["paper"][0]["lld"] is None and "lld" not in res["stores"]
    assert "the LLD store lld.h5 is skipped" in (out / "table1.md").read_text()
    assert "bimodal" in (out / "table2.md").read_text()  # the other stores were used


CMDS = {
    "cv": lambda s, o: ["cv", "--store", str(s / "wav2vec-toy.h5"), "--head", "mean", "--out", str(o), *FAST],
    "curve": lambda s, o: ["curve", "--store", str(s / "wav2vec-toy.h5"), "--head", "mean", "--out", str(o), *FAST],
    "tables": lambda s, o: ["tables", "--stores", str(s), "--out", str(o), *FAST],
    "fit": lambda s, o: ["fit", "--store", str(s / "wav2vec-toy.h5"), "--head", "mean", "-o", str(o / "m.pt"), *FAST],
    "predict": lambda s, o: ["predict", "--model", str(s / "m.pt"), "--store", str(s / "wav2vec-toy.h5"), "-o", str(o / "p.csv")],
    "suggest": lambda s, o: ["suggest", "--model", str(s / "m.pt"), "--store", str(s / "wav2vec-toy.h5"), "-o", str(o / "s.csv")],
}
WHAT = {"cv": "the output folder (--out)", "curve": "the output folder (--out)", "tables": "the output folder (--out)",
        "fit": "the folder of -o/--output", "predict": "the folder of -o/--output", "suggest": "the folder of -o/--output"}


@pytest.fixture(scope="module")
def with_model(stores, tmp_path_factory):
    d = tmp_path_factory.mktemp("with_model")
    for name in ("wav2vec-toy.h5", "lld.h5", "bert-toy.h5"):
        shutil.copy(stores / name, d / name)
    assert cli(["fit", "--store", str(d / "wav2vec-toy.h5"), "--head", "mean", "-o", str(d / "m.pt"), *FAST]) == 0
    return d


@pytest.mark.parametrize("cmd", list(CMDS))
def test_an_output_path_under_a_file_gives_a_clear_error(cmd, with_model, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert cli(CMDS[cmd](with_model, blocker / "sub")) == 1
    assert f"{blocker / 'sub'}: cannot create {WHAT[cmd]}: {blocker} is a file; choose another path" in _err(capsys)


@pytest.mark.parametrize("cmd", list(CMDS))
def test_a_read_only_output_folder_gives_a_clear_error_naming_it(cmd, with_model, tmp_path, capsys, monkeypatch):
    out = tmp_path / "ro"
    out.mkdir()

    def refuse(*args, dir=None, **kwargs):  # what a read-only folder answers (tests may run as root)
        raise PermissionError(13, "Permission denied", os.path.join(str(dir), "probe"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    assert cli(CMDS[cmd](with_model, out)) == 1
    assert _err(capsys) == (f"Error: {out}: cannot write in {WHAT[cmd]} (Permission denied); choose a writable "
                            f"folder or fix its permissions")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_a_really_read_only_folder_is_refused(with_model, tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert cli(CMDS["cv"](with_model, out)) == 1
        assert f"{out}: cannot write in the output folder (--out) (Permission denied)" in _err(capsys)
    finally:
        out.chmod(0o755)


def test_a_write_failing_during_the_run_is_one_line_too(with_model, tmp_path, capsys, monkeypatch):
    import train.runs

    def refuse(out, *args):
        raise PermissionError(13, "Permission denied", str(out))

    monkeypatch.setattr(train.runs, "new_run_dir", refuse)
    assert cli(CMDS["cv"](with_model, tmp_path / "runs")) == 1
    assert _err(capsys) == (f"Error: {tmp_path / 'runs'}: cannot write in the output folder (Permission denied); "
                            f"choose a writable folder or fix its permissions")

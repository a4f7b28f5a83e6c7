"""Run folders: every cross-validation run leaves a self-describing folder.

``<out>/<YYYYmmdd-HHMMSS>-<head>-<store>-k<k|all>[-<n>]/`` holds

``config.json``       TrainConfig, head, k, seeds, device, the stores, the command line
``provenance.json``   each store's provenance dict, path, size, mtime (and sha256 for stores up to
                      :data:`HASH_LIMIT_BYTES`; larger ones are identified by size and mtime)
``versions.json``     package versions and host (``ser_common.provenance``)
``metrics.json``      per (seed, fold) UA/WA/F1, the summary (fold means), ``pooled`` (UA/WA/F1 of all held-out
                      predictions together, per seed and averaged; :func:`train.protocol.pooled_scores`),
                      ``warnings`` (folds whose scores average over fewer classes), ``notes``, the summed
                      confusion matrix
``confusion.csv``     summed confusion matrix (rows: true class, columns: predicted class)
``predictions.csv``   utt_id, fold, seed, label, pred, p_<class>… for every test prediction
``reliability.png``   reliability diagram of the held-out predictions, raw and temperature-scaled
                      (``metrics.json`` ``calibration``: ECE, per-bin table, cross-fitted temperatures;
                      :mod:`train.calibration`)

A cross-corpus run (:func:`train.protocol.cross_corpus`, ``ser-train cv --test-store``, ``ser-train loco``)
writes the same files; "fold" is then the test corpus. ``config.json`` adds ``protocol``
(``cross-corpus``), ``train_files``/``test_files`` (the store files, also of joined stores),
``test_stores``, ``train_corpora``, ``test_corpora``; ``provenance.json`` adds ``test_stores`` and
``files`` (path, size, mtime, sha256 of every training and test store file); ``metrics.json`` adds
``protocol``, ``train_corpora``, ``test_corpora``, ``n_scored``, ``n_test_rows`` and ``not_scored``
(unlabelled test rows, and test rows per label outside the training classes); ``predictions.csv`` lists
the scored test utterances (their ids as in the test store).
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ser_common.provenance import DEFAULT_PACKAGES, host_info, package_versions, sha256_file_cached

from .calibration import write_calibration
from .data import Inputs, StoreData
from .protocol import CrossCorpusResult, CVResult

HASH_LIMIT_BYTES = 512 << 20
TRAIN_PACKAGES = tuple(dict.fromkeys((*DEFAULT_PACKAGES, "click", "tqdm", "matplotlib")))
"""Versions recorded per run (read from package metadata; nothing is imported)."""
RUN_FILES = ("config.json", "provenance.json", "versions.json", "metrics.json", "confusion.csv", "predictions.csv")


def command_line() -> str:
    """The command that is running, as typed (best effort)."""
    return " ".join([Path(sys.argv[0]).name] + sys.argv[1:])


def store_record(store: StoreData) -> dict[str, Any]:
    """Provenance of a store as used by a run: its provenance dict, path, size, mtime, sha256 (small files)."""
    path = Path(store.path)
    rec: dict[str, Any] = {"path": str(path.resolve()), "name": store.name, "provenance": store.provenance,
                           "n_utts": store.n, "dims": store.dims}
    try:
        st = path.stat()
    except OSError:
        return rec
    rec.update(size_bytes=st.st_size, mtime=time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(st.st_mtime)))
    if st.st_size <= HASH_LIMIT_BYTES:
        rec["sha256"] = sha256_file_cached(path)
    else:
        rec["sha256"] = None
        rec["sha256_note"] = f"not hashed (> {HASH_LIMIT_BYTES >> 20} MiB); identified by size and mtime"
    return rec


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def new_run_dir(out: str | os.PathLike, head: str, store: str, k: int | None) -> Path:
    """Create and return a fresh run folder under ``out``."""
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{_slug(head)}-{_slug(store)}-k{'all' if k is None else k}"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path, n = out / base, 1
    while True:
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1
            path = out / f"{base}-{n}"


def _dump(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o)}")


def file_record(path: str | os.PathLike) -> dict[str, Any]:
    """A store file as a run used it: resolved path, size, mtime, sha256 (``None`` above
    :data:`HASH_LIMIT_BYTES`, or when the file is gone)."""
    path = Path(path)
    rec: dict[str, Any] = {"path": str(path.resolve())}
    try:
        st = path.stat()
    except OSError:
        return {**rec, "sha256": None, "sha256_note": "file not found when the run was written"}
    rec.update(size_bytes=st.st_size, mtime=time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(st.st_mtime)))
    if st.st_size > HASH_LIMIT_BYTES:
        return {**rec, "sha256": None, "sha256_note": f"not hashed (> {HASH_LIMIT_BYTES >> 20} MiB)"}
    return {**rec, "sha256": sha256_file_cached(path)}


def store_files(store: StoreData) -> list[str]:
    """The files a loaded store came from: its path, or each file of a join (``combined_from``)."""
    return [str(p) for p in store.provenance.get("combined_from") or [store.path]]


def cross_corpus_records(result: CVResult, inputs: Inputs) -> dict[str, dict[str, Any]]:
    """What a cross-corpus run adds to ``config.json``, ``provenance.json`` and ``metrics.json`` (see the
    module docstring); three empty dicts for any other run."""
    if not isinstance(result, CrossCorpusResult) or result.test is None:
        return {"config": {}, "provenance": {}, "metrics": {}}
    train_files = [f for s in inputs.stores for f in store_files(s)]
    test_files = [f for s in result.test.stores for f in store_files(s)]
    return {"config": {"protocol": "cross-corpus", "train_files": train_files, "test_files": test_files,
                       "test_stores": [str(s.path) for s in result.test.stores],
                       "train_corpora": list(result.train_corpora), "test_corpora": list(result.test_corpora)},
            "provenance": {"test_stores": [store_record(s) for s in result.test.stores],
                           "files": {"train": [file_record(f) for f in train_files],
                                     "test": [file_record(f) for f in test_files]}},
            "metrics": result.metrics_extra()}


def write_run(result: CVResult, inputs: Inputs, out: str | os.PathLike, command: str | None = None,
              extra: dict[str, Any] | None = None) -> Path:
    """Write ``result`` into a new run folder under ``out``; sets and returns ``result.run_dir``."""
    run_dir = new_run_dir(out, result.head, result.store, result.k)
    cross = cross_corpus_records(result, inputs)
    _dump(run_dir / "config.json", {
        "head": result.head, "k": result.k, "seeds": list(result.seeds), "device": result.device,
        "train_config": result.config.to_dict(), "stores": [str(s.path) for s in inputs.stores],
        "classes": list(result.classes), "command": command or command_line(), **cross["config"], **(extra or {})})
    _dump(run_dir / "provenance.json", {"stores": [store_record(s) for s in inputs.stores], **cross["provenance"]})
    _dump(run_dir / "versions.json", {"packages": package_versions(TRAIN_PACKAGES), "host": host_info()})
    cm = result.confusion
    _dump(run_dir / "metrics.json", {
        "head": result.head, "store": result.store, "k": result.k, "seeds": list(result.seeds),
        "classes": list(result.classes), "folds": result.folds, "summary": result.summary,
        "pooled": result.pooled, "warnings": list(result.warnings), "confusion": cm.tolist(),
        "seconds": round(result.seconds, 3), "fit_seconds": round(result.fit_seconds, 3),
        "eval_seconds": round(result.eval_seconds, 3), "notes": result.notes, **cross["metrics"],
        "calibration": write_calibration(result, run_dir)})
    write_confusion_csv(run_dir / "confusion.csv", result.classes, cm)
    write_predictions_csv(run_dir / "predictions.csv", result.test if isinstance(result, CrossCorpusResult)
                          else inputs, result)
    result.run_dir = run_dir
    return run_dir


def write_predictions_csv(path: Path, inputs: Inputs, result: CVResult) -> None:
    p = result.predictions
    classes = result.classes
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["utt_id", "fold", "seed", "label", "pred", *[f"p_{c}" for c in classes]])
        for row, fold, seed, y, pred, proba in zip(p["row"], p["fold"], p["seed"], p["y"], p["pred"], p["proba"]):
            w.writerow([inputs.audio.utt_ids[row], fold, int(seed), classes[y], classes[pred],
                        *[f"{v:.6f}" for v in proba]])


def missing_files(run_dir: str | os.PathLike, names: Sequence[str] = RUN_FILES) -> list[str]:
    return [n for n in names if not (Path(run_dir) / n).is_file()]


# -- metrics of `ser-train predict` on labelled data -------------------------------------------------------
def metrics_paths(output: str | os.PathLike, metrics: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Where ``predict`` writes its metrics: ``(metrics.json, confusion.csv)``.

    By default beside the predictions CSV ``output``: ``p.csv`` -> ``p.metrics.json``, ``p.confusion.csv``.
    With ``metrics`` (``--metrics PATH``): that file, and the confusion CSV beside it (``m.json`` ->
    ``m.confusion.csv``; ``x.metrics.json`` -> ``x.confusion.csv``).
    """
    if metrics is None:
        out = Path(output)
        return out.with_suffix(".metrics.json"), out.with_suffix(".confusion.csv")
    m = Path(metrics)
    stem = m.name.removesuffix(".json").removesuffix(".metrics")
    return m, m.with_name(f"{stem}.confusion.csv")


def write_confusion_csv(path: str | os.PathLike, classes: Sequence[str], cm: np.ndarray) -> Path:
    """``cm`` [C × C] as CSV: header ``true\\pred, <class>…``, one row per true class."""
    from ser_common.spreadsheet import safe_cell

    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true\\pred", *[safe_cell(c) for c in classes]])
        for c, row in zip(classes, np.asarray(cm)):
            w.writerow([safe_cell(c), *[int(v) for v in row]])
    return path


def prediction_metrics(classes: Sequence[str], labels: np.ndarray, y: np.ndarray, pred: np.ndarray,
                       **context: Any) -> dict[str, Any]:
    """UA/WA/F1 of predictions on the rows whose label is one of ``classes``, and what was left out.

    ``labels``: str [N] the store's labels (``""``: unlabelled); ``y``: int64 [N] their class index (``-1``:
    unlabelled or another label); ``pred``: int64 [N] predicted class index. Returns ``classes``, ``ua``,
    ``wa``, ``f1`` (fractions, over the scored rows), ``n_rows``, ``n_scored``, ``not_scored``
    (``{"unlabelled": n, "outside_classes": {label: n}}``), ``per_class`` (``n``, ``recall``, ``precision``;
    ``None`` where undefined), ``confusion`` [C × C] (row: true, column: predicted), plus ``context``
    (model, stores, command, …). Raises ``ValueError`` when no row can be scored.
    """
    from .metrics import confusion_matrix, not_scored, scores_from_confusion

    known = np.asarray(y) >= 0
    if not known.any():
        raise ValueError("no row carries a label among the model's classes: nothing to score")
    cm = confusion_matrix(np.asarray(y)[known], np.asarray(pred)[known], len(classes))
    support, predicted = cm.sum(1), cm.sum(0)
    per_class = {c: {"n": int(support[i]),
                     "recall": float(cm[i, i] / support[i]) if support[i] else None,
                     "precision": float(cm[i, i] / predicted[i]) if predicted[i] else None}
                 for i, c in enumerate(classes)}
    return {**context, "classes": list(classes), **scores_from_confusion(cm), "n_rows": int(len(y)),
            "n_scored": int(known.sum()),
            "not_scored": not_scored(labels, y),
            "per_class": per_class, "confusion": cm.tolist(),
            "scored_on": "rows whose label is one of the model's classes (UA: mean recall over the classes "
                         "present among them)"}


def write_prediction_metrics(metrics: dict[str, Any], paths: tuple[Path, Path]) -> tuple[Path, Path]:
    """Write :func:`prediction_metrics` as JSON and its confusion matrix as CSV to ``paths``."""
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    _dump(paths[0], metrics)
    write_confusion_csv(paths[1], metrics["classes"], np.asarray(metrics["confusion"]))
    return paths

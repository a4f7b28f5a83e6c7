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

from ser_common.provenance import DEFAULT_PACKAGES, host_info, package_versions, sha256_file

from .data import Inputs, StoreData
from .protocol import CVResult

HASH_LIMIT_BYTES = 512 << 20
TRAIN_PACKAGES = tuple(dict.fromkeys((*DEFAULT_PACKAGES, "click", "tqdm", "matplotlib")))
"""Versions recorded per run (read from package metadata; nothing is imported)."""
RUN_FILES = ("config.json", "provenance.json", "versions.json", "metrics.json", "confusion.csv", "predictions.csv")
_HASH_CACHE: dict[tuple[str, int, float], str] = {}


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
    key = (str(path.resolve()), st.st_size, st.st_mtime)
    if st.st_size <= HASH_LIMIT_BYTES:
        if key not in _HASH_CACHE:
            _HASH_CACHE[key] = sha256_file(path)
        rec["sha256"] = _HASH_CACHE[key]
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


def write_run(result: CVResult, inputs: Inputs, out: str | os.PathLike, command: str | None = None,
              extra: dict[str, Any] | None = None) -> Path:
    """Write ``result`` into a new run folder under ``out``; sets and returns ``result.run_dir``."""
    run_dir = new_run_dir(out, result.head, result.store, result.k)
    _dump(run_dir / "config.json", {
        "head": result.head, "k": result.k, "seeds": list(result.seeds), "device": result.device,
        "train_config": result.config.to_dict(), "stores": [str(s.path) for s in inputs.stores],
        "classes": list(result.classes), "command": command or command_line(), **(extra or {})})
    _dump(run_dir / "provenance.json", {"stores": [store_record(s) for s in inputs.stores]})
    _dump(run_dir / "versions.json", {"packages": package_versions(TRAIN_PACKAGES), "host": host_info()})
    cm = result.confusion
    _dump(run_dir / "metrics.json", {
        "head": result.head, "store": result.store, "k": result.k, "seeds": list(result.seeds),
        "classes": list(result.classes), "folds": result.folds, "summary": result.summary,
        "pooled": result.pooled, "warnings": list(result.warnings), "confusion": cm.tolist(),
        "seconds": round(result.seconds, 3), "fit_seconds": round(result.fit_seconds, 3),
        "eval_seconds": round(result.eval_seconds, 3), "notes": result.notes})
    with open(run_dir / "confusion.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true\\pred", *result.classes])
        for c, row in zip(result.classes, cm):
            w.writerow([c, *row.tolist()])
    write_predictions_csv(run_dir / "predictions.csv", inputs, result)
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


def read_metrics(run_dir: str | os.PathLike) -> dict[str, Any]:
    """``metrics.json`` of a run folder."""
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def missing_files(run_dir: str | os.PathLike, names: Sequence[str] = RUN_FILES) -> list[str]:
    return [n for n in names if not (Path(run_dir) / n).is_file()]

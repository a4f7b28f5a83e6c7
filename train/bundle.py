"""Fitted-model bundles: fit on a store, save, and predict on (or rank for labelling) another store.

A bundle (``torch.save`` of plain tensors/dicts, loadable with ``weights_only=True``) holds the head name,
its :class:`TrainConfig`, the class list, the state dict, the normalisation statistics, and the
:class:`~ser_common.identity.FeatureIdentity` of each training store. A store matches at predict time when
its identity equals the bundle's in the ``features`` scope: same feature kind and encoder class, the same
weights by sha256 (never by the path they were read from, so a bundle moves to another machine), layer,
crop, sample and frame rate, dims, encoder window and settings. The manifest and the compute/storage
dtypes are deliberately not compared. Each store's ``spec`` is kept as bookkeeping (``ser-extract --like``).

A bundle fitted with ``ser-train fit --calibrate`` (the default) also holds a softmax temperature ``T`` and
how it was fitted (:mod:`train.calibration`); :func:`predict` (hence :func:`train.suggest.suggest`) applies it. A bundle
without one (``--no-calibrate``, or saved before calibration existed) loads with ``T = 1``: uncalibrated.

Bundles are written to a temporary name and renamed into place, so an existing bundle survives a failed
save (full disk, killed run).
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ser_common.folds import sample_per_class
from ser_common.identity import FeatureIdentity
from ser_common.store import StoreError

from .config import TrainConfig
from .data import Inputs, StoreData, make_inputs
from .heads import build_head, head_config
from .normalization import Standardizer
from .fitting import fit_jobs
from .jobs import FittedModel, Job, head_in_dims
from .trainer import predict_proba

BUNDLE_FORMAT = "ser-train-bundle"
BUNDLE_VERSION = 2
LEGACY_MATCH_KEYS = ("weights_sha256", "layer", "crop_s", "frame_rate_hz", "dims", "sample_rate")
"""What a version-1 bundle (which kept a provenance subset, not an identity) is matched on."""


class ProvenanceMismatch(StoreError):
    """A store whose features differ from those a bundle was trained on; the message names the keys."""


def store_entry(provenance: dict[str, Any]) -> dict[str, Any]:
    """What a bundle keeps of one training store: its identity, plus its spec and name as bookkeeping."""
    return {"identity": FeatureIdentity.from_provenance(provenance).to_dict(), "spec": provenance.get("spec"),
            "feature": provenance.get("feature")}


@dataclass(eq=False)
class Bundle:
    """A fitted model with everything needed to use it on another store."""

    head: str
    config: TrainConfig
    classes: tuple[str, ...]
    in_dims: int | tuple[int, int]
    state_dict: dict[str, torch.Tensor]
    standardizers: list[Standardizer]
    stores: list[dict[str, Any]]
    """Per training store (audio, then text): ``identity`` (a :class:`FeatureIdentity` dict), ``spec``,
    ``feature``; a version-1 bundle has ``legacy`` (its provenance subset) instead of ``identity``."""
    meta: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0
    """Softmax temperature applied by :func:`predict` (``ser-train fit --calibrate``; 1 = uncalibrated)."""
    calibration: dict[str, Any] | None = None
    """How ``temperature`` was fitted (:func:`train.calibration.calibrate_fit`); ``None``: uncalibrated
    (fitted without calibration, or a bundle saved before calibration existed: it loads with T = 1)."""

    def model(self) -> FittedModel:
        head = build_head(self.head, self.in_dims, len(self.classes), self.config)
        head.load_state_dict(self.state_dict)
        head.eval()
        return FittedModel(self.head, head, tuple(self.standardizers), self.classes,
                           self.meta.get("epochs", 0), self.meta.get("steps", 0))


def training_rows(inputs: Inputs, k: int | None = None, seed: int = 0) -> np.ndarray:
    """The rows :func:`fit_bundle` trains on: every labelled row, or ``k`` per class of them drawn with ``seed``."""
    rows = inputs.labelled
    if len(rows) == 0:
        raise StoreError(f"{inputs.audio.path}: no labelled utterance to fit on")
    if k is not None:
        rows = sample_per_class(inputs.y, rows, k, seed)
    return rows


def fit_bundle(inputs: Inputs, head: str, cfg: TrainConfig, k: int | None = None, seed: int = 0,
               device: str = "cpu") -> Bundle:
    """Fit ``head`` on every labelled row of ``inputs`` (or ``k`` per class of them, drawn with ``seed``)."""
    cfg = head_config(head, cfg)      # what a preset head (bimodal-xu) really trains with
    rows = training_rows(inputs, k, seed)
    model = fit_jobs(inputs, head, cfg, [Job(rows, seed, 0)], device)[0]
    counts = np.bincount(inputs.y[rows], minlength=len(inputs.classes))
    return Bundle(head=head, config=cfg, classes=inputs.classes, in_dims=head_in_dims(head, inputs),
                  state_dict={n: t.detach().cpu() for n, t in model.head.state_dict().items()},
                  standardizers=[s for s in model.standardizers],
                  stores=[store_entry(s.provenance) for s in inputs.stores],
                  meta={"k": k, "seed": seed, "n_train": int(len(rows)), "epochs": model.epochs,
                        "steps": model.steps, "train_counts": dict(zip(inputs.classes, counts.tolist())),
                        "stores": [str(Path(s.path).resolve()) for s in inputs.stores],
                        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def save_bundle(bundle: Bundle, path: str | os.PathLike) -> Path:
    """Write ``bundle`` to ``path`` via a temporary file renamed into place (an old bundle there survives
    any failure). Raises ``RuntimeError`` naming the path when it cannot be written."""
    path = Path(path)
    in_dims = list(bundle.in_dims) if isinstance(bundle.in_dims, tuple) else bundle.in_dims
    obj = {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "head": bundle.head,
           "config": bundle.config.to_dict(), "classes": list(bundle.classes), "in_dims": in_dims,
           "state_dict": bundle.state_dict, "standardizers": [s.state() for s in bundle.standardizers],
           "stores": bundle.stores, "meta": json.loads(json.dumps(bundle.meta, default=str)),
           "temperature": float(bundle.temperature),
           "calibration": json.loads(json.dumps(bundle.calibration, default=str))}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        tmp.unlink(missing_ok=True)
        kept = " (the bundle already there is unchanged)" if path.exists() else ""
        raise RuntimeError(f"{path}: cannot write the model bundle ({e}){kept}; free some space or choose "
                           f"another -o/--output") from None
    return path


def load_bundle(path: str | os.PathLike) -> Bundle:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model bundle (make one with `ser-train fit`)")
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ValueError(f"{path}: not a ser-train model bundle ({e})") from e
    if not isinstance(d, dict) or d.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"{path}: not a ser-train model bundle")
    version = d.get("version")
    if version not in (1, BUNDLE_VERSION):
        raise ValueError(f"{path}: bundle version {version!r} is not {BUNDLE_VERSION} (refit it with `ser-train fit`)")
    try:
        in_dims = tuple(d["in_dims"]) if isinstance(d["in_dims"], list) else int(d["in_dims"])
        if version == 1:
            stores = [{"legacy": p, "spec": None, "feature": p.get("feature")} for p in d["provenance"]]
        else:
            stores = d["stores"]
            for entry in stores:
                FeatureIdentity.from_dict(entry["identity"])
        temperature = float(d.get("temperature", 1.0))   # older bundles: uncalibrated
        if not (np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature {temperature!r} is not a positive finite number")
        return Bundle(head=d["head"], config=TrainConfig.from_dict(d["config"]), classes=tuple(d["classes"]),
                      in_dims=in_dims, state_dict=d["state_dict"],
                      standardizers=[Standardizer(s["mean"], s["std"]) for s in d["standardizers"]],
                      stores=stores, meta=d["meta"], temperature=temperature,
                      calibration=d.get("calibration"))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"{path}: damaged ser-train model bundle ({type(e).__name__}: {e}); refit it with "
                         f"`ser-train fit`") from None


def check_provenance(bundle: Bundle, stores: Sequence[StoreData]) -> None:
    """Raise :class:`ProvenanceMismatch` unless each store matches the bundle's training stores."""
    if len(stores) != len(bundle.stores):
        need = "an audio and a text store (--text)" if len(bundle.stores) == 2 else "one store (no --text)"
        raise ProvenanceMismatch(f"the bundle's head {bundle.head!r} was trained on {need}, got "
                                 f"{', '.join(str(s.path) for s in stores)}")
    for store, entry in zip(stores, bundle.stores):
        if "identity" in entry:
            want = FeatureIdentity.from_dict(entry["identity"])
            diff = want.diff(FeatureIdentity.from_provenance(store.provenance), scope="features")
        else:
            legacy = entry["legacy"]
            diff = {k: (legacy.get(k), store.provenance.get(k)) for k in LEGACY_MATCH_KEYS
                    if json.dumps(legacy.get(k), default=str) != json.dumps(store.provenance.get(k), default=str)}
        if diff:
            detail = "; ".join(f"{k}: trained on {a!r}, store has {b!r}" for k, (a, b) in diff.items())
            raise ProvenanceMismatch(f"{store.path}: features differ from those the model was trained on "
                                     f"({', '.join(diff)}): {detail}; extract them as the model expects "
                                     f"(ser-extract --like MODEL) or refit on this store")


def bundle_inputs(bundle: Bundle, audio: StoreData, text: StoreData | None = None,
                  intersect: bool = False) -> Inputs:
    """Check provenance and build :class:`Inputs` with the bundle's classes."""
    stores = [audio] + ([text] if text is not None else [])
    check_provenance(bundle, stores)
    return make_inputs(audio, text, classes=bundle.classes, intersect=intersect)


@dataclass(eq=False)
class Predictions:
    """``utt_ids``, ``labels`` (``""`` when unknown), ``pred`` (class index) and ``proba`` [N × C] (calibrated
    when the bundle is); ``abstain`` (bool [N], ``None`` unless asked for): rows left to a person."""

    classes: tuple[str, ...]
    utt_ids: np.ndarray
    labels: np.ndarray
    pred: np.ndarray
    proba: np.ndarray
    abstain: np.ndarray | None = None

    def write_csv(self, path: str | os.PathLike) -> Path:
        """One row per utterance: utt_id, label, pred, [abstain,] p_<class>… (probabilities as numbers, 6
        decimals; ``abstain`` = ``true``/``false``, only when :attr:`abstain` is set).

        Text cells (ids, labels, class names) that a spreadsheet would run as a formula are neutralised with
        a leading ``'`` (:func:`ser_common.spreadsheet.safe_cell`).
        """
        from ser_common.spreadsheet import safe_cell

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            flag = [] if self.abstain is None else ["abstain"]
            w.writerow([safe_cell(c) for c in ["utt_id", "label", "pred", *flag, *[f"p_{c}" for c in self.classes]]])
            abstain = self.abstain if self.abstain is not None else [None] * len(self.pred)
            for u, lab, p, a, pr in zip(self.utt_ids, self.labels, self.pred, abstain, self.proba):
                cell = [] if a is None else ["true" if a else "false"]
                w.writerow([safe_cell(u), safe_cell(lab), safe_cell(self.classes[p]), *cell,
                            *[f"{v:.6f}" for v in pr]])
        return path


def predict(bundle: Bundle, inputs: Inputs, device: str = "cpu", rows: np.ndarray | None = None) -> Predictions:
    """Predict every row of ``inputs`` (from :func:`bundle_inputs`), or ``rows``; the probabilities are scaled
    by the bundle's temperature (calibrated when it was fitted with ``--calibrate``)."""
    rows = np.arange(inputs.n) if rows is None else np.asarray(rows, dtype=np.int64)
    proba = predict_proba(bundle.model(), inputs, rows, device, eval_batch=bundle.config.eval_batch,
                          temperature=bundle.temperature)
    return Predictions(bundle.classes, inputs.audio.utt_ids[rows], inputs.audio.labels[rows],
                       proba.argmax(1) if len(rows) else np.zeros(0, np.int64), proba)


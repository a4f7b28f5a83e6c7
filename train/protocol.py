"""Evaluation protocols: speaker-independent cross-validation, k-per-class small data, learning curves.

Cross-validation is leave-one-session-out over the store's ``session`` column
(:func:`ser_common.folds.fold_splits`; IEMOCAP's five sessions give the paper's 5 folds). Only labelled
rows (label not ``""``) take part. With ``k``, each fold trains on ``k`` utterances per class drawn from
that fold's training sessions only (:func:`ser_common.folds.sample_per_class` with the run's seed), and is
tested on the whole held-out session.

Summaries: per metric (UA, WA, macro F1), the mean over folds for each seed, then the mean and the
(population) standard deviation of those fold means over seeds (``std_seeds``), and the standard
deviation over folds of the seed-averaged fold scores (``std_folds``). ``std`` is ``std_seeds`` when there
are several seeds, else ``std_folds`` (``std_over`` says which).

Pooled scores (:func:`pooled_scores`, ``CVResult.pooled``) are the honest companion of the fold mean: UA,
WA and F1 of *all* held-out predictions of a seed together (the confusion matrix summed over its folds),
so every utterance counts once and a class missing from one test fold still counts. With several seeds,
each seed is pooled on its own and the pooled scores are averaged over seeds (``<m>_std``: population std
over seeds). Every seed tests the same utterances, so the averaged pooled UA and WA equal the UA and WA of
the confusion matrix summed over folds *and* seeds (``confusion.csv``); F1 can differ slightly.

Refused or flagged: fewer than two classes among the labelled rows (:func:`train.data.check_classes`);
repeated seeds run once (:func:`dedupe_seeds`, with a note); a test fold without some class, or a class
without training utterances in a fold, gives a warning (``CVResult.warnings``) as its fold UA then
averages over fewer classes; non-finite predictions stop the run (:class:`train.trainer.TrainingDiverged`).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ser_common.folds import fold_splits, sample_per_class

from .config import TrainConfig
from .data import Inputs, check_classes
from .metrics import confusion_matrix, mean_std, scores_from_confusion
from .trainer import Job, TrainingDiverged, fit_jobs, predict_proba

METRICS = ("ua", "wa", "f1")
DEFAULT_KS = (25, 50, 125, 250, 500, None)
"""The learning curve's default k per class (``None`` = all training data)."""


@dataclass(eq=False)
class Fold:
    """One held-out session: its name, index, training rows (all labelled) and test rows."""

    name: str
    index: int
    train: np.ndarray
    test: np.ndarray


def speaker_independent_folds(inputs: Inputs) -> tuple[list[Fold], list[str]]:
    """Leave-one-session-out folds over the labelled rows, and notes (e.g. a speaker in several sessions)."""
    check_classes(inputs, "cross-validate")
    lab = inputs.labelled
    sessions = inputs.audio.sessions[lab]
    try:
        splits = fold_splits(sessions)
    except ValueError as e:
        raise ValueError(f"{inputs.audio.path}: {e}") from None
    folds = [Fold(str(name), i, lab[tr], lab[te]) for i, (name, tr, te) in enumerate(splits)]
    notes = []
    spk = inputs.audio.speakers
    for f in folds:
        shared = set(spk[f.train]) & set(spk[f.test])
        if shared:
            notes.append(f"fold {f.name}: speakers {sorted(shared)[:3]} also occur in the training sessions "
                         f"(the session column is not speaker-independent)")
    return folds, notes


def fold_warnings(inputs: Inputs, folds: Sequence[Fold]) -> list[str]:
    """Why some fold scores average over fewer classes than the run has (one line each).

    A class with no labelled utterance at all; per fold, a class present in the training sessions but not in
    the held-out one (that fold's UA/F1 leave it out), and a class only in the held-out session (the model
    never saw it, its recall there is 0).
    """
    out = []
    name = inputs.classes
    empty = [name[c] for c in range(len(name)) if not (inputs.y == c).any()]
    if empty:
        out.append(f"{', '.join(empty)}: no labelled utterance of {'these classes' if len(empty) > 1 else 'this class'}"
                   f" in the store, so {'they count' if len(empty) > 1 else 'it counts'} in no score")
    for f in folds:
        tr, te = set(inputs.y[f.train].tolist()), set(inputs.y[f.test].tolist())
        no_test = [name[c] for c in sorted(tr - te)]
        no_train = [name[c] for c in sorted(te - tr)]
        if no_test:
            out.append(f"fold {f.name}: no test utterance of {', '.join(no_test)}: this fold's UA and F1 "
                       f"average over the other {len(te)} classes (the pooled scores count every class)")
        if no_train:
            out.append(f"fold {f.name}: {', '.join(no_train)} occur only in the held-out session, with no "
                       f"training utterance: the model cannot predict them there")
    return out


def dedupe_seeds(seeds: Sequence[int]) -> tuple[tuple[int, ...], str | None]:
    """The seeds with repeats dropped (first occurrence kept, order kept), and a note when any was dropped.

    A repeated seed is the same run again: it adds no information and would only shrink the std over seeds.
    """
    given = [int(s) for s in seeds]
    kept = tuple(dict.fromkeys(given))
    if len(kept) == len(given):
        return kept, None
    return kept, (f"seeds {','.join(map(str, given))} repeat a seed: each distinct seed runs once "
                  f"({','.join(map(str, kept))}: {len(kept)} seed{'s' if len(kept) > 1 else ''})")


def subsample(inputs: Inputs, rows: np.ndarray, k: int | None, seed: int) -> np.ndarray:
    """``k`` rows per class of ``rows`` (all of ``rows`` when ``k`` is ``None``), drawn with ``seed``."""
    if k is None:
        return rows
    return sample_per_class(inputs.y, rows, k, seed)


def class_counts(inputs: Inputs, rows: np.ndarray) -> dict[str, int]:
    c = Counter(inputs.y[rows].tolist())
    return {inputs.classes[i]: int(c.get(i, 0)) for i in range(len(inputs.classes))}


@dataclass(eq=False)
class CVResult:
    """Everything a cross-validation run produced.

    Attributes:
        folds: one dict per (seed, fold): seed, fold, n_train, n_test, epochs, steps, ua, wa, f1.
        confusion: int64 [C × C] summed over folds and seeds (row: true, column: predicted).
        predictions: dict of arrays over every (seed, test row): row, fold, seed, y, pred, proba [n × C].
        summary: per metric ``<m>_mean``, ``<m>_std``, ``<m>_std_seeds``, ``<m>_std_folds``, ``per_seed``,
            ``n_train_mean``, ``std_over`` (fold means; see the module docstring).
        pooled: per metric ``<m>`` (the pooled score averaged over seeds), ``<m>_std`` (population std
            over seeds, 0 for one seed), ``per_seed`` {metric: {seed: score}}, ``n_predictions`` (per seed),
            ``std_over``, ``method`` (see :func:`pooled_scores`).
        warnings: fold-level problems that make fold scores average over fewer classes (:func:`fold_warnings`).
    """

    head: str
    store: str
    k: int | None
    seeds: tuple[int, ...]
    config: TrainConfig
    classes: tuple[str, ...]
    folds: list[dict[str, Any]]
    confusion: np.ndarray
    predictions: dict[str, np.ndarray]
    summary: dict[str, Any]
    seconds: float
    device: str
    notes: list[str] = field(default_factory=list)
    pooled: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    run_dir: Any = None
    fit_seconds: float = 0.0
    eval_seconds: float = 0.0

    @property
    def ua(self) -> float:
        return float(self.summary["ua_mean"])


def summarize(folds: list[dict[str, Any]], seeds: Sequence[int]) -> dict[str, Any]:
    """Mean/std summaries of per-(seed, fold) scores; see the module docstring."""
    out: dict[str, Any] = {"per_seed": {}}
    names = sorted({f["fold"] for f in folds})
    for m in METRICS:
        per_seed = [float(np.mean([f[m] for f in folds if f["seed"] == s])) for s in seeds]
        per_fold = [float(np.mean([f[m] for f in folds if f["fold"] == n])) for n in names]
        mean, std_seeds = mean_std(per_seed)
        _, std_folds = mean_std(per_fold)
        out[f"{m}_mean"] = mean
        out[f"{m}_std_seeds"] = std_seeds
        out[f"{m}_std_folds"] = std_folds
        out[f"{m}_std"] = std_seeds if len(seeds) > 1 else std_folds
        out["per_seed"][m] = dict(zip([str(s) for s in seeds], per_seed))
    out["std_over"] = "seeds" if len(seeds) > 1 else "folds"
    out["n_train_mean"] = float(np.mean([f["n_train"] for f in folds]))
    out["n_folds"] = len(names)
    return out


def pooled_scores(confusions: dict[int, np.ndarray]) -> dict[str, Any]:
    """Scores of all held-out predictions together, per seed, then averaged over seeds.

    ``confusions``: seed -> int64 [C × C] confusion matrix summed over that seed's folds. Each seed's UA, WA
    and F1 come from its summed matrix (:func:`train.metrics.scores_from_confusion`); ``<m>`` is their mean
    over seeds and ``<m>_std`` the population std (0 for one seed). Pooling per seed keeps the seeds'
    spread visible; as every seed tests the same utterances, the mean pooled UA/WA equal those of the
    matrix summed over seeds too.
    """
    seeds = list(confusions)
    per_seed = {s: scores_from_confusion(confusions[s]) for s in seeds}
    out: dict[str, Any] = {"per_seed": {}}
    for m in METRICS:
        mean, std = mean_std([per_seed[s][m] for s in seeds])
        out[m] = mean
        out[f"{m}_std"] = std
        out["per_seed"][m] = {str(s): per_seed[s][m] for s in seeds}
    out["n_predictions"] = int(confusions[seeds[0]].sum())
    out["std_over"] = "seeds" if len(seeds) > 1 else None
    out["method"] = ("per seed: UA/WA/F1 of the confusion matrix summed over its folds (every held-out "
                     "prediction once); mean and population std over seeds")
    return out


def cross_validate(inputs: Inputs, head: str, cfg: TrainConfig, k: int | None = None,
                   seeds: Sequence[int] = (0,), device: str = "cpu", precompute: bool = True,
                   on_job_done: Callable[[int], None] | None = None, workers: int = 1) -> CVResult:
    """Speaker-independent CV of ``head`` for every seed (optionally ``k`` training utterances per class).

    All (seed, fold) jobs of a pooled head train together (:func:`train.trainer.train_pooled`); those of a
    frame-level head go to ``workers`` processes (:mod:`train.parallel`).
    """
    start = time.perf_counter()
    seeds, seed_note = dedupe_seeds(seeds)
    if not seeds:
        raise ValueError("at least one seed is needed")
    folds, notes = speaker_independent_folds(inputs)
    if seed_note:
        notes.append(seed_note)
    warnings = fold_warnings(inputs, folds)
    jobs: list[Job] = []
    job_folds: list[Fold] = []
    for seed in seeds:
        for f in folds:
            jobs.append(Job(subsample(inputs, f.train, k, seed), seed, f.index, fold=f.name))
            job_folds.append(f)
    models = fit_jobs(inputs, head, cfg, jobs, device, precompute=precompute, on_done=on_job_done, workers=workers)
    fit_seconds = time.perf_counter() - start
    n_classes = len(inputs.classes)
    total_cm = np.zeros((n_classes, n_classes), np.int64)
    seed_cm = {s: np.zeros((n_classes, n_classes), np.int64) for s in seeds}
    fold_rows: list[dict[str, Any]] = []
    pred_parts: dict[str, list[np.ndarray]] = {"row": [], "fold": [], "seed": [], "y": [], "pred": [], "proba": []}
    for job, f, model in zip(jobs, job_folds, models):
        proba = predict_proba(model, inputs, f.test, device, precompute=precompute, eval_batch=cfg.eval_batch)
        if not np.isfinite(proba).all():
            raise TrainingDiverged(f"head {head!r}, {job.describe()}: the predictions on the held-out session "
                                   f"are NaN/Inf although training stayed finite; no score is reported: lower "
                                   f"the learning rate (--lr, now {cfg.lr:g}) or check the store's features")
        pred = proba.argmax(1)
        y = inputs.y[f.test]
        cm = confusion_matrix(y, pred, n_classes)
        total_cm += cm
        seed_cm[job.seed] += cm
        fold_rows.append({"seed": job.seed, "fold": f.name, "n_train": int(len(job.train)),
                          "n_test": int(len(f.test)), "epochs": model.epochs, "steps": model.steps,
                          "train_counts": class_counts(inputs, job.train), **scores_from_confusion(cm)})
        pred_parts["row"].append(f.test)
        pred_parts["fold"].append(np.full(len(f.test), f.name, dtype=object))
        pred_parts["seed"].append(np.full(len(f.test), job.seed))
        pred_parts["y"].append(y)
        pred_parts["pred"].append(pred)
        pred_parts["proba"].append(proba)
    predictions = {key: np.concatenate(v) for key, v in pred_parts.items()}
    seconds = time.perf_counter() - start
    return CVResult(head=head, store=inputs.name, k=k, seeds=seeds, config=cfg, classes=inputs.classes,
                    folds=fold_rows, confusion=total_cm, predictions=predictions,
                    summary=summarize(fold_rows, seeds), seconds=seconds, device=device, notes=notes,
                    pooled=pooled_scores(seed_cm), warnings=warnings,
                    fit_seconds=fit_seconds, eval_seconds=seconds - fit_seconds)


def parse_ks(text: str | Sequence[Any]) -> list[int | None]:
    """``"25,50,all"`` -> ``[25, 50, None]``."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[int | None] = []
    for item in items:
        item = str(item).strip().lower()
        if not item:
            continue
        if item in ("all", "none", "full"):
            out.append(None)
        else:
            k = int(item)
            if k <= 0:
                raise ValueError(f"k must be positive, got {k}")
            out.append(k)
    if not out:
        raise ValueError(f"no k values in {text!r}")
    return out


def resolve_ks(inputs: Inputs, ks: Sequence[int | None]) -> tuple[list[int | None], list[str]]:
    """The k values worth running, and a note for each one skipped.

    A k is skipped when no class of any fold's training set has more than k utterances: sampling k per
    class would then return every training utterance, the same run as ``all``.
    """
    folds, _ = speaker_independent_folds(inputs)
    largest = max(max(class_counts(inputs, f.train).values()) for f in folds)
    kept: list[int | None] = []
    notes: list[str] = []
    for k in ks:
        if k is not None and k >= largest:
            notes.append(f"k={k} skipped: no class has more than {largest} training utterances in any fold, "
                         f"so {k} per class would be all the data")
            continue
        if k not in kept:
            kept.append(k)
    return kept, notes


@dataclass(eq=False)
class CurveResult:
    """A learning curve: one :class:`CVResult` per k (in order), and notes on skipped k values."""

    head: str
    store: str
    results: list[CVResult]
    notes: list[str]

    def rows(self) -> list[dict[str, Any]]:
        """One row per (k, seed): store, head, k, seed, n_train (mean over folds), ua, wa, f1 (fold means),
        ua_pooled, wa_pooled, f1_pooled (that seed's pooled scores, :func:`pooled_scores`), run_dir."""
        out = []
        for r in self.results:
            for s in r.seeds:
                fs = [f for f in r.folds if f["seed"] == s]
                out.append({"store": r.store, "head": r.head, "k": "all" if r.k is None else r.k, "seed": s,
                            "n_train": float(np.mean([f["n_train"] for f in fs])),
                            **{m: float(np.mean([f[m] for f in fs])) for m in METRICS},
                            **{f"{m}_pooled": float(r.pooled["per_seed"][m][str(s)]) for m in METRICS},
                            "run_dir": str(r.run_dir) if r.run_dir is not None else ""})
        return out


def learning_curve(inputs: Inputs, head: str, cfg: TrainConfig, ks: Sequence[int | None] = DEFAULT_KS,
                   seeds: Sequence[int] = (0,), device: str = "cpu",
                   run: Callable[[int | None], CVResult] | None = None, workers: int = 1) -> CurveResult:
    """:func:`cross_validate` for each k worth running (see :func:`resolve_ks`).

    ``run(k)`` replaces the call (the CLI passes one that also writes and reuses run folders).
    """
    kept, notes = resolve_ks(inputs, ks)
    if run is None:
        def run(k: int | None) -> CVResult:
            return cross_validate(inputs, head, cfg, k=k, seeds=seeds, device=device, workers=workers)
    return CurveResult(head=head, store=inputs.name, results=[run(k) for k in kept], notes=notes)

"""Evaluation protocols: speaker-independent cross-validation, k-per-class small data, learning curves,
cross-corpus tests (train on some corpora, test on others: :func:`cross_corpus`, :func:`leave_one_corpus_out`).

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
averages over fewer classes; non-finite predictions stop the run (:class:`train.jobs.TrainingDiverged`).
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
from .heads import head_config
from .layers import layer_weights_of, mean_layer_weights
from .metrics import confusion_matrix, mean_std, scores_from_confusion
from .metrics import not_scored as unscored
from .fitting import JobGroup, fit_groups, fit_jobs
from .jobs import FittedModel, Job, TrainingDiverged
from .trainer import predict_proba

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
    out.update(mean_layer_weights(folds))
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


@dataclass(eq=False)
class CVPlan:
    """One cross-validation experiment, planned but not fitted: its (seed, fold) jobs and what the report
    needs besides the models (:func:`plan_cv`, :func:`score_cv`)."""

    inputs: Inputs
    head: str
    cfg: TrainConfig
    k: int | None
    seeds: tuple[int, ...]
    jobs: list[Job]
    job_folds: list[Fold]
    notes: list[str]
    warnings: list[str]

    def group(self) -> JobGroup:
        return JobGroup(self.inputs, self.head, self.cfg, self.jobs)


def plan_cv(inputs: Inputs, head: str, cfg: TrainConfig, k: int | None = None,
            seeds: Sequence[int] = (0,)) -> CVPlan:
    """The jobs of a speaker-independent CV of ``head``: one per (seed, fold), ``k`` per class when given."""
    cfg = head_config(head, cfg)      # a preset head (bimodal-xu) records the values it really trains with
    seeds, seed_note = dedupe_seeds(seeds)
    if not seeds:
        raise ValueError("at least one seed is needed")
    folds, notes = speaker_independent_folds(inputs)
    if seed_note:
        notes.append(seed_note)
    jobs: list[Job] = []
    job_folds: list[Fold] = []
    for seed in seeds:
        for f in folds:
            jobs.append(Job(subsample(inputs, f.train, k, seed), seed, f.index, fold=f.name))
            job_folds.append(f)
    return CVPlan(inputs, head, cfg, k, tuple(seeds), jobs, job_folds, notes, fold_warnings(inputs, folds))


def score_cv(plan: CVPlan, models: Sequence[FittedModel], device: str = "cpu", precompute: bool = True,
             fit_seconds: float = 0.0) -> CVResult:
    """Predict every held-out session with its job's model and score the run (fold rows, pooled scores)."""
    start = time.perf_counter()
    inputs, head, cfg, seeds = plan.inputs, plan.head, plan.cfg, plan.seeds
    n_classes = len(inputs.classes)
    total_cm = np.zeros((n_classes, n_classes), np.int64)
    seed_cm = {s: np.zeros((n_classes, n_classes), np.int64) for s in seeds}
    fold_rows: list[dict[str, Any]] = []
    pred_parts: dict[str, list[np.ndarray]] = {"row": [], "fold": [], "seed": [], "y": [], "pred": [], "proba": []}
    for job, f, model in zip(plan.jobs, plan.job_folds, models):
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
                          "train_counts": class_counts(inputs, job.train), **scores_from_confusion(cm),
                          **layer_weights_of(model)})
        pred_parts["row"].append(f.test)
        pred_parts["fold"].append(np.full(len(f.test), f.name, dtype=object))
        pred_parts["seed"].append(np.full(len(f.test), job.seed))
        pred_parts["y"].append(y)
        pred_parts["pred"].append(pred)
        pred_parts["proba"].append(proba)
    predictions = {key: np.concatenate(v) for key, v in pred_parts.items()}
    eval_seconds = time.perf_counter() - start
    return CVResult(head=head, store=inputs.name, k=plan.k, seeds=seeds, config=cfg, classes=inputs.classes,
                    folds=fold_rows, confusion=total_cm, predictions=predictions,
                    summary=summarize(fold_rows, seeds), seconds=fit_seconds + eval_seconds, device=device,
                    notes=list(plan.notes), pooled=pooled_scores(seed_cm), warnings=list(plan.warnings),
                    fit_seconds=fit_seconds, eval_seconds=eval_seconds)


def cross_validate(inputs: Inputs, head: str, cfg: TrainConfig, k: int | None = None,
                   seeds: Sequence[int] = (0,), device: str = "cpu", precompute: bool = True,
                   on_job_done: Callable[[int], None] | None = None, workers: int = 1) -> CVResult:
    """Speaker-independent CV of ``head`` for every seed (optionally ``k`` training utterances per class).

    All (seed, fold) jobs of a pooled head train together (:func:`train.trainer.train_pooled`); those of a
    frame-level head go to ``workers`` processes (:mod:`train.parallel`).
    """
    return cross_validate_many([plan_cv(inputs, head, cfg, k, seeds)], device, precompute, on_job_done, workers)[0]


def cross_validate_many(plans: Sequence[CVPlan], device: str = "cpu", precompute: bool = True,
                        on_job_done: Callable[[int], None] | None = None, workers: int = 1,
                        on_result: Callable[[int, CVResult], None] | None = None) -> list[CVResult]:
    """Every planned CV at once: the frame-level jobs of all of them share one pool of ``workers`` processes
    (:func:`train.fitting.fit_groups`); results in plan order, each the same as :func:`cross_validate` would
    give (a job's numbers do not depend on where it runs).

    Each plan is scored as soon as its last job is fitted, while the pool works on the others, and
    ``on_result(i, result)`` is then called for plan ``i`` (in the order the plans finish).

    Timing: with more than one plan, a run's ``fit_seconds`` is the sum of its own jobs' fit times (its
    jobs ran interleaved with the others'), and a note says so.
    """
    results: list[CVResult | None] = [None] * len(plans)
    start = time.perf_counter()

    def score(i: int, models: list[FittedModel]) -> None:
        plan = plans[i]
        if len(plans) == 1:
            r = score_cv(plan, models, device, precompute, fit_seconds=time.perf_counter() - start)
        else:
            r = score_cv(plan, models, device, precompute, fit_seconds=sum(m.seconds for m in models))
            r.notes.append(f"fitted together with {len(plans) - 1} other run(s) in one pool of {max(1, workers)} "
                           f"worker(s): fit_seconds is the sum of this run's own job times")
        results[i] = r
        if on_result is not None:
            on_result(i, r)

    fit_groups([p.group() for p in plans], device, precompute, on_job_done, workers, on_group=score)
    return results  # type: ignore[return-value]


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


def largest_class(inputs: Inputs) -> int:
    """The most training utterances any class has in any fold (``k`` at or above it means all the data)."""
    folds, _ = speaker_independent_folds(inputs)
    return max(max(class_counts(inputs, f.train).values()) for f in folds)


def resolve_ks(inputs: Inputs, ks: Sequence[int | None]) -> tuple[list[int | None], list[str]]:
    """The k values worth running, and a note for each one skipped.

    A k is skipped when no class of any fold's training set has more than k utterances: sampling k per
    class would then return every training utterance, the same run as ``all``.
    """
    largest = largest_class(inputs)
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
                   seeds: Sequence[int] = (0,), device: str = "cpu", workers: int = 1) -> CurveResult:
    """:func:`cross_validate` for each k worth running (see :func:`resolve_ks`), fitted together
    (:func:`cross_validate_many`). ``ser-train curve`` goes through :class:`train.experiment.RunCache`
    instead, which also writes the run folders."""
    kept, notes = resolve_ks(inputs, ks)
    plans = [plan_cv(inputs, head, cfg, k, seeds) for k in kept]
    return CurveResult(head=head, store=inputs.name, results=cross_validate_many(plans, device, workers=workers),
                       notes=notes)


# -- cross-corpus evaluation -------------------------------------------------------------------------------
@dataclass(eq=False)
class CrossCorpusResult(CVResult):
    """A cross-corpus run (:func:`cross_corpus`): one model per seed fitted on every labelled utterance of
    the training corpora (or ``k`` per class of them), scored on every test corpus.

    The :class:`CVResult` fields keep their meaning with "fold" read as "test corpus": ``folds`` holds one
    row per (seed, test corpus) with ``n_test`` its scored utterances; ``summary`` averages those rows over
    the test corpora (``std_over``: ``seeds``, ``test corpora`` or ``none``); ``pooled`` scores all scored
    test predictions of a seed together (several test corpora joined); ``confusion`` is summed over test
    corpora and seeds; ``predictions["row"]`` indexes ``test`` and ``predictions["fold"]`` names the corpus.

    Extra attributes:
        test: the test :class:`~train.data.Inputs`, encoded with the training classes (``y = -1``: not scored).
        train_corpora, test_corpora: corpus names (:func:`train.data.corpus_name`; a join's ``corpora``).
        not_scored: ``{"unlabelled": n, "outside_classes": {label: n}}``, the test rows left out of every score.
    """

    test: Inputs | None = None
    train_corpora: tuple[str, ...] = ()
    test_corpora: tuple[str, ...] = ()
    not_scored: dict[str, Any] = field(default_factory=dict)

    def metrics_extra(self) -> dict[str, Any]:
        """What ``metrics.json`` adds to the cv keys for a cross-corpus run."""
        assert self.test is not None
        return {"protocol": "cross-corpus", "train_corpora": list(self.train_corpora),
                "test_corpora": list(self.test_corpora), "not_scored": self.not_scored,
                "n_scored": int(len(self.test.labelled)), "n_test_rows": int(self.test.n)}


def corpus_rows(store: Any) -> tuple[tuple[str, ...], np.ndarray]:
    """The corpora of a store and int64 [N] the corpus index of each row.

    A store joined by :func:`train.data.combine_stores` names its corpora in ``provenance["corpora"]`` and
    prefixes every utt_id with ``<corpus>/``; any other store is one corpus (:func:`train.data.corpus_name`).
    """
    from .data import corpus_name

    names = store.provenance.get("corpora") if store.provenance.get("combined_from") else None
    if not names:
        return (corpus_name(store),), np.zeros(store.n, np.int64)
    ids = store.utt_ids.astype(str)
    index = np.full(store.n, -1, np.int64)
    for i, name in enumerate(names):
        index[np.char.startswith(ids, f"{name}/")] = i
    return tuple(str(n) for n in names), index


def _unprefixed(values: np.ndarray, names: Sequence[str], index: np.ndarray, joined: bool) -> list[str]:
    """``values`` (utt_ids or speakers) without the ``<corpus>/`` prefix a join put on them."""
    if not joined:
        return [str(v) for v in values]
    return [str(v)[len(names[i]) + 1:] for v, i in zip(values, index)]


def overlap_warnings(train: Inputs, test: Inputs, scored: np.ndarray) -> list[str]:
    """One line per (test corpus, training corpus) pair sharing utterance ids or speaker names.

    Compared: the labelled training rows and the ``scored`` test rows, by the ids and speakers the corpora
    themselves use (without a join's ``<corpus>/`` prefix). A shared id suggests the same recording in both
    (the score is then not cross-corpus); a shared speaker name may be the same person (not
    speaker-independent) or a coincidence of numbering, which the message says.
    """
    out = []
    tr_names, tr_idx = corpus_rows(train.audio)
    te_names, te_idx = corpus_rows(test.audio)
    lab = train.labelled
    tr_ids = _unprefixed(train.audio.utt_ids[lab], tr_names, tr_idx[lab], len(tr_names) > 1)
    tr_spk = _unprefixed(train.audio.speakers[lab], tr_names, tr_idx[lab], len(tr_names) > 1)
    te_ids = _unprefixed(test.audio.utt_ids[scored], te_names, te_idx[scored], len(te_names) > 1)
    te_spk = _unprefixed(test.audio.speakers[scored], te_names, te_idx[scored], len(te_names) > 1)
    for j, tname in enumerate(te_names):
        sel = te_idx[scored] == j
        ids_j = {u for u, s in zip(te_ids, sel) if s}
        spk_j = {u for u, s in zip(te_spk, sel) if s}
        for i, rname in enumerate(tr_names):
            ids_i = {u for u, c in zip(tr_ids, tr_idx[lab]) if c == i}
            spk_i = {u for u, c in zip(tr_spk, tr_idx[lab]) if c == i}
            shared = sorted(ids_j & ids_i)
            if shared:
                out.append(f"test corpus {tname}: {len(shared)} of its {len(ids_j)} scored utterance ids also occur "
                           f"in training corpus {rname} (e.g. {shared[0]!r}): if they are the same recordings the "
                           f"test is not cross-corpus and its scores are optimistic; test on another corpus")
            shared = sorted(spk_j & spk_i)
            if shared:
                out.append(f"test corpus {tname}: speakers {', '.join(map(repr, shared[:3]))}"
                           f"{' …' if len(shared) > 3 else ''} ({len(shared)}) also occur in training corpus "
                           f"{rname}: if they are the same people the test is not speaker-independent (names "
                           f"that merely coincide, such as numbered speakers, do no harm)")
    return out


def check_same_features(train: Inputs, test: Inputs) -> None:
    """Refuse (``StoreError``) test stores whose features differ from the training stores'.

    Compared like a model bundle is at predict time (:func:`train.bundle.check_provenance`): the
    :class:`~ser_common.identity.FeatureIdentity` of each store in the ``features`` scope (encoder weights,
    layer, crop, rates, dims, …; not the manifest). Audio is compared with audio, text with text; a text
    store on one side only is refused too.
    """
    from ser_common.identity import FeatureIdentity, format_diff
    from ser_common.store import StoreError

    if (train.text is None) != (test.text is None):
        have, lack = ("training", "test") if test.text is None else ("test", "training")
        raise StoreError(f"{test.audio.path}: the {have} stores have a text store and the {lack} stores do not; "
                         f"give one --test-text per --test-store exactly when --text is given")
    for a, b in zip(train.stores, test.stores):
        diff = FeatureIdentity.from_provenance(a.provenance).diff(FeatureIdentity.from_provenance(b.provenance),
                                                                  scope="features")
        if diff:
            raise StoreError(f"{b.path}: cannot test on it: its features differ from the training stores' "
                             f"({format_diff(diff, a.path.name, b.path.name)}); extract the test corpus with "
                             f"the training stores' settings (ser-extract --like) or test on a store that has them")


def cross_corpus(train: Inputs, test: Inputs, head: str, cfg: TrainConfig, k: int | None = None,
                 seeds: Sequence[int] = (0,), device: str = "cpu", precompute: bool = True,
                 on_job_done: Callable[[int], None] | None = None, workers: int = 1) -> CrossCorpusResult:
    """Train ``head`` on every labelled row of ``train`` (``k`` per class with ``k``), test on ``test``.

    One model per seed (:func:`train.fitting.fit_jobs`), scored on each test corpus of ``test`` on its own
    (a row of ``folds``) and on all of them together (``pooled``). The classes are the training classes:
    ``test`` is re-encoded with them, and its rows with another label (or none) are not scored (counted in
    ``not_scored``, with a warning for other labels). Refused: fewer than two training classes, test
    stores of other features (:func:`check_same_features`), no scorable test row. Warned: a training class
    with no test utterance in a test corpus (its UA/F1 average over fewer classes), a test corpus with no
    scorable row, shared utterance ids or speaker names (:func:`overlap_warnings`).
    """
    from .data import encode_labels

    start = time.perf_counter()
    cfg = head_config(head, cfg)      # a preset head (bimodal-xu) records the values it really trains with
    seeds, seed_note = dedupe_seeds(seeds)
    if not seeds:
        raise ValueError("at least one seed is needed")
    check_classes(train, "train")
    check_same_features(train, test)
    test = Inputs(audio=test.audio, text=test.text, classes=train.classes,
                  y=encode_labels(test.audio.labels, train.classes))
    classes = train.classes
    tr_names, _ = corpus_rows(train.audio)
    te_names, te_idx = corpus_rows(test.audio)
    scored = test.labelled
    not_scored = unscored(test.audio.labels, test.y)
    if len(scored) == 0:
        raise ValueError(f"{test.audio.path}: no test utterance carries one of the training classes "
                         f"({', '.join(classes)}); its labels: {', '.join(not_scored['outside_classes']) or 'none'}; "
                         f"nothing to score: test on a labelled corpus of these classes")
    notes = [seed_note] if seed_note else []
    warnings: list[str] = []
    outside = not_scored["outside_classes"]
    if outside:
        warnings.append(f"{sum(outside.values())} test utterances labelled {', '.join(outside)} are not among the "
                        f"training classes ({', '.join(classes)}) and are not scored")
    if not_scored["unlabelled"]:
        notes.append(f"{not_scored['unlabelled']} unlabelled test utterances are not scored")
    for j, name in enumerate(te_names):
        present = set(test.y[scored[te_idx[scored] == j]].tolist())
        if not present:
            warnings.append(f"test corpus {name}: no utterance carries a training class: it is not scored")
            continue
        missing = [classes[c] for c in range(len(classes)) if c not in present]
        if missing:
            warnings.append(f"test corpus {name}: no test utterance of {', '.join(missing)}: its UA and F1 average "
                            f"over the other {len(present)} classes"
                            + (" (pooled scores count every class of any test corpus)" if len(te_names) > 1 else ""))
    warnings += overlap_warnings(train, test, scored)
    jobs = [Job(subsample(train, train.labelled, k, seed), seed, 0) for seed in seeds]
    models = fit_jobs(train, head, cfg, jobs, device, precompute=precompute, on_done=on_job_done, workers=workers)
    fit_seconds = time.perf_counter() - start
    n_classes = len(classes)
    total_cm = np.zeros((n_classes, n_classes), np.int64)
    seed_cm: dict[int, np.ndarray] = {}
    rows_out: list[dict[str, Any]] = []
    parts: dict[str, list[np.ndarray]] = {"row": [], "fold": [], "seed": [], "y": [], "pred": [], "proba": []}
    corpus_of = np.array(te_names, dtype=object)[te_idx[scored]]
    for job, model in zip(jobs, models):
        proba = predict_proba(model, test, scored, device, precompute=precompute, eval_batch=cfg.eval_batch)
        if not np.isfinite(proba).all():
            raise TrainingDiverged(f"head {head!r}, {job.describe()}: the predictions on the test corpora are "
                                   f"NaN/Inf although training stayed finite; no score is reported: lower the "
                                   f"learning rate (--lr, now {cfg.lr:g}) or check the stores' features")
        pred = proba.argmax(1)
        y = test.y[scored]
        seed_cm[job.seed] = confusion_matrix(y, pred, n_classes)
        total_cm += seed_cm[job.seed]
        for j, name in enumerate(te_names):
            sel = te_idx[scored] == j
            if not sel.any():
                continue
            rows_out.append({"seed": job.seed, "fold": name, "n_train": int(len(job.train)),
                             "n_test": int(sel.sum()), "epochs": model.epochs, "steps": model.steps,
                             "train_counts": class_counts(train, job.train),
                             **scores_from_confusion(confusion_matrix(y[sel], pred[sel], n_classes)),
                             **layer_weights_of(model)})
        parts["row"].append(scored)
        parts["fold"].append(corpus_of)
        parts["seed"].append(np.full(len(scored), job.seed))
        parts["y"].append(y)
        parts["pred"].append(pred)
        parts["proba"].append(proba)
    summary = summarize(rows_out, seeds)
    if len(seeds) == 1:
        summary["std_over"] = "test corpora" if summary["n_folds"] > 1 else "none (one seed, one test corpus)"
    seconds = time.perf_counter() - start
    return CrossCorpusResult(
        head=head, store=f"{'+'.join(tr_names)}-to-{'+'.join(te_names)}", k=k, seeds=seeds, config=cfg,
        classes=classes, folds=rows_out, confusion=total_cm,
        predictions={key: np.concatenate(v) for key, v in parts.items()}, summary=summary, seconds=seconds,
        device=device, notes=notes, pooled=pooled_scores(seed_cm), warnings=warnings, fit_seconds=fit_seconds,
        eval_seconds=seconds - fit_seconds, test=test, train_corpora=tr_names, test_corpora=te_names,
        not_scored=not_scored)


def leave_one_corpus_out(audio: Sequence[Any], text: Sequence[Any] | None, head: str, cfg: TrainConfig,
                         k: int | None = None, seeds: Sequence[int] = (0,), device: str = "cpu",
                         precompute: bool = True, workers: int = 1, intersect: bool = False,
                         on_result: Callable[[CrossCorpusResult, Inputs], None] | None = None,
                         on_job_done: Callable[[int], None] | None = None) -> list[CrossCorpusResult]:
    """:func:`cross_corpus` once per corpus: train on the other corpora joined, test on it.

    ``audio``: one loaded store (:class:`~train.data.StoreData`) per corpus, at least two; ``text``: ``None``
    or one text store per audio store, in the same order. ``on_result(result, train_inputs)`` is called after
    each held-out corpus (the CLI writes its run folder then, so the joined training stores need not be kept).
    """
    from .data import combine_stores, make_inputs

    audio = list(audio)
    if len(audio) < 2:
        raise ValueError(f"leave-one-corpus-out needs at least two corpora (one store each), got {len(audio)}; "
                         f"with one corpus use cross-validation (ser-train cv)")
    if text is not None and len(text) != len(audio):
        raise ValueError(f"{len(audio)} audio stores but {len(text)} text stores: give one text store per audio "
                         f"store, in the same order")
    out = []
    for i in range(len(audio)):
        rest = [j for j in range(len(audio)) if j != i]
        train = make_inputs(combine_stores([audio[j] for j in rest]),
                            combine_stores([text[j] for j in rest]) if text is not None else None,
                            intersect=intersect)
        test = make_inputs(audio[i], text[i] if text is not None else None, classes=train.classes,
                           intersect=intersect)
        result = cross_corpus(train, test, head, cfg, k=k, seeds=seeds, device=device, precompute=precompute,
                              on_job_done=on_job_done, workers=workers)
        if on_result is not None:
            on_result(result, train)
        out.append(result)
    return out

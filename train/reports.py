"""Human-readable results: the printed CV summary, the learning-curve CSV and figure, forecasts and backtests,
the rows of loco.json (the Markdown files are :mod:`train.markdown`'s)."""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .forecast import MAX_EXTRAPOLATION, Backtest, Forecast, backtest, forecast_size
from .markdown import pct, pm
from .protocol import METRICS, CrossCorpusResult, CVResult

CURVE_COLUMNS = ("store", "head", "schedule", "k", "seed", "n_train", "ua", "wa", "f1", "ua_pooled", "wa_pooled",
                 "f1_pooled", "run_dir")
"""curve.csv: one row per (store, schedule, k, seed); ``ua``/``wa``/``f1`` are that seed's fold means,
``*_pooled`` the scores of all its held-out predictions together (:func:`train.protocol.pooled_scores`)."""
CURVE_FLOATS = ("n_train", "ua", "wa", "f1", "ua_pooled", "wa_pooled", "f1_pooled")


def describe_schedule(result: CVResult) -> str:
    cfg = result.config
    epochs = sorted({f["epochs"] for f in result.folds})
    ep = f"{epochs[0]}" if len(epochs) == 1 else f"{epochs[0]}-{epochs[-1]}"
    return (f"schedule {cfg.schedule}: {ep} epochs, lr {cfg.lr:g}, batch {cfg.batch_size}, "
            f"dropout {cfg.dropout:g}{'' if cfg.normalize else ', no normalisation'}")


def format_cv_summary(result: CVResult) -> str:
    """A plain-text table: one line per fold (averaged over seeds), the mean ± std line (fold means), the
    pooled line (all held-out predictions together; ± std over seeds when there are several), then the
    notes and warnings."""
    s = result.summary
    k = "all training data" if result.k is None else f"k={result.k} per class"
    cross = isinstance(result, CrossCorpusResult)   # "fold" = test corpus
    lines = [f"{result.head} on {result.store} ({k}; seeds {','.join(map(str, result.seeds))}; "
             f"{describe_schedule(result)}; device {result.device}; {result.seconds:.1f} s)",
             f"{'test corpus' if cross else 'fold':<12}{'n_train':>8}{'n_test':>8}{'UA':>8}{'WA':>8}{'F1':>8}"]
    if cross:
        lines.insert(1, f"trained on {' + '.join(result.train_corpora)}, tested on each of "
                        f"{', '.join(result.test_corpora)} (classes {', '.join(result.classes)})")
    names = list(dict.fromkeys(f["fold"] for f in result.folds))
    for name in names:
        fs = [f for f in result.folds if f["fold"] == name]
        lines.append(f"{name:<12}{np.mean([f['n_train'] for f in fs]):>8.0f}{fs[0]['n_test']:>8d}"
                     + "".join(f"{pct(np.mean([f[m] for f in fs])):>8}" for m in METRICS))
    lines.append(f"{'mean ± std':<28}" + "  ".join(f"{m.upper()} {pm(s[f'{m}_mean'], s[f'{m}_std'])}"
                                                  for m in METRICS) + f"  (std over {s['std_over']})")
    p = result.pooled
    if p:
        several = p.get("std_over") == "seeds"
        lines.append(f"{'pooled':<28}" + "  ".join(
            f"{m.upper()} {pm(p[m], p[f'{m}_std']) if several else pct(p[m])}" for m in METRICS)
            + f"  (all {p['n_predictions']} {'test' if cross else 'held-out'} predictions together"
            + ("; per seed, mean ± std over seeds)" if several else ")"))
    for note in result.notes:
        lines.append(f"note: {note}")
    for warning in result.warnings:
        lines.append(f"warning: {warning}")
    if result.run_dir is not None:
        lines.append(f"run folder: {result.run_dir}")
    return "\n".join(lines)


# -- learning curves ---------------------------------------------------------------------------------------
def write_curve_csv(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(CURVE_COLUMNS), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, **{m: f"{r[m]:.6f}" for m in (*METRICS, *(f"{x}_pooled" for x in METRICS)) if m in r},
                        "n_train": f"{r['n_train']:.1f}"})
    return path


def read_curve_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a curve.csv (:data:`CURVE_FLOATS` as floats; files written before the pooled columns read too)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such curve file (write one with `ser-train curve`)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = {"store", "n_train", "ua"} - set(rows[0] if rows else {})
    if not rows or missing:
        raise ValueError(f"{path}: not a learning-curve CSV (missing columns {sorted(missing) or 'rows'})")
    for r in rows:
        for m in CURVE_FLOATS:
            if r.get(m) not in (None, ""):
                r[m] = float(r[m])
    return rows


def fill_pooled_from_runs(rows: Sequence[dict[str, Any]], base: str | os.PathLike) -> int:
    """Give rows of an old curve.csv (written before the ``*_pooled`` columns) their pooled UA/WA/F1, from the
    ``predictions.csv`` of the run folder each row names (``run_dir``, relative to ``base`` (the curve's
    folder) or to the working directory): the scores of the confusion matrix of that seed's held-out
    predictions, summed over its folds, as :func:`train.protocol.pooled_scores` computes them. Rows whose
    run folder or predictions are missing are left as they are. Returns the number of rows filled in place.
    """
    from .metrics import scores_from_confusion

    cache: dict[Path, dict[str, dict[str, float]]] = {}
    filled = 0
    for r in rows:
        if r.get("ua_pooled") not in (None, "") or not r.get("run_dir"):
            continue
        found = [d / "predictions.csv" for d in (Path(base) / r["run_dir"], Path(r["run_dir"]))
                 if (d / "predictions.csv").is_file()]
        if not found:
            continue
        path = found[0]
        if path not in cache:
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                classes = [c[2:] for c in reader.fieldnames or [] if c.startswith("p_")]
                index = {c: i for i, c in enumerate(classes)}
                cms: dict[str, np.ndarray] = {}
                try:
                    for p in reader:
                        cm = cms.setdefault(str(p["seed"]), np.zeros((len(classes), len(classes)), np.int64))
                        cm[index[p["label"]], index[p["pred"]]] += 1
                except KeyError as e:
                    raise ValueError(f"{path}: not a predictions.csv of a run folder (unknown class or column "
                                     f"{e}); rerun `ser-train curve`") from None
            cache[path] = {seed: scores_from_confusion(cm) for seed, cm in cms.items()}
        seed = str(int(float(r["seed"]))) if r.get("seed") not in (None, "") else ""
        scores = cache[path].get(seed)
        if scores is None:
            continue
        r.update({f"{m}_pooled": scores[m] for m in METRICS})
        filled += 1
    return filled


def curve_points(rows: Sequence[dict[str, Any]], metric: str = "ua") -> dict[str, list[tuple[str, float, float, float]]]:
    """Per store: ``(k, n_train, mean, std)`` of ``metric`` (``ua`` = fold means, ``ua_pooled`` = pooled)
    in order of size (mean/std over seeds). Stores whose rows lack ``metric`` (old CSVs) are left out."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r.get(metric) not in (None, ""):
            groups[(r["store"], str(r["k"]))].append(r)
    out: dict[str, list[tuple[str, float, float, float]]] = defaultdict(list)
    for (store, k), rs in groups.items():
        ua = np.array([float(r[metric]) for r in rs])
        out[store].append((k, float(np.mean([float(r["n_train"]) for r in rs])), float(ua.mean()), float(ua.std())))
    for store in out:
        out[store].sort(key=lambda p: p[1])
    return dict(out)


def plot_curve(rows: Sequence[dict[str, Any]], path: str | os.PathLike, title: str = "") -> Path:
    """UA vs training-set size (log x), one line per store: the fold-mean UA with its ± std band over seeds
    (solid), and the pooled UA of all held-out predictions (dashed, same colour) where the rows have it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import NullFormatter, ScalarFormatter

    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4))
    ticks: set[float] = set()
    pooled = curve_points(rows, "ua_pooled")
    for store, pts in curve_points(rows).items():
        n = np.array([p[1] for p in pts])
        mu = 100 * np.array([p[2] for p in pts])
        sd = 100 * np.array([p[3] for p in pts])
        ticks.update(round(float(x)) for x in n)
        line, = ax.plot(n, mu, marker="o", label=f"{store} (fold mean)" if store in pooled else store)
        ax.fill_between(n, mu - sd, mu + sd, color=line.get_color(), alpha=0.2)
        if store in pooled:
            pp = pooled[store]
            ax.plot([p[1] for p in pp], [100 * p[2] for p in pp], linestyle="--", marker=".",
                    color=line.get_color(), label=f"{store} (pooled)")
        for (k, x, y, _) in pts:
            ax.annotate(f"k={k}", (x, 100 * y), textcoords="offset points", xytext=(3, -10), fontsize=7)
    ax.set_xscale("log")
    ax.set_xticks(sorted(ticks))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("training utterances (all classes, mean over folds)")
    ax.set_ylabel("UA (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


FORECAST_METRICS = ("ua_pooled", "ua")
"""Curve columns a forecast can fit: ``ua_pooled`` (default; all held-out predictions of a run together,
honest also when a fold's test session lacks a class) or ``ua`` (the mean of the per-fold UAs)."""


def describe_metric(metric: str, series: dict[str, tuple[str, list[float], list[float]]] | None = None) -> str:
    """What ``--metric`` fits, for the line printed above forecasts and backtests; with ``series``
    (:func:`curve_series`) the metric its lines actually use (``ua`` where the curve has no pooled UA)."""
    used = {m for m, _, _ in (series or {}).values()}
    if metric == "ua_pooled" and used == {"ua"}:
        return "fitted on the fold-mean UA (the curve has no pooled UA)"
    if metric == "ua_pooled" and len(used) > 1:
        return "fitted on pooled UA where the curve has it, else on the fold-mean UA (see the note)"
    if metric == "ua_pooled":
        return ("fitted on pooled UA (all held-out predictions of each run together: honest also when a fold "
                "lacks a class; --metric ua for the fold mean)")
    return "fitted on the fold-mean UA (the paper's protocol; --metric ua_pooled for the pooled UA)"


def curve_series(rows: Sequence[dict[str, Any]], metric: str = "ua_pooled"
                 ) -> tuple[dict[str, tuple[str, list[float], list[float]]], list[str]]:
    """Per store of a curve (in order of first appearance): ``(metric used, sizes, UA values)``, one entry per
    row; and a note for each store that falls back from ``ua_pooled`` to ``ua`` because its rows lack the
    pooled column (curve.csv files written before pooled scores were recorded)."""
    if metric not in FORECAST_METRICS:
        raise ValueError(f"unknown forecast metric {metric!r}: choose one of {', '.join(FORECAST_METRICS)}")
    by_store: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_store[r["store"]].append(r)
    out: dict[str, tuple[str, list[float], list[float]]] = {}
    fallback: list[str] = []
    for store, rs in by_store.items():
        used = metric
        if metric == "ua_pooled" and any(r.get("ua_pooled") in (None, "") for r in rs):
            used = "ua"
            fallback.append(store)
        out[store] = (used, [float(r["n_train"]) for r in rs], [float(r[used]) for r in rs])
    notes = [f"no pooled UA in the curve for {', '.join(fallback)} (written before pooled scores were recorded): "
             f"fitted on the fold-mean UA instead; rerun `ser-train curve` for pooled figures"] if fallback else []
    return out, notes


def curve_ks(rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Per store: its k values in order of size, as ``--ks`` takes them (``"25,50,125,all"``)."""
    return {store: ",".join(p[0] for p in pts) for store, pts in curve_points(rows).items()}


def forecasts(rows: Sequence[dict[str, Any]], targets: Sequence[float], metric: str = "ua_pooled",
              max_factor: float = MAX_EXTRAPOLATION) -> list[tuple[str, Forecast | str]]:
    """For each store of a curve and each target UA (fraction): the forecast (refused beyond ``max_factor`` ×
    the largest measured size, see :class:`~train.forecast.Forecast`), or why there is none. ``metric``: see
    :func:`curve_series`."""
    series, _ = curve_series(rows, metric)
    out: list[tuple[str, Forecast | str]] = []
    for store, (used, sizes, ua) in series.items():
        for target in targets:
            try:
                out.append((store, forecast_size(sizes, ua, target, max_factor=max_factor, metric=used)))
            except ValueError as e:
                out.append((store, f"UA {100 * target:.1f}%: no forecast ({e})"))
    return out


def format_forecasts(items: Sequence[tuple[str, Forecast | str]], ks: dict[str, str] | None = None) -> str:
    """One line per (store, target); ``ks`` (:func:`curve_ks`) is quoted in the advice of refused ones."""
    ks = ks or {}
    return "\n".join(f"{store}: {f if isinstance(f, str) else f.summary(ks.get(store, ''))}" for store, f in items)


def backtests(rows: Sequence[dict[str, Any]], metric: str = "ua_pooled") -> list[tuple[str, Backtest | str]]:
    """For each store of a curve: :func:`~train.forecast.backtest` (fit on the smaller sizes, forecast the
    largest), or why there is none."""
    series, _ = curve_series(rows, metric)
    out: list[tuple[str, Backtest | str]] = []
    for store, (used, sizes, ua) in series.items():
        try:
            out.append((store, backtest(sizes, ua, metric=used)))
        except ValueError as e:
            out.append((store, f"no backtest ({e})"))
    return out


def format_backtests(items: Sequence[tuple[str, Backtest | str]]) -> str:
    """A plain-text table, one line per store: the sizes fitted, the held-out size and how far it lies beyond
    them, measured and forecast UA (%) and the error in UA points, the size the fit says the measured UA
    needs (with its interval) and its ratio to the size that reached it."""
    header = ("store", "UA", "fit on sizes", "forecast at", "measured", "forecast", "error",
              "size for measured UA (interval)", "size ratio")
    table: list[tuple[str, ...]] = []
    reasons: list[str] = []
    for store, b in items:
        if isinstance(b, str):
            reasons.append(f"{store}: {b}")
            continue
        size = ("unreachable (slope <= 0)" if not np.isfinite(b.n_needed)
                else f"{b.n_needed:,.0f} ({b.n_low:,.0f}-{b.n_high:,.0f})" if b.n_low < b.n_high
                else f"{b.n_needed:,.0f} (no spread)")
        table.append((store, "pooled" if b.metric == "ua_pooled" else "fold mean",
                      ", ".join(f"{x:.0f}" for x in b.fit_sizes),
                      f"{b.held_out_size:.0f} ({b.extrapolation_factor:.1f}x)", pct(b.measured_ua),
                      pct(b.predicted_ua), f"{100 * b.ua_error:+.1f}", size,
                      f"{b.size_ratio:.2f}x" if np.isfinite(b.size_ratio) else "-"))
    lines = []
    if table:
        widths = [max(len(r[i]) for r in (header, *table)) for i in range(len(header))]
        left = {0, 1, 2, 7}
        for r in (header, *table):
            lines.append("  ".join(c.ljust(w) if i in left else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        lines.append("error = forecast - measured UA (points; positive = optimistic); size ratio = the size the fit "
                     "needs for the measured UA / the size that reached it (below 1 = optimistic)")
    return "\n".join(lines + reasons)


# -- leave-one-corpus-out ----------------------------------------------------------------------------------
def loco_rows(results: Sequence[CrossCorpusResult],
              in_corpus: dict[str, CVResult | str] | None = None) -> list[dict[str, Any]]:
    """One dict per held-out corpus (for ``loco.json``): held_out, train_corpora, n_train, n_test,
    ``<m>``/``<m>_std`` (pooled, :func:`train.protocol.pooled_scores`), in_corpus_ua (pooled UA of the
    in-corpus cv, or ``None`` with in_corpus_note saying why), warnings, run_dir."""
    in_corpus = in_corpus or {}
    out = []
    for r in results:
        name = "+".join(r.test_corpora)
        cv = in_corpus.get(name)
        out.append({"held_out": name, "train_corpora": list(r.train_corpora),
                    "n_train": float(r.summary["n_train_mean"]), "n_test": int(r.pooled["n_predictions"]),
                    **{m: float(r.pooled[m]) for m in METRICS},
                    **{f"{m}_std": float(r.pooled[f"{m}_std"]) for m in METRICS},
                    "in_corpus_ua": float(cv.pooled["ua"]) if isinstance(cv, CVResult) else None,
                    "in_corpus_run_dir": str(cv.run_dir) if isinstance(cv, CVResult) and cv.run_dir else None,
                    "in_corpus_note": cv if isinstance(cv, str) else None,
                    "not_scored": r.not_scored, "warnings": list(r.warnings),
                    "run_dir": str(r.run_dir) if r.run_dir is not None else None})
    return out

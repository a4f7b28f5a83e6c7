"""Human-readable results: the CV summary table, learning-curve CSV and figure, forecasts, Markdown tables."""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .forecast import Forecast, forecast_size
from .protocol import METRICS, CVResult

CURVE_COLUMNS = ("store", "head", "schedule", "k", "seed", "n_train", "ua", "wa", "f1", "ua_pooled", "wa_pooled",
                 "f1_pooled", "run_dir")
"""curve.csv: one row per (store, schedule, k, seed); ``ua``/``wa``/``f1`` are that seed's fold means,
``*_pooled`` the scores of all its held-out predictions together (:func:`train.protocol.pooled_scores`)."""
CURVE_FLOATS = ("n_train", "ua", "wa", "f1", "ua_pooled", "wa_pooled", "f1_pooled")


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def pm(mean: float, std: float) -> str:
    """``"55.2 ± 0.4"`` (percent)."""
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


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
    lines = [f"{result.head} on {result.store} ({k}; seeds {','.join(map(str, result.seeds))}; "
             f"{describe_schedule(result)}; device {result.device}; {result.seconds:.1f} s)",
             f"{'fold':<12}{'n_train':>8}{'n_test':>8}{'UA':>8}{'WA':>8}{'F1':>8}"]
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
            + f"  (all {p['n_predictions']} held-out predictions together"
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


def forecasts(rows: Sequence[dict[str, Any]], targets: Sequence[float]) -> list[tuple[str, Forecast | str]]:
    """For each store of a curve and each target UA (fraction): the forecast, or why there is none."""
    by_store: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_store[r["store"]].append(r)
    out: list[tuple[str, Forecast | str]] = []
    for store, rs in by_store.items():
        for target in targets:
            try:
                with np.errstate(over="ignore"):  # far-off targets overflow exp(): reported as extrapolations
                    out.append((store, forecast_size([r["n_train"] for r in rs], [r["ua"] for r in rs], target)))
            except ValueError as e:
                out.append((store, f"UA {100 * target:.1f}%: no forecast ({e})"))
    return out


def format_forecasts(items: Sequence[tuple[str, Forecast | str]]) -> str:
    return "\n".join(f"{store}: {f if isinstance(f, str) else f.summary()}" for store, f in items)


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)

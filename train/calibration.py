"""Calibrated class probabilities: temperature scaling, expected calibration error, reliability plots.

A head's softmax probabilities are often over- (or under-) confident: among predictions made with top
probability 0.9, fewer (or more) than 90 % are right. Temperature scaling (Guo et al., 2017) fixes this
with one scalar ``T > 0``: ``p_T = softmax(z / T)`` for logits ``z``. It never changes the argmax, so UA,
WA and F1 are untouched; only the confidence moves. ``T`` is fitted by minimising the negative
log-likelihood (NLL) of held-out predictions. Log-probabilities are logits up to a per-row constant, so
``softmax(log p / T) = softmax(z / T)``: fitting on stored probabilities equals fitting on logits (up to
float32 rounding; probabilities below :data:`TINY` are clipped there).

The NLL is convex in ``1 / T``, hence unimodal in ``log T``; :func:`fit_temperature` minimises it by a
golden-section search on ``log T`` within :data:`T_BOUNDS` (a fit that ends on a bound is flagged by
:func:`at_bound`: e.g. held-out predictions that are all right make the NLL fall towards ``T -> 0``).

Expected calibration error (ECE, :func:`expected_calibration_error`) is the standard binned estimate:
predictions are grouped by confidence (top probability) into :data:`N_BINS` equal-width bins ``(lo, hi]``
of [0, 1], and ``ECE = Σ_b (n_b / n) · |accuracy_b - mean confidence_b|`` (a fraction; 0 = calibrated).

Honest numbers need held-out predictions whose labels did not fit ``T``: :func:`cross_fitted` fits one
``T`` per cross-validation fold on the *other* folds' held-out predictions and applies it to this fold.
:func:`cv_calibration` does so for a :class:`~train.protocol.CVResult` (the ``calibration`` key of a run
folder's ``metrics.json``, with ``reliability.png``); :func:`calibrate_fit` runs the speaker-independent
cross-validation of ``ser-train fit --calibrate`` and fits the ``T`` a bundle stores.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

N_BINS = 15
T_BOUNDS = (0.05, 20.0)
"""Search range of the temperature (a fit on a bound is flagged, see :func:`at_bound`)."""
TINY = 1e-30
"""Probabilities are clipped to at least this before the log (float32 softmax outputs can underflow to 0)."""
CV_METHOD = ("temperature scaling (one T > 0 minimising the NLL of softmax(log p / T)); cross-fitted: each "
             "fold's T is fitted on the held-out predictions of the other folds only, then applied to this "
             "fold; ECE over 15 equal-width confidence bins, all held-out predictions of every seed together")


def _check(proba: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    proba = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if proba.ndim != 2 or len(proba) != len(y):
        raise ValueError(f"probabilities [N × C] and labels [N] do not match: {proba.shape} vs {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= proba.shape[1]):
        raise ValueError(f"labels must be class indices in [0, {proba.shape[1]}) (unlabelled rows left out)")
    if not np.isfinite(proba).all():
        raise ValueError("probabilities hold NaN/Inf: nothing to calibrate")
    return proba, y


def log_proba(proba: np.ndarray) -> np.ndarray:
    """float64 [N × C] ``log(max(p, TINY))``: logits up to a per-row constant."""
    return np.log(np.clip(np.asarray(proba, dtype=np.float64), TINY, 1.0))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def apply_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)`` [N × C] (float64; the argmax of every row is unchanged). ``T = 1`` returns
    ``p`` itself (as float64)."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    proba = np.asarray(proba, dtype=np.float64)
    if temperature == 1.0 or len(proba) == 0:
        return proba
    return _softmax(log_proba(proba) / temperature)


def nll(proba: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (nats) of labels ``y`` under ``softmax(log p / T)``."""
    proba, y = _check(proba, y)
    z = log_proba(proba) / temperature
    z = z - z.max(1, keepdims=True)
    lse = np.log(np.exp(z).sum(1))
    return float(np.mean(lse - z[np.arange(len(y)), y]))


def fit_temperature(proba: np.ndarray, y: np.ndarray, bounds: tuple[float, float] = T_BOUNDS,
                    iterations: int = 60) -> float:
    """The ``T`` in ``bounds`` minimising :func:`nll` of held-out probabilities ``proba`` [N × C] with labels ``y``.

    Golden-section search on ``log T`` (the NLL is unimodal there); 60 iterations narrow the bracket to
    3e-13 of its width (``log T`` to ~2e-12). Refuses an empty set.
    """
    proba, y = _check(proba, y)
    if len(y) == 0:
        raise ValueError("no held-out prediction to fit a temperature on")
    z = log_proba(proba)
    zy = z[np.arange(len(y)), y]

    def f(u: float) -> float:
        s = z / math.exp(u)
        m = s.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(s - m).sum(1)) + m[:, 0] - zy / math.exp(u)))

    a, b = math.log(bounds[0]), math.log(bounds[1])
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iterations):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    u = (a + b) / 2
    for edge in (math.log(bounds[0]), math.log(bounds[1])):   # a monotone NLL ends on the bound itself
        if f(edge) < f(u):
            u = edge
    return float(math.exp(u))


def at_bound(temperature: float, bounds: tuple[float, float] = T_BOUNDS) -> bool:
    """Whether a fitted ``T`` sits on a search bound (within 0.1 %): the NLL kept falling there."""
    return any(abs(math.log(temperature / b)) < 1e-3 for b in bounds)


def calibration_bins(proba: np.ndarray, y: np.ndarray, n_bins: int = N_BINS) -> list[dict[str, Any]]:
    """The reliability table: one dict per equal-width confidence bin ``(lo, hi]`` of [0, 1].

    Each: ``lo``, ``hi``, ``count`` (predictions whose top probability falls in the bin), ``accuracy``
    (fraction of them whose argmax is ``y``) and ``confidence`` (their mean top probability); ``None`` for
    both in an empty bin.
    """
    proba, y = _check(proba, y)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    conf = proba.max(1) if len(y) else np.zeros(0)
    right = (proba.argmax(1) == y) if len(y) else np.zeros(0, bool)
    b = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)   # edges[b] < conf <= edges[b+1]
    out = []
    for i in range(n_bins):
        sel = b == i
        n = int(sel.sum())
        out.append({"lo": float(edges[i]), "hi": float(edges[i + 1]), "count": n,
                    "accuracy": float(right[sel].mean()) if n else None,
                    "confidence": float(conf[sel].mean()) if n else None})
    return out


def ece_from_bins(bins: Sequence[dict[str, Any]]) -> float:
    """``Σ_b (n_b / n) |accuracy_b - confidence_b|`` of a :func:`calibration_bins` table (NaN when empty)."""
    n = sum(b["count"] for b in bins)
    if n == 0:
        return float("nan")
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]))


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, n_bins: int = N_BINS) -> float:
    """ECE (fraction) of probabilities ``proba`` [N × C] against labels ``y`` [N]; see the module doc."""
    return ece_from_bins(calibration_bins(proba, y, n_bins))


def cross_fitted(proba: np.ndarray, y: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """Cross-fitted temperature scaling: rows of group ``g`` get ``softmax(log p / T_g)`` with ``T_g`` fitted
    on the rows of every other group. Returns the calibrated probabilities float64 [N × C] and
    ``{group: T_g}``. Needs at least two groups."""
    proba, y = _check(proba, y)
    groups = np.asarray(groups).astype(str)
    names = sorted(set(groups.tolist()))
    if len(names) < 2:
        raise ValueError(f"cross-fitting needs at least two folds, got {names}")
    out = np.empty_like(proba)
    temps: dict[str, float] = {}
    for g in names:
        sel = groups == g
        temps[g] = fit_temperature(proba[~sel], y[~sel])
        out[sel] = apply_temperature(proba[sel], temps[g])
    return out, temps


def summary(proba: np.ndarray, y: np.ndarray, groups: np.ndarray, n_bins: int = N_BINS) -> dict[str, Any]:
    """Raw and cross-fitted calibration of held-out predictions (``groups``: the fold of each row).

    Keys: ``n_predictions``, ``n_folds``, ``n_bins``, ``ece``/``nll``/``bins`` (raw), ``ece_calibrated``/
    ``nll_calibrated``/``bins_calibrated`` (cross-fitted), ``temperature_per_fold``, ``temperature``
    (fitted on every row: what a model fitted on all of them would store), ``temperature_at_bound``,
    ``method``. With one group there is nothing to cross-fit: the calibrated keys and temperatures are
    ``None`` and ``note`` says why.
    """
    proba, y = _check(proba, y)
    if len(y) == 0:
        raise ValueError("no held-out prediction to measure calibration on")
    bins = calibration_bins(proba, y, n_bins)
    out: dict[str, Any] = {"n_predictions": int(len(y)), "n_folds": len(set(np.asarray(groups).astype(str))),
                           "n_bins": n_bins, "ece": ece_from_bins(bins), "nll": nll(proba, y), "bins": bins,
                           "ece_calibrated": None, "nll_calibrated": None, "bins_calibrated": None,
                           "temperature_per_fold": None, "temperature": None, "temperature_at_bound": None,
                           "method": CV_METHOD}
    if out["n_folds"] < 2:
        out["note"] = "one fold (or test corpus) only: no held-out set to fit a temperature on, raw ECE only"
        return out
    calibrated, temps = cross_fitted(proba, y, groups)
    bins_cal = calibration_bins(calibrated, y, n_bins)
    t_all = fit_temperature(proba, y)
    out.update(ece_calibrated=ece_from_bins(bins_cal), nll_calibrated=nll(calibrated, y), bins_calibrated=bins_cal,
               temperature_per_fold=temps, temperature=t_all, temperature_at_bound=at_bound(t_all))
    return out


def plot_reliability(bins: Sequence[dict[str, Any]], path: str | os.PathLike, title: str = "",
                     bins_after: Sequence[dict[str, Any]] | None = None,
                     label_after: str = "temperature-scaled") -> Path:
    """Reliability diagram (PNG, Agg backend): accuracy per confidence bin (bars, the bin's count at its
    foot), each bin's mean confidence (red diamond; its distance to the bar's top is the bin's gap) and the
    diagonal of perfect calibration; a second panel for ``bins_after``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("held-out (raw)", bins)] + ([(label_after, bins_after)] if bins_after is not None else [])
    two = len(panels) == 2
    fig, axes = plt.subplots(1, len(panels), figsize=(10, 4.8) if two else (5.6, 5.2), squeeze=False)
    for ax, (name, table) in zip(axes[0], panels):
        full = [b for b in table if b["count"]]
        width = table[0]["hi"] - table[0]["lo"]
        centres = [b["lo"] + width / 2 for b in full]
        ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
        ax.bar([b["lo"] for b in full], [b["accuracy"] for b in full], width=width, align="edge",
               color="tab:blue", edgecolor="black", lw=0.5, alpha=0.8, label="accuracy of the bin")
        ax.scatter(centres, [b["confidence"] for b in full], marker="D", s=14, color="tab:red", zorder=3,
                   label="mean confidence of the bin")
        for x, b in zip(centres, full):
            ax.text(x, 0.01, str(b["count"]), ha="center", va="bottom", fontsize=6, rotation=90)
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="confidence (top probability); numbers: predictions per bin",
               ylabel="accuracy", title=f"{name}: ECE {100 * ece_from_bins(table):.1f} %")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3 if two else 2, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    # fixed margins: tight_layout would double the plotting time, and every run folder gets a plot
    fig.subplots_adjust(left=0.07 if two else 0.13, right=0.98, top=0.86, bottom=0.2 if two else 0.24, wspace=0.22)
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def cv_calibration(result: Any) -> dict[str, Any] | None:
    """:func:`summary` of a :class:`~train.protocol.CVResult`'s held-out predictions, "fold" being the
    test corpus of a cross-corpus run (``None`` when it has no prediction)."""
    p = result.predictions
    if len(p["y"]) == 0:
        return None
    return summary(p["proba"], p["y"], p["fold"])


def write_calibration(result: Any, run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The ``calibration`` entry of a run folder's ``metrics.json``; also writes ``reliability.png`` there."""
    cal = cv_calibration(result)
    if cal is None:
        return None
    plot_reliability(cal["bins"], Path(run_dir) / "reliability.png",
                     title=f"{result.head} on {result.store}, k={'all' if result.k is None else result.k}: "
                           f"{cal['n_predictions']} held-out predictions",
                     bins_after=cal["bins_calibrated"], label_after="temperature-scaled (cross-fitted)")
    return cal


def calibrate_fit(inputs: Any, head: str, cfg: Any, rows: np.ndarray, seed: int = 0, device: str = "cpu",
                  workers: int = 1, on_job_done: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Fit the temperature of a model fitted on ``rows``: speaker-independent cross-validation of the same
    head and config on exactly those rows (every other row is treated as unlabelled), ``T`` fitted on all
    held-out predictions together.

    Returns ``temperature``, ``temperature_at_bound``, ``ece_before`` / ``nll_before`` (raw held-out
    predictions), ``ece_after`` / ``nll_after`` (cross-fitted over the folds, so ``T``'s own labels never
    score it), ``n_folds``, ``folds``, ``n_predictions``, ``n_bins``, ``warnings``, ``method``. The fold
    models see 1 - 1/n_folds of the rows; the final model sees them all, so its probabilities are, if
    anything, slightly more confident than those ``T`` was fitted on.
    """
    from .protocol import cross_validate

    y = np.full_like(inputs.y, -1)
    y[rows] = inputs.y[rows]
    masked = replace(inputs, y=y)
    r = cross_validate(masked, head, cfg, k=None, seeds=(seed,), device=device, workers=workers,
                       on_job_done=on_job_done)
    s = summary(r.predictions["proba"], r.predictions["y"], r.predictions["fold"])
    return {"temperature": s["temperature"], "temperature_at_bound": s["temperature_at_bound"],
            "ece_before": s["ece"], "ece_after": s["ece_calibrated"], "nll_before": s["nll"],
            "nll_after": s["nll_calibrated"], "n_folds": s["n_folds"],
            "folds": sorted(s["temperature_per_fold"]), "n_predictions": s["n_predictions"],
            "n_bins": s["n_bins"], "warnings": list(r.warnings),
            "method": ("speaker-independent cross-validation (leave one session out) of the same head and "
                       "config on the fit's training rows; T fitted on all held-out predictions; ECE after: "
                       "cross-fitted (each fold scaled by a T fitted on the other folds)")}


def calibrate_bundle(bundle: Any, inputs: Any, device: str = "cpu", workers: int = 1,
                     on_job_done: Callable[[int], None] | None = None) -> Any:
    """Set ``bundle.temperature`` and ``bundle.calibration`` by :func:`calibrate_fit` on the rows the bundle
    was fitted on (:func:`train.bundle.training_rows` with its ``k`` and ``seed``); returns the bundle."""
    from .bundle import training_rows

    rows = training_rows(inputs, bundle.meta.get("k"), bundle.meta.get("seed", 0))
    cal = calibrate_fit(inputs, bundle.head, bundle.config, rows, bundle.meta.get("seed", 0), device, workers,
                        on_job_done)
    bundle.temperature = cal["temperature"]
    bundle.calibration = cal
    return bundle


def describe(bundle: Any) -> str:
    """One line on a bundle's calibration, for ``fit`` and ``predict`` (says so when it is uncalibrated)."""
    cal = bundle.calibration
    if not cal:
        return ("probabilities uncalibrated (T = 1): the model has no temperature (fitted with --no-calibrate or "
                "before calibration existed); refit with `ser-train fit` to calibrate them")
    bound = " (on the search bound: the held-out NLL kept falling)" if cal.get("temperature_at_bound") else ""
    return (f"probabilities calibrated: temperature T = {bundle.temperature:.3f}{bound}, fitted on "
            f"{cal['n_predictions']} held-out predictions of a {cal['n_folds']}-fold speaker-independent CV; "
            f"ECE there {100 * cal['ece_before']:.1f} % -> {100 * cal['ece_after']:.1f} % (cross-fitted)")


def abstention(proba: np.ndarray, threshold: float) -> np.ndarray:
    """bool [N]: rows whose top probability is below ``threshold`` (left to a person)."""
    if not (0 < threshold < 1):
        raise ValueError(f"the abstention threshold must be a probability in (0, 1), got {threshold!r}")
    return np.asarray(proba).max(1) < threshold


def abstention_summary(abstain: np.ndarray, y: np.ndarray, pred: np.ndarray, threshold: float,
                       n_classes: int) -> str:
    """One line: how many rows were left to a person, the coverage (fraction kept), and, over the labelled
    rows (``y >= 0``), accuracy (WA) and UA of the kept rows beside those of all labelled rows."""
    from .metrics import classification_scores

    n, n_out = len(abstain), int(abstain.sum())
    line = (f"abstain: {n_out} of {n} rows ({100 * n_out / max(n, 1):.1f} %) have a top probability below "
            f"{threshold:g}: marked abstain=true for a person (pred keeps the model's guess); coverage "
            f"{100 * (n - n_out) / max(n, 1):.1f} %")
    known = y >= 0
    kept = known & ~abstain
    if not known.any():
        return line + " (no labelled row: no accuracy)"
    s_all = classification_scores(y[known], pred[known], n_classes)
    if not kept.any():
        return line + f"; no labelled row kept (all {int(known.sum())} abstained)"
    s = classification_scores(y[kept], pred[kept], n_classes)
    return (line + f"; kept labelled rows: accuracy (WA) {100 * s['wa']:.1f} %, UA {100 * s['ua']:.1f} % over "
                   f"{int(kept.sum())} of {int(known.sum())} (all labelled rows: WA {100 * s_all['wa']:.1f} %, "
                   f"UA {100 * s_all['ua']:.1f} %)")

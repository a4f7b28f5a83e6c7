"""Forecast the training-set size needed for a target UA from a learning curve, and backtest the forecast.

Model: ``UA(n) = a + b · ln(n)``, fitted by least squares to every (size, UA) point of a learning curve
(one point per seed and size, so seed noise enters the fit). The size needed for a target is
``n* = exp((target - a) / b)``. Uncertainty comes from a bootstrap over the points (resampled within each
size, so every size stays represented): the forecast's percentile interval.

A log-linear curve never saturates, while real learning curves flatten: the further a forecast reaches
beyond the measured sizes, the more it under-states the data needed (or hides that the target is out of
reach). :func:`forecast_size` therefore only forecasts up to :data:`MAX_EXTRAPOLATION` times the largest
measured size; beyond it the :class:`Forecast` is refused (``within_limit`` false) and names the size to
measure next. :func:`backtest` checks the model on a curve's own points: fit on the smaller sizes, forecast
the largest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

MAX_EXTRAPOLATION = 3.0
"""Forecasts reach at most this many times the largest measured training size.

Why 3x: the log-linear model has no saturation, so its error grows with the distance from the data, and
only distances the curve itself can check are trusted. A curve from 25 per class to all the data spans
about 3-5x in size, so a backtest (:func:`backtest`: fit on the smaller sizes, forecast the largest) checks
extrapolations of about 1.2-3x; a tripling is also about what one labelling round adds. Beyond it, measure
(label up to 3x and rerun the curve) instead of extrapolating."""


@dataclass(frozen=True)
class Forecast:
    """Result of :func:`forecast_size`. Sizes are numbers of training examples (all classes together, the
    curve's ``n_train``: mean over the CV folds).

    ``n_needed``/``n_low``/``n_high`` are the fit's answer and its bootstrap interval whether or not they
    are trusted; ``within_limit`` says whether ``n_needed`` is at most ``max_factor`` × ``largest_measured``
    (``extrapolation_factor`` ≤ ``max_factor``). When it is not, :meth:`summary` refuses the forecast and
    names ``measure_next``: the largest size the curve may be extrapolated to now (``max_factor`` ×
    ``largest_measured``), the size to grow the training set to before forecasting again. ``metric`` is the
    curve column the UA came from (``ua_pooled``: all held-out predictions together; ``ua``: fold mean).
    """

    target_ua: float
    a: float
    b: float
    r2: float
    n_needed: float
    n_low: float
    n_high: float
    ci: float
    largest_measured: int
    extrapolation_factor: float
    reachable: bool
    max_factor: float = MAX_EXTRAPOLATION
    within_limit: bool = True
    measure_next: int = 0
    metric: str = "ua"
    smallest_measured: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def label(self) -> str:
        """``"pooled UA 80.0%"`` / ``"UA 80.0%"`` (fold mean): the target and the metric it is on."""
        return f"{'pooled ' if self.metric == 'ua_pooled' else ''}UA {100 * self.target_ua:.1f}%"

    def summary(self, ks: str = "") -> str:
        """One line: the forecast, why it is unreachable, or why it is refused and what to measure next.
        ``ks``: the curve's ``--ks`` (e.g. ``25,50,125,all``), quoted in the rerun advice."""
        if not self.reachable:
            return (f"{self.label()}: not reachable on this curve "
                    f"(slope {100 * self.b:.2f} UA points per ln-size)")
        if not self.within_limit:
            far = (f"{self.extrapolation_factor:,.1f}x" if np.isfinite(self.extrapolation_factor)
                   else "astronomically far")
            more = self.measure_next - self.largest_measured
            rerun = f"rerun `ser-train curve` with --ks {ks}" if ks else "rerun `ser-train curve` (keep 'all' in --ks)"
            return (f"{self.label()}: no forecast: the log-linear fit would extrapolate {far} beyond the largest "
                    f"measured size {self.largest_measured:,} (limit {self.max_factor:g}x: a log-linear curve "
                    f"does not saturate, so that far out it under-states the data needed); measure next: grow "
                    f"the training set to ~{self.measure_next:,} examples (~{more:,} more), {rerun} and "
                    f"forecast again")
        interval = (f"{100 * self.ci:.0f}% interval {self.n_low:,.0f}-{self.n_high:,.0f}" if self.n_low < self.n_high
                    else "no interval: the bootstrap over the points has no spread (one point per size? use several "
                         "--seeds)")
        line = (f"{self.label()}: about {self.n_needed:,.0f} training examples ({interval}; "
                f"{self.extrapolation_factor:.1f}x the largest measured size {self.largest_measured:,})")
        if self.n_needed < self.smallest_measured:
            line += (f"; below the smallest measured size {self.smallest_measured:,}: the fit already passes "
                     f"this UA there")
        if np.isfinite(self.max_factor) and not self.n_high <= self.measure_next:
            line += f"; the interval's upper end is beyond {self.max_factor:g}x the data, where the fit is not trusted"
        return line


def fit_log_linear(sizes: Sequence[float], ua: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares fit ``ua = a + b ln(size)``. Returns ``(a, b, r2)``."""
    x = np.log(np.asarray(sizes, dtype=np.float64))
    y = np.asarray(ua, dtype=np.float64)
    if len(np.unique(x)) < 2:
        raise ValueError("a learning curve needs at least two distinct training sizes to forecast from")
    b, a = np.polyfit(x, y, 1)
    pred = a + b * x
    ss_res = float(((y - pred) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return float(a), float(b), r2


def _needed(a: float, b: float, target: float) -> float:
    if b <= 0:
        return float("inf")
    with np.errstate(over="ignore"):  # far-off targets overflow exp() to inf: refused as extrapolations
        return float(np.exp((target - a) / b))


def forecast_size(sizes: Sequence[float], ua: Sequence[float], target_ua: float, ci: float = 0.9,
                  n_boot: int = 2000, seed: int = 0, max_factor: float = MAX_EXTRAPOLATION,
                  metric: str = "ua") -> Forecast:
    """Training-set size needed to reach ``target_ua`` (a fraction, e.g. 0.7), with a bootstrap interval.

    ``sizes[i]`` and ``ua[i]`` are one learning-curve point (total training examples, UA as a fraction).
    ``max_factor``: forecasts beyond this many times the largest size are refused (``within_limit`` false);
    ``metric`` names the UA column the points come from (recorded, printed).
    """
    if not 0 < target_ua < 1:
        raise ValueError(f"target UA must be a fraction in (0, 1), got {target_ua}")
    if not max_factor >= 1:
        raise ValueError(f"the extrapolation limit must be at least 1 (x the largest size), got {max_factor}")
    sizes_a = np.asarray(sizes, dtype=np.float64)
    ua_a = np.asarray(ua, dtype=np.float64)
    a, b, r2 = fit_log_linear(sizes_a, ua_a)
    n_star = _needed(a, b, target_ua)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(sizes_a == s) for s in np.unique(sizes_a)]
    counts = np.zeros((n_boot, len(sizes_a)))  # how often each point is drawn in each bootstrap sample
    for j in range(n_boot):
        idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
        if len(groups) > 2:  # also resample which sizes are seen, when there are enough of them
            keep = rng.choice(len(groups), size=len(groups), replace=True)
            if len(set(keep.tolist())) >= 2:
                idx = np.concatenate([rng.choice(groups[k], size=len(groups[k]), replace=True) for k in keep])
        counts[j] = np.bincount(idx, minlength=len(sizes_a))
    # least squares of every sample at once (each sample holds >= 2 distinct sizes): slope = cov / var
    x, w = np.log(sizes_a), counts / counts.sum(1, keepdims=True)
    xm, ym = w @ x, w @ ua_a
    dx = x[None, :] - xm[:, None]
    bb = (w * dx * (ua_a[None, :] - ym[:, None])).sum(1) / (w * dx ** 2).sum(1)
    ab = ym - bb * xm
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        boots = np.where(bb > 0, np.exp((target_ua - ab) / np.where(bb > 0, bb, 1.0)), np.inf)
    lo, hi = np.quantile(boots, [(1 - ci) / 2, 1 - (1 - ci) / 2], method="nearest")  # inf-safe
    largest = float(sizes_a.max())
    reachable = b > 0
    return Forecast(target_ua=target_ua, a=a, b=b, r2=r2, n_needed=n_star, n_low=float(lo), n_high=float(hi),
                    ci=ci, largest_measured=round(largest), extrapolation_factor=n_star / largest,
                    reachable=bool(reachable), max_factor=float(max_factor),
                    within_limit=bool(reachable and n_star <= max_factor * largest),
                    measure_next=round(max_factor * largest) if np.isfinite(max_factor) else 0, metric=metric,
                    smallest_measured=round(float(sizes_a.min())))


@dataclass(frozen=True)
class Backtest:
    """Result of :func:`backtest`: the log-linear fit on a curve's smaller sizes, checked at its largest.

    Sizes are training examples (the curve's ``n_train``); UAs are fractions (mean over the held-out
    size's seeds for ``measured_ua``).

    Attributes:
        held_out_size: the largest measured size, left out of the fit and forecast.
        fit_sizes: the distinct sizes the fit used (ascending); ``n_fit_points`` points (seeds × sizes).
        extrapolation_factor: ``held_out_size / max(fit_sizes)``, how far the backtest extrapolates.
        measured_ua / predicted_ua: the curve's UA at ``held_out_size`` and the fit's; ``ua_error`` =
            predicted - measured (positive: the fit was optimistic).
        n_needed: the size the fit says the measured UA needs; ``size_ratio`` = ``n_needed / held_out_size``
            (1 = exact; below 1 the fit asked for too little data, i.e. was optimistic; inf when the fit's
            slope is not positive). ``n_low``-``n_high``: its ``ci`` bootstrap interval, ``covered`` whether
            that interval holds ``held_out_size``.
    """

    held_out_size: float
    fit_sizes: tuple[float, ...]
    n_fit_points: int
    extrapolation_factor: float
    a: float
    b: float
    r2: float
    measured_ua: float
    predicted_ua: float
    ua_error: float
    n_needed: float
    size_ratio: float
    n_low: float
    n_high: float
    ci: float
    covered: bool
    metric: str = "ua"

    def to_dict(self) -> dict:
        return asdict(self)


def backtest(sizes: Sequence[float], ua: Sequence[float], ci: float = 0.9, n_boot: int = 2000, seed: int = 0,
             metric: str = "ua") -> Backtest:
    """Fit ``UA = a + b ln(n)`` on every point below the largest size, forecast the largest (its UA, and the
    size its measured UA needs) and compare with what was measured there.

    ``sizes[i]``/``ua[i]``: one learning-curve point, as for :func:`forecast_size`. Needs three distinct
    sizes (two to fit, one to check).
    """
    sizes_a = np.asarray(sizes, dtype=np.float64)
    ua_a = np.asarray(ua, dtype=np.float64)
    distinct = np.unique(sizes_a)
    if len(distinct) < 3:
        raise ValueError(f"a backtest needs at least three distinct training sizes (two to fit, the largest to "
                         f"check), this curve has {len(distinct)}; add a k to --ks")
    top = distinct[-1]
    fit = sizes_a < top
    measured = float(ua_a[~fit].mean())
    a, b, r2 = fit_log_linear(sizes_a[fit], ua_a[fit])
    predicted = a + b * float(np.log(top))
    if 0 < measured < 1:
        f = forecast_size(sizes_a[fit], ua_a[fit], measured, ci=ci, n_boot=n_boot, seed=seed,
                          max_factor=float("inf"), metric=metric)
        n_needed, lo, hi = f.n_needed, f.n_low, f.n_high
    else:  # a UA of exactly 0 or 1 has no size on a log-linear curve
        n_needed = lo = hi = float("nan")
    return Backtest(held_out_size=float(top), fit_sizes=tuple(float(s) for s in distinct[:-1]),
                    n_fit_points=int(fit.sum()), extrapolation_factor=float(top / distinct[-2]), a=a, b=b, r2=r2,
                    measured_ua=measured, predicted_ua=float(predicted), ua_error=float(predicted - measured),
                    n_needed=n_needed, size_ratio=n_needed / float(top), n_low=lo, n_high=hi, ci=ci,
                    covered=bool(lo <= top <= hi), metric=metric)

"""Forecast the training-set size needed for a target UA from a learning curve.

Model: ``UA(n) = a + b · ln(n)``, fitted by least squares to every (size, UA) point of a learning curve
(one point per seed and size, so seed noise enters the fit). The size needed for a target is
``n* = exp((target - a) / b)``. Uncertainty comes from a bootstrap over the points (resampled within each
size, so every size stays represented): the forecast's percentile interval.

A log-linear curve never saturates, so forecasts far beyond the largest measured size are extrapolations;
:func:`forecast_size` flags them (``extrapolation_factor``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Forecast:
    """Result of :func:`forecast_size`. Sizes are numbers of training examples (all classes together)."""

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

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        if not self.reachable:
            return (f"UA {100 * self.target_ua:.1f}%: not reachable on this curve "
                    f"(slope {100 * self.b:.2f} UA points per ln-size)")
        return (f"UA {100 * self.target_ua:.1f}%: about {self.n_needed:,.0f} training examples "
                f"({100 * self.ci:.0f}% interval {self.n_low:,.0f}-{self.n_high:,.0f}; "
                f"{self.extrapolation_factor:.1f}x the largest measured size {self.largest_measured:,})")


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
    return float(np.exp((target - a) / b))


def forecast_size(sizes: Sequence[float], ua: Sequence[float], target_ua: float, ci: float = 0.9,
                  n_boot: int = 2000, seed: int = 0) -> Forecast:
    """Training-set size needed to reach ``target_ua`` (a fraction, e.g. 0.7), with a bootstrap interval.

    ``sizes[i]`` and ``ua[i]`` are one learning-curve point (total training examples, UA as a fraction).
    """
    if not 0 < target_ua < 1:
        raise ValueError(f"target UA must be a fraction in (0, 1), got {target_ua}")
    sizes_a = np.asarray(sizes, dtype=np.float64)
    ua_a = np.asarray(ua, dtype=np.float64)
    a, b, r2 = fit_log_linear(sizes_a, ua_a)
    n_star = _needed(a, b, target_ua)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(sizes_a == s) for s in np.unique(sizes_a)]
    boots = np.empty(n_boot)
    for j in range(n_boot):
        idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
        if len(groups) > 2:  # also resample which sizes are seen, when there are enough of them
            keep = rng.choice(len(groups), size=len(groups), replace=True)
            if len(set(keep.tolist())) >= 2:
                idx = np.concatenate([rng.choice(groups[k], size=len(groups[k]), replace=True) for k in keep])
        ab, bb, _ = fit_log_linear(sizes_a[idx], ua_a[idx])
        boots[j] = _needed(ab, bb, target_ua)
    lo, hi = np.quantile(boots, [(1 - ci) / 2, 1 - (1 - ci) / 2], method="nearest")  # inf-safe
    largest = int(sizes_a.max())
    return Forecast(target_ua=target_ua, a=a, b=b, r2=r2, n_needed=n_star, n_low=float(lo), n_high=float(hi),
                    ci=ci, largest_measured=largest, extrapolation_factor=n_star / largest,
                    reachable=bool(np.isfinite(n_star)))

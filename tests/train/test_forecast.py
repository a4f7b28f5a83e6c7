import math

import numpy as np
import pytest

from train.forecast import MAX_EXTRAPOLATION, backtest, fit_log_linear, forecast_size
from train.reports import backtests, curve_series, format_backtests, format_forecasts, forecasts


def test_exact_log_linear_curve_is_inverted():
    sizes = [100, 200, 500, 1000, 2000]
    ua = [0.40 + 0.05 * math.log(n / 100) for n in sizes]
    a, b, r2 = fit_log_linear(sizes, ua)
    assert b == pytest.approx(0.05) and r2 == pytest.approx(1.0)
    f = forecast_size(sizes, ua, target_ua=0.60, n_boot=200, max_factor=float("inf"))
    assert f.n_needed == pytest.approx(100 * math.exp(4), rel=1e-6)
    assert f.n_low == pytest.approx(f.n_needed, rel=1e-6) and f.n_high == pytest.approx(f.n_needed, rel=1e-6)
    assert f.extrapolation_factor == pytest.approx(f.n_needed / 2000)
    assert "training examples" in f.summary()


def test_noisy_curve_gives_an_interval_around_the_truth():
    rng = np.random.default_rng(0)
    sizes = np.repeat([100, 250, 500, 1000, 2000], 5)
    ua = 0.40 + 0.05 * np.log(sizes / 100) + rng.normal(0, 0.01, len(sizes))
    f = forecast_size(sizes, ua, target_ua=0.55)
    truth = 100 * math.exp(3)
    assert f.n_low < truth < f.n_high
    assert f.n_low < f.n_needed < f.n_high
    assert f.within_limit and "% interval" in f.summary()


def test_flat_curve_is_unreachable_and_bad_targets_are_refused():
    f = forecast_size([100, 200, 400], [0.5, 0.49, 0.48], target_ua=0.7, n_boot=50)
    assert not f.reachable and not f.within_limit and "not reachable" in f.summary()
    with pytest.raises(ValueError, match="fraction"):
        forecast_size([100, 200], [0.5, 0.6], target_ua=70)
    with pytest.raises(ValueError, match="two distinct"):
        forecast_size([100, 100], [0.5, 0.6], target_ua=0.7)


# -- the extrapolation limit ---------------------------------------------------------------------------------
EXACT_SIZES = [100, 200, 500, 1000]


def _exact(n):
    return 0.40 + 0.05 * math.log(n / 100)


def test_forecast_beyond_the_limit_is_refused_with_what_to_measure_next():
    assert MAX_EXTRAPOLATION == 3.0
    target = _exact(5000)                        # needs 5x the largest measured size 1000
    f = forecast_size(EXACT_SIZES, [_exact(n) for n in EXACT_SIZES], target, n_boot=50)
    assert f.reachable and not f.within_limit
    assert f.n_needed == pytest.approx(5000, rel=1e-6)            # the fit's answer is kept, not hidden
    assert f.extrapolation_factor == pytest.approx(5.0) and f.measure_next == 3000 and f.max_factor == 3.0
    line = f.summary("25,50,all")
    assert "no forecast" in line and "about" not in line and "5,000" not in line
    assert "extrapolate 5.0x beyond the largest measured size 1,000" in line
    assert "limit 3x" in line and "does not saturate" in line
    assert "~3,000 examples (~2,000 more)" in line and "--ks 25,50,all" in line
    huge = forecast_size(EXACT_SIZES, [_exact(n) for n in EXACT_SIZES], 0.99, n_boot=20)  # exp() overflows
    assert huge.reachable and not huge.within_limit and "no forecast" in huge.summary()


def test_forecast_within_the_limit_is_unchanged():
    ua = [_exact(n) for n in EXACT_SIZES]
    f = forecast_size(EXACT_SIZES, ua, _exact(2000), n_boot=50)
    assert f.within_limit and f.n_needed == pytest.approx(2000, rel=1e-6)
    assert f.summary().startswith("UA 55.0%: about 2,000 training examples (")
    assert "2.0x the largest measured size 1,000" in f.summary() and "no forecast" not in f.summary()
    edge = forecast_size(EXACT_SIZES, ua, _exact(2999), n_boot=50)
    assert edge.within_limit
    # a custom limit moves the line
    assert not forecast_size(EXACT_SIZES, ua, _exact(2000), n_boot=50, max_factor=1.5).within_limit


def test_forecast_below_the_smallest_size_says_so():
    f = forecast_size(EXACT_SIZES, [_exact(n) for n in EXACT_SIZES], _exact(50), n_boot=50)
    assert f.within_limit and "below the smallest measured size 100" in f.summary()


# -- which UA the forecast fits --------------------------------------------------------------------------------
def _rows(pooled=True):
    """A curve whose fold-mean UA and pooled UA differ: pooled is 5 points lower at every size."""
    out = []
    for k, n in (("25", 100.0), ("50", 200.0), ("all", 500.0)):
        for seed in (0, 1):
            r = {"store": "toy", "k": k, "seed": seed, "n_train": n, "ua": _exact(n) + 0.001 * seed}
            if pooled:
                r["ua_pooled"] = _exact(n) - 0.05 + 0.001 * seed
            out.append(r)
    return out


def test_forecasts_fit_pooled_ua_by_default_and_fold_mean_on_request():
    rows = _rows()
    (_, pooled), = forecasts(rows, [0.6])
    (_, fold), = forecasts(rows, [0.6], metric="ua")
    assert pooled.metric == "ua_pooled" and fold.metric == "ua"
    assert pooled.n_needed == pytest.approx(forecast_size([r["n_train"] for r in rows],
                                                          [r["ua_pooled"] for r in rows], 0.6).n_needed)
    assert pooled.n_needed > fold.n_needed        # 5 points lower needs more data
    assert "pooled UA 60.0%" in format_forecasts([("toy", pooled)]) and "pooled" not in fold.summary()
    with pytest.raises(ValueError, match="unknown forecast metric"):
        forecasts(rows, [0.6], metric="wa")


def test_old_curves_without_pooled_ua_fall_back_with_a_note():
    series, notes = curve_series(_rows(pooled=False))
    assert series["toy"][0] == "ua" and len(notes) == 1 and "fold-mean UA" in notes[0] and "toy" in notes[0]
    (_, f), = forecasts(_rows(pooled=False), [0.6])
    assert f.metric == "ua"
    assert curve_series(_rows())[1] == []


# -- backtest ----------------------------------------------------------------------------------------------------
def test_backtest_on_an_exact_log_linear_curve_has_no_error():
    sizes = np.repeat([100, 200, 400, 1000], 3)
    b = backtest(sizes, [_exact(n) for n in sizes], n_boot=200)
    assert b.held_out_size == 1000 and b.fit_sizes == (100, 200, 400) and b.n_fit_points == 9
    assert b.extrapolation_factor == pytest.approx(2.5)
    assert b.ua_error == pytest.approx(0, abs=1e-9) and b.predicted_ua == pytest.approx(_exact(1000))
    assert b.size_ratio == pytest.approx(1.0, rel=1e-6) and b.covered


def test_backtest_on_a_noisy_curve_reports_the_error():
    rng = np.random.default_rng(1)
    sizes = np.repeat([100, 200, 400, 1000], 5)
    ua = np.array([_exact(n) for n in sizes]) + rng.normal(0, 0.01, len(sizes))
    b = backtest(sizes, ua)
    measured = ua[sizes == 1000].mean()
    a, slope, _ = fit_log_linear(sizes[sizes < 1000], ua[sizes < 1000])
    assert b.measured_ua == pytest.approx(measured)
    assert b.ua_error == pytest.approx(a + slope * math.log(1000) - measured)
    assert b.size_ratio == pytest.approx(math.exp((measured - a) / slope) / 1000)
    assert 0 < abs(b.ua_error) < 0.02 and 0.6 < b.size_ratio < 1.6 and b.n_low < b.n_high


def test_backtest_of_a_saturating_curve_is_optimistic():
    sizes = [100, 200, 400, 1000]
    ua = [0.9 - 0.5 * 100 / n for n in sizes]     # flattens: a log-linear fit overshoots the largest size
    b = backtest(sizes, ua)
    assert b.ua_error > 0.01 and b.size_ratio < 1


def test_backtest_needs_three_sizes_and_formats_a_table():
    with pytest.raises(ValueError, match="three distinct"):
        backtest([100, 200, 200], [0.5, 0.6, 0.61])
    rows = _rows() + [{"store": "short", "k": k, "seed": 0, "n_train": n, "ua": 0.5, "ua_pooled": 0.5}
                      for k, n in (("25", 100.0), ("all", 200.0))]
    items = backtests(rows)
    assert isinstance(items[1][1], str) and "three distinct" in items[1][1]
    text = format_backtests(items)
    assert "fit on sizes" in text and "100, 200" in text and "500 (2.5x)" in text and "pooled" in text
    assert "short: no backtest" in text

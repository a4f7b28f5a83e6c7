import math

import numpy as np
import pytest

from train.forecast import fit_log_linear, forecast_size


def test_exact_log_linear_curve_is_inverted():
    sizes = [100, 200, 500, 1000, 2000]
    ua = [0.40 + 0.05 * math.log(n / 100) for n in sizes]
    a, b, r2 = fit_log_linear(sizes, ua)
    assert b == pytest.approx(0.05) and r2 == pytest.approx(1.0)
    f = forecast_size(sizes, ua, target_ua=0.60, n_boot=200)
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


def test_flat_curve_is_unreachable_and_bad_targets_are_refused():
    f = forecast_size([100, 200, 400], [0.5, 0.49, 0.48], target_ua=0.7, n_boot=50)
    assert not f.reachable and "not reachable" in f.summary()
    with pytest.raises(ValueError, match="fraction"):
        forecast_size([100, 200], [0.5, 0.6], target_ua=70)
    with pytest.raises(ValueError, match="two distinct"):
        forecast_size([100, 100], [0.5, 0.6], target_ua=0.7)

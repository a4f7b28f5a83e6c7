import numpy as np
import pytest

from train.metrics import classification_scores, confusion_matrix, mean_std, scores_from_confusion


def test_scores_match_a_hand_computed_example():
    # classes 0,1,2: true counts 4, 2, 2
    y_true = [0, 0, 0, 0, 1, 1, 2, 2]
    y_pred = [0, 0, 0, 1, 1, 0, 2, 1]
    cm = confusion_matrix(y_true, y_pred, 3)
    np.testing.assert_array_equal(cm, [[3, 1, 0], [1, 1, 0], [0, 1, 1]])
    s = classification_scores(y_true, y_pred, 3)
    assert s["wa"] == pytest.approx(5 / 8)
    assert s["ua"] == pytest.approx((3 / 4 + 1 / 2 + 1 / 2) / 3)
    # precision: 3/4, 1/3, 1/1 ; recall: 3/4, 1/2, 1/2
    f1 = [2 * p * r / (p + r) for p, r in [(3 / 4, 3 / 4), (1 / 3, 1 / 2), (1.0, 1 / 2)]]
    assert s["f1"] == pytest.approx(np.mean(f1))


def test_absent_classes_are_ignored_and_never_predicted_classes_score_zero():
    cm = np.array([[2, 0, 0], [2, 0, 0], [0, 0, 0]])  # class 2 absent, class 1 never predicted
    s = scores_from_confusion(cm)
    assert s["ua"] == pytest.approx(0.5) and s["wa"] == pytest.approx(0.5)
    assert s["f1"] == pytest.approx((2 * 0.5 * 1 / 1.5 + 0) / 2)


def test_mean_std_is_population_std():
    assert mean_std([1.0, 3.0]) == (2.0, 1.0)
    assert mean_std([0.5]) == (0.5, 0.0)

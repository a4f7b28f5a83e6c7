"""Classification metrics of speech emotion recognition.

UA (unweighted accuracy) = mean per-class recall over the classes present in the reference labels;
WA (weighted accuracy) = plain accuracy; F1 = macro F1 over the classes present in the reference labels
(a class never predicted has precision 0 and F1 0).

Over cross-validation folds the same functions give two honest summaries (:mod:`train.protocol`): the mean
of the per-fold scores (each fold's UA averages over the classes *its* test session holds), and the pooled
scores of the confusion matrix summed over the folds (every held-out prediction counted once).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """int64 [C × C]: row = true class, column = predicted class.

    Class indices outside ``[0, C)`` (e.g. ``-1`` for an unlabelled row) are refused rather than counted in
    the wrong cell.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if len(y_true) != len(y_pred):
        raise ValueError("y_true and y_pred differ in length")
    for name, v in (("y_true", y_true), ("y_pred", y_pred)):
        if len(v) and (v.min() < 0 or v.max() >= n_classes):
            raise ValueError(f"{name} holds class indices outside [0, {n_classes}): {sorted(set(v.tolist()))[:5]}")
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def scores_from_confusion(cm: np.ndarray) -> dict[str, float]:
    """``{"ua", "wa", "f1"}`` (fractions) from a confusion matrix; classes with no true example are ignored."""
    cm = np.asarray(cm, dtype=np.float64)
    support = cm.sum(1)
    present = support > 0
    if not present.any():
        raise ValueError("empty confusion matrix")
    tp = np.diag(cm)
    recall = tp[present] / support[present]
    predicted = cm.sum(0)[present]
    precision = np.divide(tp[present], predicted, out=np.zeros_like(predicted), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    return {"ua": float(recall.mean()), "wa": float(tp.sum() / cm.sum()), "f1": float(f1.mean())}


def classification_scores(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> dict[str, float]:
    """UA, WA and macro F1 (fractions) of integer predictions."""
    return scores_from_confusion(confusion_matrix(y_true, y_pred, n_classes))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (``ddof=0``; 0 for a single value)."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std()) if len(v) > 1 else 0.0


def not_scored(labels: Sequence[str], y: Sequence[int]) -> dict:
    """What a score leaves out: ``{"unlabelled": n, "outside_classes": {label: n}}``.

    ``labels``: str [N] the store's labels (``""``: unlabelled); ``y``: int [N] their class index (``-1``:
    unlabelled, or a label outside the classes being scored).
    """
    from collections import Counter

    outside = Counter(str(lab) for lab, c in zip(labels, y) if lab and c < 0)
    return {"unlabelled": int(sum(1 for lab in labels if not lab)), "outside_classes": dict(sorted(outside.items()))}

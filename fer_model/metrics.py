"""Classification metrics over the seven classes (scikit-learn underneath)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from fer_model.classes import CLASSES


def compute_metrics(labels: np.ndarray, probabilities: np.ndarray, split: str) -> dict[str, Any]:
    """The metrics.json content for true class indices and (N, 7) predicted probabilities."""
    predicted = probabilities.argmax(axis=1)
    all_classes = list(range(len(CLASSES)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=all_classes, zero_division=0
    )
    return {
        "split": split,
        "n": int(len(labels)),
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, labels=all_classes, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(labels, predicted, labels=all_classes, average="weighted", zero_division=0)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
        "classes": list(CLASSES),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(CLASSES)
        },
        "confusion_matrix": confusion_matrix(labels, predicted, labels=all_classes).tolist(),
    }


def report_text(labels: np.ndarray, probabilities: np.ndarray) -> str:
    """scikit-learn's classification report with class names."""
    return classification_report(
        labels,
        probabilities.argmax(axis=1),
        labels=list(range(len(CLASSES))),
        target_names=list(CLASSES),
        digits=4,
        zero_division=0,
    )

"""Metrics of a model's probabilities on a labelled split: what metrics.json, the report, the
checkpoint's best-epoch choice and convert's parity table all compute (scikit-learn, no TensorFlow)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd


@dataclass
class SplitResult:
    """Everything measured on one split: inputs for metrics.json, plots and the report."""

    name: str
    keys: list[str]
    y_true: np.ndarray  # indices into `labels`
    probabilities: np.ndarray  # (N, len(labels)) float32
    labels: list[str]
    metrics: dict

    @property
    def y_pred(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    def predictions_table(self) -> pd.DataFrame:
        table = pd.DataFrame({"split": self.name, "key": self.keys, "label": np.asarray(self.labels)[self.y_true],
                              "predicted": np.asarray(self.labels)[self.y_pred]})  # fmt: skip
        for i, label in enumerate(self.labels):
            table[f"p_{label}"] = np.round(self.probabilities[:, i], 6)
        return table


def compute_metrics(y_true: np.ndarray, probabilities: np.ndarray, labels: Sequence[str]) -> dict:
    """Accuracy, balanced accuracy, macro one-vs-rest ROC AUC, per-class report, confusion matrix.

    Classes absent from `y_true` (possible on small splits, or a model with extra classes)
    have no recall and no AUC; balanced accuracy and macro AUC average the classes present.
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, classification_report, confusion_matrix

    from edgecls.core.clinical_metrics import coverage_curve, expected_calibration_error, reliability_bins

    labels = list(labels)
    y_true = np.asarray(y_true, dtype=np.int64)
    probabilities = np.nan_to_num(np.asarray(probabilities, dtype=np.float64), nan=0.0)
    y_pred = probabilities.argmax(axis=1)
    classes = np.arange(len(labels))
    present = [labels[c] for c in classes if np.any(y_true == c)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true", zero divisions
        report = classification_report(y_true, y_pred, labels=classes, target_names=labels, output_dict=True, zero_division=0)
        balanced = balanced_accuracy_score(y_true, y_pred)
    auc = per_class_auc(y_true, probabilities)
    defined = [v for v in auc.values() if v is not None]
    per_class = {
        label: {
            "precision": report[label]["precision"],
            "recall": report[label]["recall"] if label in present else None,
            "f1": report[label]["f1-score"],
            "support": int(report[label]["support"]),
            "auc": auc[c],
        }
        for c, label in enumerate(labels)
    }
    return {
        "images": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced),
        "macro_auc": float(np.mean(defined)) if defined else None,
        "macro_f1": float(np.mean([per_class[label]["f1"] for label in present])) if present else None,
        "loss": float(-np.mean(np.log(np.clip(probabilities[np.arange(len(y_true)), y_true], 1e-7, 1.0)))),
        "per_class": per_class,
        "classes_absent": [label for label in labels if label not in present],
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=classes).tolist(),
        "calibration": {
            "ece": expected_calibration_error(probabilities, y_true),
            "reliability": reliability_bins(probabilities, y_true),
        },
        "coverage": coverage_curve(probabilities, y_true),
    }


def validation_logs(y_true: np.ndarray, probabilities: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    """The val_* values that pick a best epoch (training's checkpoint and QAT's alike), as Keras
    logs: val_loss, val_accuracy, val_balanced_accuracy, val_auc (NaN when undefined) and
    val_acc_balacc_mean (the mean of accuracy and balanced accuracy)."""
    m = compute_metrics(y_true, probabilities, labels)
    return {"val_loss": m["loss"], "val_accuracy": m["accuracy"], "val_balanced_accuracy": m["balanced_accuracy"],
            "val_auc": m["macro_auc"] if m["macro_auc"] is not None else float("nan"),
            "val_acc_balacc_mean": (m["accuracy"] + m["balanced_accuracy"]) / 2}  # fmt: skip


def per_class_auc(y_true: np.ndarray, probabilities: np.ndarray) -> dict[int, float | None]:
    """One-vs-rest ROC AUC per class; None where the split lacks positives or negatives."""
    from sklearn.metrics import roc_auc_score

    result: dict[int, float | None] = {}
    for c in range(probabilities.shape[1]):
        positives = y_true == c
        result[c] = float(roc_auc_score(positives, probabilities[:, c])) if 0 < positives.sum() < len(y_true) else None
    return result


def summary_line(result: SplitResult) -> str:
    m = result.metrics
    auc = "n/a" if m["macro_auc"] is None else f"{m['macro_auc']:.3f}"
    return (
        f"{result.name}: {m['images']} images, accuracy {m['accuracy']:.3f}, "
        f"balanced accuracy {m['balanced_accuracy']:.3f}, macro AUC {auc}"
    )

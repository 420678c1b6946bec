"""Fit what a converted file needs to give probabilities a clinic can act on, on the validation
split, and measure it on the test split, through the device's own runtime:

- a temperature (calibration), fitted to this very file's outputs (an int8 file's quantized
  softmax included), with the expected calibration error before and after;
- for a class group (malignant vs benign), the most specific threshold that reaches the target
  sensitivity on validation, and the sensitivity and specificity it then gives on test;
- accuracy against coverage, for `classify --min-confidence`;
- flip-averaging (`classify --tta`): its accuracy on validation against one pass, and its cost.

The results go into the file's metadata (temperature, groups, operating point) and the parity
report.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgecls.core.clinical_metrics import (
    binary_rates,
    coverage_curve,
    expected_calibration_error,
    group_report,
    reliability_bins,
    threshold_for_sensitivity,
)
from edgecls.edge_runtime.calibration import apply_temperature, fit_temperature
from edgecls.edge_runtime.classifier import TFLiteClassifier


@dataclass
class Calibration:
    temperature: float
    validation_images: int
    ece_before: float  # test split, top-1, 10 bins
    ece_after: float
    reliability_before: list[dict] = field(default_factory=list)
    reliability_after: list[dict] = field(default_factory=list)
    coverage: list[dict] = field(default_factory=list)  # test split, calibrated
    groups: dict[str, list[str]] = field(default_factory=dict)
    operating_point: dict[str, Any] = field(default_factory=dict)  # what the metadata carries
    group_test: dict[str, Any] = field(default_factory=dict)  # ROC AUC and rates on test at that threshold
    tta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def calibrate_file(model_bytes: bytes, val, test, labels: list[str], groups: dict[str, list[str]],
                   target_sensitivity: float, threads: int | None = None, measure_tta: bool = False) -> Calibration:  # fmt: skip
    """`model_bytes`: the converted file with metadata at temperature 1; `val`, `test`:
    LabelledImages (uint8 images, label indices in `labels` order)."""
    from edgecls.core.metrics import compute_metrics
    from edgecls.core.predict import tflite_predictor

    classifier = TFLiteClassifier(model_bytes, num_threads=threads)
    floor = classifier.probability_floor
    # Uncalibrated probabilities (the file is at temperature 1), as the device computes them.
    raw_probabilities, raw_probabilities_tta = tflite_predictor(classifier), tflite_predictor(classifier, tta=True)
    val_raw, test_raw = raw_probabilities(val.images), raw_probabilities(test.images)
    temperature = fit_temperature(val_raw, val.labels, floor)
    val_cal, test_cal = apply_temperature(val_raw, temperature, floor), apply_temperature(test_raw, temperature, floor)
    result = Calibration(
        temperature=temperature,
        validation_images=len(val.labels),
        ece_before=expected_calibration_error(test_raw, test.labels),
        ece_after=expected_calibration_error(test_cal, test.labels),
        reliability_before=reliability_bins(test_raw, test.labels),
        reliability_after=reliability_bins(test_cal, test.labels),
        coverage=coverage_curve(test_cal, test.labels),
        groups=dict(groups),
    )
    for name, members in groups.items():  # the first group with positives on validation gets the operating point
        index = [labels.index(m) for m in members]
        val_positive = np.isin(val.labels, index)
        if not val_positive.any() or val_positive.all():
            continue
        val_scores = val_cal[:, index].sum(axis=1)
        # Rounded down, never up: rounding up could lose the positive the threshold was set at.
        threshold = math.floor(threshold_for_sensitivity(val_scores, val_positive, target_sensitivity) * 1e6) / 1e6
        on_val = binary_rates(val_scores, val_positive, threshold)
        result.operating_point = {
            "group": name, "threshold": threshold, "target_sensitivity": target_sensitivity,
            "chosen_on": f"validation split ({len(val.labels)} images)",
            "val_sensitivity": on_val["sensitivity"], "val_specificity": on_val["specificity"],
        }  # fmt: skip
        result.group_test = {"group": name, **group_report(test_cal, test.labels, index, threshold)}
        result.group_test.pop("roc", None)
        break
    if measure_tta:
        start = time.perf_counter()
        val_tta = apply_temperature(raw_probabilities_tta(val.images), temperature, floor)
        tta_seconds = time.perf_counter() - start
        start = time.perf_counter()
        raw_probabilities(val.images)
        plain_seconds = time.perf_counter() - start
        plain, flipped = compute_metrics(val.labels, val_cal, labels), compute_metrics(val.labels, val_tta, labels)
        result.tta = {
            "split": "val", "images": len(val.labels),
            "accuracy": plain["accuracy"], "balanced_accuracy": plain["balanced_accuracy"], "macro_auc": plain["macro_auc"],
            "tta_accuracy": flipped["accuracy"], "tta_balanced_accuracy": flipped["balanced_accuracy"],
            "tta_macro_auc": flipped["macro_auc"], "time_ratio": tta_seconds / max(plain_seconds, 1e-9),
        }  # fmt: skip
    return result

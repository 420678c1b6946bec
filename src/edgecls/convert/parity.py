"""Parity: does each converted file still classify like the float Keras model it came from?

Every TFLite file runs through `TFLiteClassifier` exactly as the device runs it (uint8 image ->
`to_input` lookup table -> `scores`), on the test split's images from the shared
preprocessing. Metrics are `edgecls.core.metrics.compute_metrics`, so the numbers here mean
what they mean in a run's metrics.json.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgecls.edge_runtime.classifier import TFLiteClassifier

KERAS = "keras"  # the reference row
GATE_PASSED, GATE_FAILED = "passed", "failed"
WARMUP_INVOKES = 3
KL_EPSILON = 1e-7


@dataclass
class Predictions:
    probabilities: np.ndarray  # (N, classes) float32
    latencies_ms: np.ndarray | None = None  # per image: to_input + invoke + dequantize


def run_tflite(model_bytes: bytes, images: np.ndarray, threads: int | None = None) -> Predictions:
    """Classify uint8 images one by one, as the device does, timing each."""
    classifier = TFLiteClassifier(model_bytes, num_threads=threads)
    buffer = classifier.new_input_buffer()
    for image in images[:WARMUP_INVOKES]:  # first invokes allocate and pack weights
        classifier.scores(classifier.to_input(image, buffer))
    probabilities = np.empty((len(images), classifier.num_classes), np.float32)
    latencies = np.empty(len(images), np.float64)
    for i, image in enumerate(images):
        start = time.perf_counter()
        probabilities[i] = classifier.scores(classifier.to_input(image, buffer))
        latencies[i] = (time.perf_counter() - start) * 1000.0
    return Predictions(probabilities, latencies)


def top1_agreement(reference: np.ndarray, probabilities: np.ndarray) -> float:
    return float(np.mean(reference.argmax(axis=1) == probabilities.argmax(axis=1)))


def mean_kl_divergence(reference: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean KL(reference || probabilities) in nats; both renormalised after clipping, since an
    int8 softmax output is often exactly 0 and its rows only sum to ~1."""
    p = _normalise(reference)
    q = _normalise(probabilities)
    return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=1)))


def _normalise(probabilities: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(probabilities, np.float64), KL_EPSILON, None)
    return clipped / clipped.sum(axis=1, keepdims=True)


@dataclass
class ParityRow:
    """One model measured on the test split: the float Keras reference or one TFLite file."""

    name: str  # "keras" or a conversion mode
    description: str
    accuracy: float | None = None
    balanced_accuracy: float | None = None
    macro_auc: float | None = None
    macro_f1: float | None = None
    agreement: float | None = None  # top-1 agreement with float Keras
    mean_kl: float | None = None  # vs float Keras, nats
    accuracy_drop: float | None = None  # accuracy points behind float Keras
    file: str | None = None
    size_bytes: int | None = None
    latency_ms: float | None = None  # median per image
    latency_p90_ms: float | None = None
    input_type: str | None = None
    integer_only: bool | None = None  # full-integer modes: no float or custom ops left
    float_ops: str = ""
    op_counts: dict[str, int] = field(default_factory=dict)  # TFLite op types in the file
    gate: str | None = None  # "passed" / "failed" for full-integer files, None otherwise
    error: str | None = None  # the conversion failed; no file
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # QAT epochs, calibration, rewrites
    # calibrate.Calibration.to_dict(): temperature, ECE before/after, operating point, coverage, TTA.
    calibration: dict[str, Any] = field(default_factory=dict)


def measure(row: ParityRow, y_true: np.ndarray, labels: list[str], predictions: Predictions, reference: np.ndarray | None) -> ParityRow:
    """Fill `row`'s metrics from predictions on the test split."""
    from edgecls.core.metrics import compute_metrics

    metrics = compute_metrics(y_true, predictions.probabilities, labels)
    row.accuracy = metrics["accuracy"]
    row.balanced_accuracy = metrics["balanced_accuracy"]
    row.macro_auc = metrics["macro_auc"]
    row.macro_f1 = metrics["macro_f1"]
    if reference is not None:
        row.agreement = top1_agreement(reference, predictions.probabilities)
        row.mean_kl = mean_kl_divergence(reference, predictions.probabilities)
    if predictions.latencies_ms is not None and len(predictions.latencies_ms):
        row.latency_ms = float(np.median(predictions.latencies_ms))
        row.latency_p90_ms = float(np.percentile(predictions.latencies_ms, 90))
    return row


@dataclass
class ParityReport:
    """The whole conversion: what was converted from where, every row, and the gate's verdict."""

    model: str
    dataset: str
    labels: list[str]
    image_size: tuple[int, int]
    test_images: int
    test_class_counts: dict[str, int]
    max_drop: float
    io_type: str
    source: str = ""
    run_dir: str | None = None
    output_dir: str = ""
    command: str = ""
    created: str = ""
    edgecls_version: str = ""
    interpreter: str = ""
    threads: int | None = None
    options: dict[str, Any] = field(default_factory=dict)  # the ConvertOptions used
    # What every file takes, as InputNormalization.to_dict(): mean, std (pixel space), range,
    # description, source (detected from the layers, --input-range, or assumed).
    input_normalization: dict[str, Any] = field(default_factory=dict)
    # What the model was trained from (core.pretrained_sources.weights_provenance): name, licence, attribution.
    pretrained_weights: dict[str, Any] = field(default_factory=dict)
    rows: list[ParityRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self, name: str) -> ParityRow:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    @property
    def reference(self) -> ParityRow:
        return self.row(KERAS)

    @property
    def gated_rows(self) -> list[ParityRow]:
        return [row for row in self.rows if row.gate is not None]

    @property
    def failed_conversions(self) -> list[ParityRow]:
        return [row for row in self.rows if row.error]

    @property
    def gate_passed(self) -> bool:
        return all(row.gate == GATE_PASSED for row in self.gated_rows)

    @property
    def verdict(self) -> str:
        """One line: whether every full-integer file is within --max-drop of float Keras."""
        gated = self.gated_rows
        if not gated:
            return "parity gate: not applied (no full-integer file was made)"
        failed = [row for row in gated if row.gate == GATE_FAILED]
        measured = ", ".join(
            f"{row.name} {_percent(row.accuracy)} ({_signed_drop(row.accuracy_drop)})" for row in gated
        )
        allowed = f"allowed drop {self.max_drop:g} point{'s' if abs(self.max_drop) != 1 else ''}"
        head = f"float Keras accuracy {_percent(self.reference.accuracy)}; int8 {measured}; {allowed}"
        if failed:
            files = ", ".join(_failure(row) for row in failed)
            return f"parity gate FAILED: {head}; {files} written but marked failing"
        return f"parity gate passed: {head}"

    def to_dict(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["image_size"] = list(self.image_size)
        doc["gate_passed"] = self.gate_passed
        doc["verdict"] = self.verdict
        return doc


def _signed_drop(drop: float | None) -> str:
    if drop is None or round(drop, 1) == 0:
        return "no drop"
    return f"{drop:.1f} points lower" if drop > 0 else f"{-drop:.1f} points higher"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def apply_gate(row: ParityRow, reference_accuracy: float, max_drop: float) -> None:
    """Full-integer rows pass when they lose at most `max_drop` accuracy points to float Keras
    and compute in integers only: a "full-integer" file with float or custom ops left in would
    fall back to the CPU, or fail to load, on integer-only accelerators (Edge TPU, many NPUs)."""
    row.accuracy_drop = 100.0 * (reference_accuracy - (row.accuracy or 0.0))
    # A hair of tolerance: a drop of exactly max_drop, computed in floats, must pass.
    within = row.accuracy_drop <= max_drop + 1e-9
    row.gate = GATE_PASSED if within and row.integer_only is not False else GATE_FAILED


def _failure(row: ParityRow) -> str:
    name = row.file or row.name
    return f"{name} (ops not integer-only: {row.float_ops})" if row.integer_only is False else name

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

from edgecls.convert.paired import GATE_FAILED, GATE_INCONCLUSIVE, GATE_PASSED, decide, images_to_resolve, paired_difference

KERAS = "keras"  # the reference row
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
    gate: str | None = None  # "passed" / "failed" / "inconclusive" for full-integer files, None otherwise
    # paired.PairedDifference.to_dict(): int8-minus-float accuracy with its confidence interval.
    paired: dict[str, Any] = field(default_factory=dict)
    images_to_resolve: int | None = None  # inconclusive: test images that would settle the gate
    # layer_error.LayerErrors.to_dict(): per Keras layer, the int8 tensor's error against float.
    layer_errors: dict[str, Any] = field(default_factory=dict)
    float_layers: list[str] = field(default_factory=list)  # --keep-float: layers computed in float
    # --auto-keep-float: each file tried, {float_layers, accuracy, accuracy_drop, low, high, gate, size_bytes, latency_ms}.
    keep_float_steps: list[dict[str, Any]] = field(default_factory=list)
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
    def gate(self) -> str | None:
        """The whole conversion's verdict: failed if any full-integer file failed, else
        inconclusive if any was, else passed; None when no file was gated."""
        gates = {row.gate for row in self.gated_rows}
        if not gates:
            return None
        for verdict in (GATE_FAILED, GATE_INCONCLUSIVE):
            if verdict in gates:
                return verdict
        return GATE_PASSED

    @property
    def verdict(self) -> str:
        """One line: whether every full-integer file is within --max-drop of float Keras, with
        the confidence interval of each file's difference."""
        gated = self.gated_rows
        if not gated:
            return "parity gate: not applied (no full-integer file was made)"
        measured = ", ".join(_measured(row) for row in gated)
        allowed = f"allowed drop {self.max_drop:g} point{'s' if abs(self.max_drop) != 1 else ''}"
        head = f"float Keras accuracy {_percent(self.reference.accuracy)}; int8 {measured}; {allowed}"
        if self.gate == GATE_FAILED:
            files = ", ".join(_failure(row) for row in gated if row.gate == GATE_FAILED)
            return f"parity gate FAILED: {head}; {files} written but marked failing"
        if self.gate == GATE_INCONCLUSIVE:
            unsure = [row for row in gated if row.gate == GATE_INCONCLUSIVE]
            return f"parity gate INCONCLUSIVE: {head}; " + "; ".join(self._unresolved(row) for row in unsure)
        return f"parity gate passed: {head}"

    def _unresolved(self, row: ParityRow) -> str:
        """Why a file's verdict is open, how many test images would close it, and how to get them."""
        paired = row.paired
        disagreements = f"{paired.get('discordant', 0)} disagreement{'s' if paired.get('discordant') != 1 else ''}"
        text = (f"{row.file or row.name}: the {self.test_images}-image test split ({disagreements} with float) "
                "cannot tell whether it is within the allowed drop")  # fmt: skip
        if row.images_to_resolve:
            text += f"; about {row.images_to_resolve} test images would, at this disagreement rate"
        return text + f"; {REMEDY}"

    def to_dict(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["image_size"] = list(self.image_size)
        doc["gate_passed"] = self.gate_passed
        doc["gate"] = self.gate
        doc["verdict"] = self.verdict
        return doc


def _signed_drop(drop: float | None) -> str:
    if drop is None or round(drop, 1) == 0:
        return "no drop"
    return f"{drop:.1f} points lower" if drop > 0 else f"{-drop:.1f} points higher"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _measured(row: ParityRow) -> str:
    paired = row.paired
    if not paired:
        return f"{row.name} {_percent(row.accuracy)} ({_signed_drop(row.accuracy_drop)})"
    return (f"{row.name} {_percent(row.accuracy)} ({_signed_drop(row.accuracy_drop)}; {100 * paired['confidence']:.0f}% interval "
            f"of int8 - float [{paired['low']:+.1f}, {paired['high']:+.1f}] points)")  # fmt: skip


REMEDY = (
    "judge on more held-out images: a larger test split (`edgecls train --test-fraction`, or `edgecls convert "
    "--split` with a split.csv whose test part is larger), then convert again"
)


def apply_gate(row: ParityRow, y_true: np.ndarray, reference: np.ndarray, probabilities: np.ndarray, max_drop: float) -> None:
    """Judge a full-integer row against float Keras on the same test images (`reference`,
    `probabilities`: either's per-image probabilities or predicted classes).

    The int8-minus-float accuracy difference gets a paired confidence interval (paired.py):
    passed when its lower end is at or above -max_drop, failed when its upper end is below
    it, inconclusive in between. Whatever the interval, a file that does not compute in
    integers only fails: a "full-integer" file with float or custom ops left in would fall back
    to the CPU, or fail to load, on integer-only accelerators (Edge TPU, many NPUs)."""
    difference = paired_difference(y_true, reference, probabilities)
    row.paired = difference.to_dict()
    row.accuracy_drop = -difference.difference
    row.gate = GATE_FAILED if row.integer_only is False else decide(difference, max_drop)
    row.images_to_resolve = images_to_resolve(difference, max_drop) if row.gate == GATE_INCONCLUSIVE else None


def _failure(row: ParityRow) -> str:
    name = row.file or row.name
    return f"{name} (ops not integer-only: {row.float_ops})" if row.integer_only is False else name

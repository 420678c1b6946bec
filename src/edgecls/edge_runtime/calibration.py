"""Turn a model's raw scores into probabilities a reader can act on, on the device: temperature
scaling, a class group's probability (e.g. malignant) and its flag, abstention. numpy only.

Temperature scaling works on log-probabilities (equivalent to dividing the logits, as the
softmax's normaliser cancels). A full-integer file's softmax output is quantized in steps of
1/256, so a probability below half a step reads as exactly 0: `floor` is then half a step (the
most the quantized value can hide; TFLiteClassifier.probability_floor), and tiny for float files.
"""

from __future__ import annotations

import numpy as np

UNCERTAIN = "uncertain"  # the label given when the top probability is below --min-confidence


FLOAT_FLOOR = 1e-12


def apply_temperature(probabilities: np.ndarray, temperature: float, floor: float = FLOAT_FLOOR) -> np.ndarray:
    """softmax(log(p) / T) along the last axis; T = 1 returns `probabilities` unchanged."""
    if temperature == 1.0:
        return probabilities
    logs = np.log(np.maximum(np.asarray(probabilities, np.float64), floor)) / temperature
    logs -= logs.max(axis=-1, keepdims=True)
    scaled = np.exp(logs)
    return (scaled / scaled.sum(axis=-1, keepdims=True)).astype(np.float32)


def group_probability(probabilities: np.ndarray, members: list[int]) -> np.ndarray:
    """P(the class is one of `members`): the sum of their probabilities (last axis)."""
    return np.asarray(probabilities, np.float64)[..., members].sum(axis=-1)


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray, floor: float = FLOAT_FLOOR, low: float = 0.05,
                    high: float = 20.0) -> float:  # fmt: skip
    """The temperature that minimises the negative log-likelihood of `labels` (held-out data).

    One parameter on a convex-in-log(T) objective: a golden-section search is exact enough
    (to 1e-4 in log T) and needs no optimiser library on the device side.
    """
    labels = np.asarray(labels)

    def nll(log_t: float) -> float:
        scaled = apply_temperature(probabilities, float(np.exp(log_t)), floor)
        return float(-np.mean(np.log(np.maximum(scaled[np.arange(len(labels)), labels], 1e-12))))

    a, b = np.log(low), np.log(high)
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(c), nll(d)
    while b - a > 1e-4:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(d)
    return round(float(np.exp((a + b) / 2.0)), 4)

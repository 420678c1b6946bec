"""The parity gate's statistics: how far behind float an int8 file is, and how sure we are of it.

Float and int8 classify the same test images, so the two accuracies are paired: what differs
between them is decided entirely by the images where exactly one of the two is right (the
discordant pairs). With `n` test images, `b` images only float gets right and `c` only int8 gets
right, the accuracy difference int8 - float is (c - b) / n. Given the m = b + c discordant
images, c is binomial(m, p), p being the chance that a disagreement goes int8's way (McNemar's
exact test conditions the same way). The Clopper-Pearson interval [p_lo, p_hi] for p turns
into the interval (m / n) * (2 p - 1) for the difference: exact for the split of the
disagreements, conditional on how many there were (it does not widen for the uncertainty of
the disagreement rate itself; when float and int8 agree on every image the interval is [0, 0]).

numpy and scipy only; no TensorFlow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

CONFIDENCE = 0.95
METHOD = (
    "exact conditional interval: Clopper-Pearson on the split of the discordant images "
    "(McNemar's conditioning), times the observed disagreement rate"
)
# Tolerance for a bound computed in floats landing exactly on the allowed drop.
_EPSILON = 1e-9
_MAX_IMAGES = 10**8

GATE_PASSED, GATE_FAILED, GATE_INCONCLUSIVE = "passed", "failed", "inconclusive"


@dataclass
class PairedDifference:
    """int8-minus-float accuracy on paired predictions, in accuracy points (percent)."""

    images: int
    float_only: int  # images float gets right and int8 gets wrong
    int8_only: int  # images int8 gets right and float gets wrong
    difference: float  # points: 100 * (int8_only - float_only) / images
    low: float  # points: the interval's lower end
    high: float  # points: the interval's upper end
    confidence: float = CONFIDENCE
    method: str = METHOD

    @property
    def discordant(self) -> int:
        return self.float_only + self.int8_only

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["discordant"] = self.discordant
        return doc


def clopper_pearson(successes: float, trials: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval for a binomial proportion. Counts may be fractional
    (`images_to_resolve` asks about a split of another size at the same rates): the beta
    quantiles are defined for them."""
    from scipy.stats import beta

    if trials <= 0:
        return 0.0, 1.0
    alpha = 1.0 - confidence
    low = 0.0 if successes <= 0 else float(beta.ppf(alpha / 2, successes, trials - successes + 1))
    high = 1.0 if successes >= trials else float(beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    return low, high


def paired_difference(y_true, float_predicted, int8_predicted, confidence: float = CONFIDENCE) -> PairedDifference:
    """Compare two classifiers' top-1 labels on the same images (class indices or probability rows)."""
    y_true = np.asarray(y_true)
    float_right = _labels(float_predicted) == y_true
    int8_right = _labels(int8_predicted) == y_true
    if float_right.shape != int8_right.shape or float_right.ndim != 1:
        raise ValueError("paired_difference needs one prediction per image from each model")
    n = int(len(y_true))
    b = int(np.sum(float_right & ~int8_right))
    c = int(np.sum(int8_right & ~float_right))
    low, high = _interval(n, b, c, confidence)
    return PairedDifference(n, b, c, 100.0 * (c - b) / n if n else 0.0, low, high, confidence)


def _labels(predicted) -> np.ndarray:
    predicted = np.asarray(predicted)
    return predicted.argmax(axis=1) if predicted.ndim == 2 else predicted


def _interval(n: float, b: float, c: float, confidence: float) -> tuple[float, float]:
    m = b + c
    if n <= 0 or m <= 0:
        return 0.0, 0.0
    p_low, p_high = clopper_pearson(c, m, confidence)
    rate = m / n
    return 100.0 * rate * (2 * p_low - 1), 100.0 * rate * (2 * p_high - 1)


def decide(difference: PairedDifference, max_drop: float) -> str:
    """passed: the interval's lower end is at or above -max_drop; failed: its upper end is
    below it; inconclusive: the interval straddles it (the split is too small to tell)."""
    if difference.low >= -max_drop - _EPSILON:
        return GATE_PASSED
    if difference.high < -max_drop - _EPSILON:
        return GATE_FAILED
    return GATE_INCONCLUSIVE


def images_to_resolve(difference: PairedDifference, max_drop: float) -> int | None:
    """How many test images would settle the gate, if float and int8 disagreed as often, and
    split their disagreements the same way, as on this split. None when no number would: the
    observed difference sits exactly on the allowed drop, or there were no disagreements."""
    n, m = difference.images, difference.discordant
    if n <= 0 or m <= 0 or abs(difference.difference + max_drop) < _EPSILON:
        return None
    rate, share = m / n, difference.int8_only / m
    resolved_at_pass = difference.difference > -max_drop

    def resolved(size: int) -> bool:
        low, high = _interval(size, rate * size * (1 - share), rate * size * share, difference.confidence)
        return low >= -max_drop - _EPSILON if resolved_at_pass else high < -max_drop - _EPSILON

    if resolved(n):
        return n
    low, high = n, 2 * n
    while not resolved(high):
        if high > _MAX_IMAGES:
            return None
        low, high = high, 2 * high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if resolved(middle) else (middle, high)
    return high

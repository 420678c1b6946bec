"""The parity gate's statistics on constructed prediction pairs: three verdicts, the interval
against an independent computation, and the number of test images that would settle it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import binom

from edgecls.convert.paired import decide, images_to_resolve, paired_difference
from edgecls.errors import EXIT_GATE, EXIT_INCONCLUSIVE, EdgeclsError, ParityGateFailed, ParityGateInconclusive


def pairs(n: int, float_only: int, int8_only: int, both_wrong: int = 0, classes: int = 3, seed: int = 0):
    """Labels and two prediction sets on n images: `float_only` images only float gets right,
    `int8_only` only int8, `both_wrong` neither, the rest both; shuffled, several classes."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    wrong = (y + 1) % classes
    float_pred, int8_pred = y.copy(), y.copy()
    order = rng.permutation(n)
    a, b, c = order[:float_only], order[float_only : float_only + int8_only], order[float_only + int8_only :][:both_wrong]
    int8_pred[a] = wrong[a]
    float_pred[b] = wrong[b]
    float_pred[c] = int8_pred[c] = wrong[c]
    return y, float_pred, int8_pred


def reference_interval(n: int, b: int, c: int, confidence: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson by root-finding on the binomial tails (not via beta quantiles), mapped to the
    difference: (m / n) * (2 p - 1), in points."""
    m, alpha = b + c, 1 - confidence
    low = 0.0 if c == 0 else brentq(lambda p: binom.sf(c - 1, m, p) - alpha / 2, 1e-12, 1 - 1e-12)
    high = 1.0 if c == m else brentq(lambda p: binom.cdf(c, m, p) - alpha / 2, 1e-12, 1 - 1e-12)
    return 100 * m / n * (2 * low - 1), 100 * m / n * (2 * high - 1)


def test_many_agreeing_images_pass():
    y, f, q = pairs(2000, float_only=6, int8_only=4, both_wrong=300)
    d = paired_difference(y, f, q)
    assert (d.images, d.float_only, d.int8_only, d.discordant) == (2000, 6, 4, 10)
    assert d.difference == pytest.approx(-0.1) and -1 < d.low < d.difference < d.high
    assert decide(d, 1.0) == "passed"


def test_a_clear_drop_fails():
    y, f, q = pairs(500, float_only=60, int8_only=5, both_wrong=50)
    d = paired_difference(y, f, q)
    assert d.difference == pytest.approx(-11.0) and d.high < -1
    assert decide(d, 1.0) == "failed"
    # The allowed drop keeps its meaning: 20 points allowed, 11 lost with confidence below 20: passes.
    assert decide(d, 20.0) == "passed"


def test_one_flip_on_a_small_split_is_inconclusive_and_says_what_would_settle_it():
    # The demo's split: 69 images, float right and int8 wrong on one (1.45 points > 1 allowed).
    y, f, q = pairs(69, float_only=1, int8_only=0, both_wrong=5)
    d = paired_difference(y, f, q)
    assert d.difference == pytest.approx(-100 / 69) and d.low < -1 < d.high
    assert decide(d, 1.0) == "inconclusive"
    needed = images_to_resolve(d, 1.0)
    assert needed is not None and needed > 69
    # At that many images with the same rates the interval leaves -1 behind; one fewer, not yet.
    for size, verdict in ((needed, "failed"), (needed - 1, "inconclusive")):
        rate = 1 / 69
        low, high = interval_at(size, rate * size, 0.0)
        assert decide(type(d)(size, 0, 0, d.difference, low, high), 1.0) == verdict, size


def interval_at(n: float, b: float, c: float):
    """The interval at a split size where the counts scale fractionally (what images_to_resolve asks)."""
    from edgecls.convert.paired import _interval

    return _interval(n, b, c, 0.95)


def test_an_inconclusive_gain_side_split_needs_images_to_pass():
    y, f, q = pairs(84, float_only=12, int8_only=12, both_wrong=20)
    d = paired_difference(y, f, q)
    assert d.difference == 0 and decide(d, 1.0) == "inconclusive"
    needed = images_to_resolve(d, 1.0)
    # 24 disagreements in 84 images split evenly: a +-1 point interval needs thousands of images.
    assert needed is not None and needed > 1000


@pytest.mark.parametrize("n, b, c", [(84, 13, 11), (69, 1, 0), (300, 40, 10), (1000, 0, 7), (50, 3, 3)])
def test_interval_matches_an_independent_clopper_pearson(n, b, c):
    y, f, q = pairs(n, b, c, both_wrong=min(5, n - b - c))
    d = paired_difference(y, f, q)
    low, high = reference_interval(n, b, c)
    assert d.low == pytest.approx(low, abs=1e-6) and d.high == pytest.approx(high, abs=1e-6)
    assert d.low <= d.difference <= d.high


def test_no_disagreement_is_a_zero_width_interval():
    y, f, q = pairs(40, 0, 0, both_wrong=10)
    d = paired_difference(y, f, q)
    assert (d.low, d.high, d.difference) == (0.0, 0.0, 0.0) and decide(d, 0.0) == "passed"
    assert images_to_resolve(d, 1.0) is None


def test_probability_rows_are_read_as_their_top_class():
    y, f, q = pairs(30, 2, 1)
    d = paired_difference(y, np.eye(3)[f], np.eye(3)[q] * 0.7 + 0.1)
    assert (d.float_only, d.int8_only) == (2, 1)


def test_gate_errors_carry_their_exit_codes_and_are_edgecls_errors():
    assert issubclass(ParityGateFailed, EdgeclsError) and issubclass(ParityGateInconclusive, EdgeclsError)
    from edgecls.cli.support import exit_code

    assert exit_code(ParityGateFailed("x")) == EXIT_GATE == 3
    assert exit_code(ParityGateInconclusive("x")) == EXIT_INCONCLUSIVE == 4
    assert exit_code(EdgeclsError("x")) == 2


def constructed_report(float_only: int, int8_only: int, n: int = 69):
    from edgecls.convert.parity import ParityReport, ParityRow, apply_gate

    y, f, q = pairs(n, float_only, int8_only, both_wrong=3)
    report = ParityReport("m", "d", ["a", "b", "c"], (8, 8), test_images=n, test_class_counts={}, max_drop=1.0, io_type="uint8")
    reference = ParityRow("keras", "float", accuracy=float(np.mean(f == y)))
    row = ParityRow("qat", "int8", accuracy=float(np.mean(q == y)), file="model_int8.tflite", integer_only=True)
    report.rows = [reference, row]
    apply_gate(row, y, f, q, report.max_drop)
    return report


@pytest.mark.parametrize("float_only, verdict, error", [(0, "passed", None), (1, "inconclusive", ParityGateInconclusive),
                                                         (20, "failed", ParityGateFailed)])  # fmt: skip
def test_conversion_result_check_raises_the_verdicts_error(float_only, verdict, error):
    from edgecls.api.converting import ConversionResult
    from edgecls.convert.report import to_markdown

    report = constructed_report(float_only, 0)
    result = ConversionResult(report)
    assert result.gate == report.gate == verdict and result.passed == (verdict == "passed")
    assert report.to_dict()["rows"][1]["paired"]["float_only"] == float_only
    markdown = to_markdown(report)
    assert "95% confidence interval" in markdown and "exit code 4" in markdown
    if error is None:
        assert result.check() is result and report.verdict.startswith("parity gate passed")
        return
    with pytest.raises(error) as excinfo:
        result.check()
    message = str(excinfo.value)
    assert message == report.verdict and "interval of int8 - float [" in message
    if verdict == "inconclusive":
        assert "INCONCLUSIVE" in message and "test images would" in message and "--test-fraction" in message
        assert str(report.rows[1].images_to_resolve) in message
    else:
        assert "FAILED" in message and "model_int8.tflite written but marked failing" in message

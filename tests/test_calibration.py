"""Temperature scaling, class groups with an operating point, abstention and flip-averaging:
the numbers a clinic reads, on synthetic data whose true answers are known."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import colour_keras_model, convert

from edgecls.core.clinical_metrics import (
    binary_rates,
    coverage_curve,
    expected_calibration_error,
    group_report,
    reliability_bins,
    threshold_for_sensitivity,
)
from edgecls.edge_runtime.calibration import UNCERTAIN, apply_temperature, fit_temperature
from edgecls.edge_runtime.classifier import TFLiteClassifier, flips
from edgecls.edge_runtime.metadata import ModelMetadata, write_metadata


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def overconfident(n=6000, classes=5, true_temperature=2.5, seed=0):
    """Labels drawn from softmax(z / 2.5), probabilities reported as softmax(z): overconfident."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, (n, classes))
    truth = softmax(z / true_temperature)
    labels = np.array([rng.choice(classes, p=p) for p in truth])
    return softmax(z).astype(np.float32), labels


def test_fitted_temperature_recovers_the_true_one_and_halves_the_calibration_error():
    probabilities, labels = overconfident()
    temperature = fit_temperature(probabilities, labels)
    assert temperature == pytest.approx(2.5, rel=0.1)
    before = expected_calibration_error(probabilities, labels)
    after = expected_calibration_error(apply_temperature(probabilities, temperature), labels)
    assert before > 0.1 and after < before / 2
    # Scaling never changes the top-1 answer.
    assert np.array_equal(apply_temperature(probabilities, temperature).argmax(1), probabilities.argmax(1))


def test_a_calibrated_model_keeps_temperature_one():
    rng = np.random.default_rng(1)
    probabilities = softmax(rng.normal(0, 2, (6000, 4)))
    labels = np.array([rng.choice(4, p=p) for p in probabilities])
    assert fit_temperature(probabilities, labels) == pytest.approx(1.0, abs=0.1)
    assert expected_calibration_error(probabilities, labels) < 0.03


def test_reliability_bins_and_coverage_count_every_image():
    probabilities, labels = overconfident(n=2000)
    bins = reliability_bins(probabilities, labels)
    assert sum(b["count"] for b in bins) == 2000 and len(bins) == 10
    curve = coverage_curve(probabilities, labels)
    assert curve[0]["coverage"] == 1.0 and curve[0]["accuracy"] == pytest.approx(np.mean(probabilities.argmax(1) == labels))
    coverages = [row["coverage"] for row in curve]
    assert coverages == sorted(coverages, reverse=True)
    # Abstaining on the least confident images raises the accuracy of the rest.
    assert curve[-2]["accuracy"] > curve[0]["accuracy"]


def test_threshold_for_sensitivity_is_the_most_specific_that_reaches_it():
    rng = np.random.default_rng(2)
    positive = rng.random(1000) < 0.3
    scores = np.where(positive, rng.beta(5, 2, 1000), rng.beta(2, 5, 1000))
    threshold = threshold_for_sensitivity(scores, positive, 0.9)
    at = binary_rates(scores, positive, threshold)
    assert at["sensitivity"] >= 0.9 and at["positives"] == positive.sum()
    # No threshold that reaches the target is more specific, or as specific and more sensitive.
    for other in np.unique(scores):
        rates = binary_rates(scores, positive, other)
        if rates["sensitivity"] >= 0.9:
            assert (rates["specificity"], rates["sensitivity"]) <= (at["specificity"], at["sensitivity"])
    assert binary_rates(scores, positive, 0.0)["sensitivity"] == 1.0
    report = group_report(np.stack([1 - scores, scores], 1), positive.astype(int), [1], threshold)
    assert 0.8 < report["auc"] <= 1.0 and report["sensitivity"] == at["sensitivity"]


def test_a_separable_group_gets_every_positive_it_can_without_a_false_alarm():
    scores = np.array([0.01, 0.2, 0.3, 0.5, 0.6, 0.9, 0.95, 0.99])
    positive = np.array([0, 0, 0, 1, 1, 1, 1, 1], bool)
    assert threshold_for_sensitivity(scores, positive, 0.6) == 0.5  # sensitivity 1.0, specificity 1.0


@pytest.fixture(scope="module")
def colour_float() -> bytes:
    return convert(colour_keras_model(16), 16, "float32")


@pytest.fixture(scope="module")
def position_float() -> bytes:
    """A model that sees where colours are (a dense layer on the pixels): flips change its answer."""
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inputs))
    return convert(keras.Model(inputs, outputs), 16, "float32")


def classifier(model_bytes: bytes, **fields) -> TFLiteClassifier:
    meta = ModelMetadata(labels=["red", "green", "blue"], input_size=(16, 16), **fields)
    return TFLiteClassifier(write_metadata(model_bytes, meta))


def test_device_applies_the_temperature_groups_flag_and_abstention(colour_float):
    image = np.zeros((16, 16, 3), np.uint8)
    image[..., 0], image[..., 1] = 150, 90  # reddish: red wins, green second
    plain = classifier(colour_float).predict(image)
    warm = classifier(colour_float, temperature=3.0).predict(image)
    assert warm.label == plain.label == "red" and warm.probability < plain.probability
    assert warm.probabilities == pytest.approx(apply_temperature(plain.probabilities[None], 3.0)[0], abs=1e-5)

    grouped = classifier(
        colour_float, groups={"warm": ["red", "green"]}, operating_point={"group": "warm", "threshold": 0.95}
    ).predict(image)
    assert grouped.groups["warm"] == pytest.approx(plain.probabilities[0] + plain.probabilities[1], abs=1e-6)
    assert grouped.flag is (grouped.groups["warm"] >= 0.95)
    assert classifier(colour_float).predict(image).flag is None

    unsure = classifier(colour_float).predict(image, min_confidence=plain.probability + 0.01)
    assert unsure.label == UNCERTAIN and unsure.probability == plain.probability
    assert classifier(colour_float).predict(image, min_confidence=plain.probability).label == "red"


def test_flip_averaging_is_the_mean_over_the_four_flips(position_float):
    clf = classifier(position_float)
    image = np.random.default_rng(3).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    views = [clf.predict(np.ascontiguousarray(view)).probabilities for view in flips(image)]
    assert np.ptp(np.array(views), axis=0).max() > 0.01  # the flips really differ for this model
    assert clf.predict(image, tta=True).probabilities == pytest.approx(np.mean(views, axis=0), abs=1e-6)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"groups": {"malignant": ["purple"]}}, "group"),
        ({"groups": {"warm": ["red"]}, "operating_point": {"group": "cold", "threshold": 0.5}}, "operating_point"),
        ({"groups": {"warm": ["red"]}, "operating_point": {"group": "warm", "threshold": 1.5}}, "operating_point"),
    ],
)
def test_impossible_calibration_metadata_is_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        ModelMetadata(labels=["red", "green", "blue"], input_size=(16, 16), **fields).check()


def test_evaluate_reports_calibration_coverage_and_the_groups_operating_point(colour_float, tmp_path):
    """`edgecls evaluate` of a file carrying a group and an operating point, on images whose
    answers are known: the group's rates are measured at the file's own threshold."""
    import json

    from PIL import Image
    from typer.testing import CliRunner

    from edgecls.cli import app

    rng = np.random.default_rng(4)
    for c, name in enumerate(["red", "green", "blue"]):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(12):
            image = rng.integers(0, 120, (24, 24, 3)).astype(np.uint8)
            image[..., c] = rng.integers(90, 256)  # the class colour leads, by a varying margin
            Image.fromarray(image).save(tmp_path / "data" / name / f"{i}.png")
    meta = ModelMetadata(labels=["red", "green", "blue"], input_size=(16, 16), groups={"warm": ["red", "green"]},
                         operating_point={"group": "warm", "threshold": 0.5})  # fmt: skip
    model = tmp_path / "colour.tflite"
    model.write_bytes(write_metadata(colour_float, meta))
    for extra, folder in (([], "plain"), (["--tta"], "flipped")):
        result = CliRunner().invoke(app, ["evaluate", str(model), str(tmp_path / "data"), "--output", str(tmp_path / folder), *extra])
        assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "plain" / "metrics.json").read_text())["all"]
    assert 0 <= metrics["calibration"]["ece"] <= 1 and sum(b["count"] for b in metrics["calibration"]["reliability"]) == 36
    assert metrics["coverage"][0] == {"min_confidence": 0.0, "coverage": 1.0, "accuracy": metrics["accuracy"]}
    warm = metrics["groups"]["warm"]
    assert warm["threshold"] == 0.5 and warm["threshold_source"] == "the model's operating point"
    assert warm["positives"] == 24 and warm["negatives"] == 12 and warm["sensitivity"] is not None
    report = (tmp_path / "plain" / "report.md").read_text()
    assert "Calibration and abstention" in report and "Warm vs the rest" in report
    assert (tmp_path / "plain" / "plots" / "reliability_all.png").is_file()
    assert "flip-averaged" in json.loads((tmp_path / "flipped" / "metrics.json").read_text())["model"]


@pytest.mark.parametrize("count", [3, 40])  # one by one, and the batched folder path
def test_classify_reports_group_probability_flag_abstention_and_tta(position_float, tmp_path, count):
    import csv
    import json

    from PIL import Image
    from typer.testing import CliRunner

    from edgecls.cli import app

    meta = ModelMetadata(labels=["red", "green", "blue"], input_size=(16, 16), groups={"warm": ["red", "green"]},
                         operating_point={"group": "warm", "threshold": 0.6})  # fmt: skip
    model = tmp_path / "position.tflite"
    model.write_bytes(write_metadata(position_float, meta))
    rng = np.random.default_rng(5)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(count):
        image = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
        image[:10, :, i % 3] = 255  # not flip-symmetric, so flipping matters
        Image.fromarray(image).save(folder / f"{i:02d}.png")
    clf = TFLiteClassifier(model)
    runner = CliRunner()

    def run(*extra):
        result = runner.invoke(app, ["classify", "--model", str(model), str(folder), "--format", "json", *extra])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    from edgecls.edge_runtime import load_image

    records = run()
    for record in records:
        expected = clf.predict(load_image(record["path"], (16, 16)))
        assert record["warm_probability"] == pytest.approx(expected.groups["warm"], abs=1e-5)
        assert record["flag"] is (expected.groups["warm"] >= 0.6)
    flipped = run("--tta")
    for record in flipped:
        expected = clf.predict(load_image(record["path"], (16, 16)), tta=True)
        assert record["probability"] == pytest.approx(expected.probability, abs=1e-5)
    assert any(a["probability"] != pytest.approx(b["probability"], abs=1e-4) for a, b in zip(records, flipped))
    cut = sorted(r["probability"] for r in records)[len(records) // 2]
    unsure = run("--min-confidence", str(cut))
    assert [r["label"] == "uncertain" for r in unsure] == [r["probability"] < cut for r in records]
    result = runner.invoke(app, ["classify", "--model", str(model), str(folder), "--format", "csv"])
    header = next(csv.reader(result.stdout.splitlines()))
    assert header == ["path", "label", "probability", "top_k", "warm_probability", "flag", "latency_ms"]
    bad = runner.invoke(app, ["classify", "--model", str(model), str(folder), "--min-confidence", "1.5"])
    assert bad.exit_code == 2


def test_ece_sampling_floor_is_what_a_calibrated_model_shows_and_below_a_miscalibrated_one():
    from edgecls.core.clinical_metrics import ece_sampling_floor

    probabilities, labels = overconfident(n=3000)
    floor = ece_sampling_floor(probabilities, draws=50)
    assert 0 < floor["mean"] < 0.05 and floor["std"] > 0
    # The overconfident labels sit far above the floor; a temperature brings them near it.
    assert expected_calibration_error(probabilities, labels) > floor["mean"] + 5 * floor["std"]
    calibrated = apply_temperature(probabilities, fit_temperature(probabilities, labels))
    assert expected_calibration_error(calibrated, labels) < ece_sampling_floor(calibrated, draws=50)["mean"] + 4 * floor["std"]

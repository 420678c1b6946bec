"""Metrics, and `edgecls evaluate` on Keras and TFLite models whose answers are known from their weights."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_train import COLOURS, cli, make_colour_folders
from tiny_models import colour_keras_model, colour_tflite

from edgecls.core.metrics import compute_metrics

LABELS = ["red", "green", "blue"]  # the tiny colour models' output order


@pytest.fixture(scope="module")
def colour_data(tmp_path_factory):
    return make_colour_folders(tmp_path_factory.mktemp("colours"), per_class=12)


def test_metrics_match_hand_counts():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    probabilities = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1],
                              [0.1, 0.8, 0.1], [0.5, 0.4, 0.1], [0.1, 0.2, 0.7]])  # fmt: skip
    m = compute_metrics(y_true, probabilities, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m["confusion_matrix"] == [[2, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert m["per_class"]["a"]["precision"] == pytest.approx(2 / 3) and m["per_class"]["c"]["support"] == 1
    assert m["per_class"]["c"]["auc"] == 1.0
    assert m["macro_auc"] == pytest.approx(np.mean([m["per_class"][c]["auc"] for c in "abc"]))
    assert m["classes_absent"] == []


def test_metrics_with_a_class_absent_from_the_split():
    y_true = np.array([0, 0, 1, 1])
    probabilities = np.array([[0.7, 0.2, 0.1], [0.6, 0.1, 0.3], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6]])
    m = compute_metrics(y_true, probabilities, ["a", "b", "c"])
    assert m["classes_absent"] == ["c"]
    assert m["per_class"]["c"]["auc"] is None and m["per_class"]["c"]["recall"] is None
    assert m["balanced_accuracy"] == pytest.approx((1 + 0.5) / 2)  # over the classes present
    assert m["macro_auc"] == pytest.approx(np.mean([m["per_class"]["a"]["auc"], m["per_class"]["b"]["auc"]]))
    json.dumps(m)  # metrics.json-ready: plain Python types only


def _check_report(folder, expected_accuracy_at_least: float):
    for name in ("metrics.json", "predictions.csv", "report.md", "plots/confusion_all.png", "plots/roc_all.png"):
        assert (folder / name).is_file(), name
    metrics = json.loads((folder / "metrics.json").read_text())
    table = pd.read_csv(folder / "predictions.csv")
    assert metrics["labels"] == LABELS and len(table) == metrics["all"]["images"] == 36
    # metrics.json agrees with the per-image predictions written beside it
    assert metrics["all"]["accuracy"] == pytest.approx((table["label"] == table["predicted"]).mean())
    probabilities = table[[f"p_{c}" for c in LABELS]].to_numpy()
    assert (np.asarray(LABELS)[probabilities.argmax(axis=1)] == table["predicted"]).all()
    assert metrics["all"]["accuracy"] >= expected_accuracy_at_least
    return metrics


def test_evaluate_keras_model_with_labels_beside_it(colour_data, tmp_path):
    model_dir = tmp_path / "colour"
    model_dir.mkdir()
    colour_keras_model(32).save(model_dir / "model.keras")
    (model_dir / "labels.json").write_text(json.dumps(LABELS))
    result = cli("evaluate", model_dir / "model.keras", colour_data, "--output", tmp_path / "report")
    assert result.exit_code == 0, result.output
    assert "accuracy 1.000" in result.output and "metrics.json" in result.output
    _check_report(tmp_path / "report", 1.0)
    # No convolution in this model, so no Grad-CAM (the trained run in test_train.py has one).
    assert not (tmp_path / "report" / "plots" / "gradcam_all.png").exists()


def test_evaluate_int8_tflite_model_labels_from_metadata(colour_data, tmp_path):
    model = tmp_path / "colour_int8.tflite"
    model.write_bytes(colour_tflite("int8", size=16))
    result = cli("evaluate", model, colour_data, "-o", tmp_path / "report")
    assert result.exit_code == 0, result.output
    assert "TFLite (int8 input)" in result.output
    metrics = _check_report(tmp_path / "report", 0.95)
    assert metrics["all"]["macro_auc"] > 0.95
    assert "No Grad-CAM overlays" in (tmp_path / "report" / "report.md").read_text()  # said, not silently missing


def test_an_earlier_report_is_replaced_only_with_force(colour_data, tmp_path):
    model = tmp_path / "colour.tflite"
    model.write_bytes(colour_tflite("float32", size=16))
    assert cli("evaluate", model, colour_data, "-o", tmp_path / "report").exit_code == 0
    metrics = tmp_path / "report" / "metrics.json"
    metrics.write_text("{}")  # a marker: refusing must leave the earlier report as it was
    result = cli("evaluate", model, colour_data, "-o", tmp_path / "report")
    assert result.exit_code == 2 and "already holds an evaluation" in result.output and "--force" in result.output
    assert metrics.read_text() == "{}"
    result = cli("evaluate", model, colour_data, "-o", tmp_path / "report", "--force")
    assert result.exit_code == 0, result.output
    assert json.loads(metrics.read_text())["all"]["images"] == 36


def test_split_needs_a_run(colour_data, tmp_path):
    model = tmp_path / "colour.tflite"
    model.write_bytes(colour_tflite("float32", size=16))
    result = cli("evaluate", model, colour_data, "--split", "test", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "--split test needs the run" in result.output
    assert result.output.count("\n") == 1


def test_dataset_classes_the_model_does_not_know(tmp_path):
    data = make_colour_folders(tmp_path / "data", per_class=3)
    (data / "red").rename(data / "purple")
    model = tmp_path / "colour.tflite"
    model.write_bytes(colour_tflite("float32", size=16))
    result = cli("evaluate", model, data, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "classes the model does not know: purple" in result.output


def test_missing_model_and_wrong_kind(colour_data, tmp_path):
    result = cli("evaluate", tmp_path / "none.tflite", colour_data, "-o", tmp_path / "out")
    assert result.exit_code == 2 and result.output.startswith("edgecls: error:") and "no such model file" in result.output
    (tmp_path / "model.onnx").write_bytes(b"x")
    result = cli("evaluate", tmp_path / "model.onnx", colour_data, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "expected a .keras or .tflite model" in result.output


def test_colour_classes_cover_the_tiny_models_labels():
    assert sorted(COLOURS) == sorted(LABELS)


def test_gradcam_without_a_gradient_path_is_one_line_error():
    """A feature map the output does not depend on differentiably (here a stop_gradient after it)
    gives Grad-CAM nothing to weight: a one-line EdgeclsError, which the report turns into a note."""
    from edgecls.core.tf_env import import_tf
    from edgecls.errors import EdgeclsError
    from edgecls.train.gradcam import gradcam_heatmaps

    tf, keras = import_tf()
    inputs = keras.Input((8, 8, 3))
    features = keras.layers.Conv2D(2, 3, padding="same", name="conv")(inputs)
    cut = keras.layers.Lambda(tf.stop_gradient)(features)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(cut))
    model = keras.Model(inputs, outputs)
    images = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(EdgeclsError, match="no gradient"):
        gradcam_heatmaps(model, images, np.array([0, 1]), layer=model.get_layer("conv"))

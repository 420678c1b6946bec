"""When int8 loses accuracy: the per-layer error report, --keep-float and --auto-keep-float.

The model is built here with known weights, so where int8 breaks is known: a colour classifier
(mean colour -> identity-like dense layers -> softmax) whose "fragile" Dense layer reads the
colours through weights of 0.02 beside a weight of 300 on a feature that is always 0 (a ReLU of
minus the mean). In float the big weight multiplies 0 and changes nothing; int8's weight step
for that layer is 300 / 127, so the 0.02 weights round to 0 and the colour signal is gone. The
same classifier without that layer quantizes well.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from edgecls.cli import app
from edgecls.convert import ConvertOptions
from edgecls.edge_runtime.metadata import read_metadata
from edgecls.errors import EXIT_ERROR, EXIT_GATE

SIZE = 16
LABELS = ["blue", "green", "red"]  # the dataset's sorted folders
PER_CLASS = 40
runner = CliRunner()


def colour_images(root, per_class: int = PER_CLASS, seed: int = 0):
    rng = np.random.default_rng(seed)
    for channel, label in ((2, "blue"), (1, "green"), (0, "red")):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 110, (SIZE, SIZE, 3))
            image[..., channel] = rng.integers(150, 256, (SIZE, SIZE))
            Image.fromarray(image.astype(np.uint8)).save(root / label / f"{label}_{i:03d}.png")
    return root


def colour_model(keras, fragile: bool):
    """Scores blue, green, red (the labels' order) from the mean colour; `fragile` adds the
    layer that int8 cannot represent."""
    order = np.zeros((3, 3), np.float32)
    order[[2, 1, 0], [0, 1, 2]] = 1.0  # RGB -> blue, green, red
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.GlobalAveragePooling2D(name="mean_colour")(inputs)
    features = keras.layers.Dense(4, activation="relu", name="features")
    head = keras.layers.Dense(3, name="logits")
    x = features(x)
    fragile_layer = keras.layers.Dense(3, name="fragile") if fragile else None
    if fragile_layer is not None:
        x = fragile_layer(x)
    x = head(x)
    outputs = keras.layers.Softmax(name="probabilities")(x)
    model = keras.Model(inputs, outputs, name="fragile_colour" if fragile else "colour")
    # features: r, g, b and relu(-(r + g + b)), which is always 0.
    features.set_weights([np.array([[1, 0, 0, -1], [0, 1, 0, -1], [0, 0, 1, -1]], np.float32), np.zeros(4, np.float32)])
    if fragile_layer is not None:
        weights = np.zeros((4, 3), np.float32)
        weights[:3] = order * 0.02
        weights[3] = 300.0
        fragile_layer.set_weights([weights, np.zeros(3, np.float32)])
        head.set_weights([np.eye(3, dtype=np.float32) * 400.0, np.zeros(3, np.float32)])
    else:
        head.set_weights([np.vstack([order * 8.0, np.zeros((1, 3), np.float32)]), np.zeros(3, np.float32)])
    return model


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    from edgecls.data.datasets import load_dataset
    from edgecls.data.split import make_split

    root = colour_images(tmp_path_factory.mktemp("data") / "colours")
    dataset = load_dataset(root)
    return root, dataset, make_split(dataset, seed=3)


def convert(model, colours, output, **options):
    from edgecls.convert import convert_model

    _, dataset, split = colours
    options = ConvertOptions(modes=("float32", "ptq-int8"), calibration_size=48, command="pytest", **options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = convert_model(model, dataset, split, options, output)
    return report, [str(w.message) for w in caught]


@pytest.fixture(scope="module")
def fragile(colours, tmp_path_factory):
    from edgecls.core.tf_env import import_tf

    _, keras = import_tf()
    model = colour_model(keras, fragile=True)
    plain = convert(model, colours, tmp_path_factory.mktemp("plain") / "out")
    kept_dir = tmp_path_factory.mktemp("kept") / "out"
    kept = convert(model, colours, kept_dir, keep_float=("fragile",))
    return model, plain, kept, kept_dir


def test_post_training_int8_fails_the_gate_and_the_report_blames_the_fragile_layer(fragile):
    from edgecls.api.converting import ConversionResult

    model, (report, said), _, _ = fragile
    row = report.row("ptq-int8")
    assert report.reference.accuracy == 1.0 and row.accuracy < 0.6, (report.reference.accuracy, row.accuracy)
    assert row.gate == "failed" and report.gate == "failed" and row.paired["high"] < -1
    errors = row.layer_errors
    assert errors["worst"][0] == "fragile" and errors["image_source"] == "validation"
    by_layer = {r["layer"]: r for r in errors["rows"] if r["point"] == "output"}
    assert by_layer["fragile"]["relative_error"] > 0.5 and by_layer["features"]["relative_error"] < 0.05
    # Named where the user sees it, because the gate failed.
    assert any("layers adding most quantization error: fragile" in message for message in said), said
    table = ConversionResult(report).layer_errors
    assert list(table["layer"]) == ["mean_colour", "features", "fragile", "logits"] and set(table["mode"]) == {"ptq-int8"}
    output = report.output_dir
    markdown = open(f"{output}/parity.md").read()
    assert "## Per-layer quantization error: model_int8.tflite" in markdown and "| **fragile** | Dense |" in markdown
    assert (report.output_dir and __import__("pathlib").Path(output, "layer_error_ptq-int8.png").stat().st_size > 1000)
    saved = json.loads(open(f"{output}/parity.json").read())
    assert saved["rows"][2]["layer_errors"]["worst"][0] == "fragile"


def test_keep_float_on_the_blamed_layer_passes_and_the_file_says_it_is_mixed(fragile, colours):
    from edgecls import Classifier
    from edgecls.convert.verify import check_ops

    _, _, (report, _), kept_dir = fragile
    row = report.row("ptq-int8")
    assert row.gate == "passed" and row.accuracy == 1.0 and row.float_layers == ["fragile"] and row.integer_only
    data = (kept_dir / "model_int8.tflite").read_bytes()
    check = check_ops(data, ("fragile",))
    # The ops a mixed file holds (the device runtime's allow-list needs them).
    assert set(check.op_counts) == {"QUANTIZE", "DEQUANTIZE", "MEAN", "FULLY_CONNECTED", "SOFTMAX"}, check.op_counts
    assert check.kept_float_ops == {"DEQUANTIZE": 1, "FULLY_CONNECTED": 1, "QUANTIZE": 1} and check.integer_only
    assert check.input_type == "uint8" and check.output_type == "uint8,uint8"
    # Undeclared, the same float ops fail the integer-only check; so does declaring another layer.
    for declared in ((), ("features",)):
        assert not check_ops(data, declared).integer_only and "FULLY_CONNECTED" in check_ops(data, declared).float_ops
    meta = read_metadata(data)
    assert "mixed" in meta.quantization and meta.provenance["float_layers"] == "fragile"
    assert meta.provenance["integer_only"] is False and meta.provenance["parity_gate"] == "passed"
    clf = Classifier(kept_dir / "model_int8.tflite")
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[..., 0] = 230
    assert clf.labels == LABELS and clf.classify(image).label == "red"
    red = sorted(colours[0].glob("red/*.png"))[0]
    classified = runner.invoke(app, ["classify", "--model", str(kept_dir / "model_int8.tflite"), str(red), "--format", "json"])
    assert classified.exit_code == 0 and json.loads(classified.stdout)[0]["label"] == "red", classified.output
    info = runner.invoke(app, ["info", str(kept_dir / "model_int8.tflite")])
    assert info.exit_code == 0 and "mixed" in info.output and "fragile" in info.output


def test_the_mixed_file_runs_in_mediapipe_tasks(fragile, colours):
    from mediapipe_tasks import compare_with_mediapipe, require_mediapipe

    require_mediapipe()
    _, dataset, _ = colours
    _, _, _, kept_dir = fragile
    images = dataset.load_images(dataset.items["key"].tolist()[::2], (SIZE, SIZE))
    result = compare_with_mediapipe(kept_dir / "model_int8.tflite", images)
    assert result.label_names == set(LABELS) and result.rate >= 0.98, result


def test_a_well_behaved_model_sits_near_the_rounding_step_and_passes(colours, tmp_path):
    from edgecls.core.tf_env import import_tf

    _, keras = import_tf()
    report, said = convert(colour_model(keras, fragile=False), colours, tmp_path / "out")
    row = report.row("ptq-int8")
    assert row.gate == "passed", report.verdict
    steps = [r["rmse_steps"] for r in row.layer_errors["rows"]]
    assert [r["layer"] for r in row.layer_errors["rows"]] == ["mean_colour", "features", "logits"]
    assert all(0.15 < s < 0.8 for s in steps), steps  # rounding alone: 0.29
    assert all(r["relative_error"] < 0.05 for r in row.layer_errors["rows"])
    assert not any("layers adding most" in message for message in said)


def test_cli_auto_keep_float_finds_the_layer_and_writes_the_first_passing_file(fragile, colours, tmp_path):
    from edgecls.core import runs

    model, _, _, _ = fragile
    root, _, _ = colours
    path = tmp_path / "fragile.keras"
    runs.save_keras_model(model, path)
    out = tmp_path / "out"
    args = ["convert", str(path), "--data", str(root), "--mode", "float32,ptq-int8", "--calibration-size", "48", "-q", "--output", str(out)]
    result = runner.invoke(app, [*args, "--auto-keep-float"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "parity.json").read_text())
    steps = saved["rows"][2]["keep_float_steps"]
    assert [s["float_layers"] for s in steps] == [[], ["fragile"]] and [s["gate"] for s in steps] == ["failed", "passed"]
    assert all(s["size_bytes"] > 0 and s["latency_ms"] > 0 for s in steps)
    assert read_metadata((out / "model_int8.tflite").read_bytes()).provenance["float_layers"] == "fragile"
    assert "--auto-keep-float" in (out / "parity.md").read_text()
    # Without it, the same command fails the gate (exit 3) and names the layer to blame.
    result = runner.invoke(app, [*args, "--force"])
    assert result.exit_code == EXIT_GATE and "fragile" in result.stderr, result.output


def test_keep_float_refuses_qat_and_unknown_layers(fragile, colours, tmp_path):
    model, _, _, _ = fragile
    with pytest.raises(Exception, match="^`keep_float` keeps layers float.*`modes` float32,ptq-int8"):
        ConvertOptions(keep_float=("fragile",))
    from edgecls.errors import EdgeclsError

    with pytest.raises(EdgeclsError, match="no layer named nosuch"):
        convert(model, colours, tmp_path / "out", keep_float=("nosuch",))
    result = runner.invoke(app, ["convert", str(tmp_path), "--keep-float", "fragile"])
    assert result.exit_code == EXIT_ERROR and "--mode float32,ptq-int8" in result.output

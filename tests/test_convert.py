"""`edgecls convert` turns a trained Keras model into deployable TFLite files and proves them.

A small CNN is trained here, in seconds, on generated 32x32 images whose class is plain to see
(stripes running one of three ways, or spots, in random colours). It is converted in every
mode once (module fixture) and every assertion is about measured numbers: file sizes, agreement
with float, accuracy, op types, metadata read back from the files.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from edgecls.cli import app
from edgecls.convert import ConvertOptions, parse_modes
from edgecls.convert.options import MODES, output_file_name
from edgecls.edge_runtime.classifier import TFLiteClassifier
from edgecls.edge_runtime.metadata import read_metadata
from edgecls.edge_runtime.preprocess import load_image
from edgecls.errors import EXIT_ERROR, EXIT_GATE, EdgeclsError

SIZE = 32
PATTERNS = ("horizontal", "vertical", "diagonal", "spots")
PER_CLASS = 70
runner = CliRunner()


# -- data and a model trained on it ----------------------------------------------------------
def pattern_image(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Two random, clearly different colours in stripes (one of three directions) or spots, plus noise."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    period, phase = rng.uniform(5, 9), rng.uniform(0, 2 * np.pi)
    waves = {
        "horizontal": np.sin(2 * np.pi * yy / period + phase),
        "vertical": np.sin(2 * np.pi * xx / period + phase),
        "diagonal": np.sin(2 * np.pi * (xx + yy) / (1.4 * period) + phase),
        "spots": np.sin(2 * np.pi * xx / period + phase) * np.sin(2 * np.pi * yy / period + phase),
    }
    first = rng.uniform(0, 255, 3)
    second = rng.uniform(0, 255, 3)
    while np.abs(first - second).sum() < 200:
        second = rng.uniform(0, 255, 3)
    on = (waves[kind] > 0)[..., None]
    image = np.where(on, first, second) + rng.normal(0, 12, (SIZE, SIZE, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def write_patterns(root: Path, per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for kind in PATTERNS:
        (root / kind).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(pattern_image(kind, rng)).save(root / kind / f"{kind}_{i:03d}.png")
    return root


def small_cnn(keras, num_classes: int, batch_norm: bool = True):
    """Conv+BN+ReLU twice (the pattern tfmot folds), then a dense head with most of the weights
    (~137k parameters, so file sizes are dominated by weights, not flatbuffer overhead)."""
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = inputs
    for i, filters in enumerate((16, 32), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=not batch_norm, name=f"conv{i}")(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(momentum=0.8, name=f"conv{i}_bn")(x)
        x = keras.layers.ReLU(name=f"conv{i}_relu")(x)
        x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="dense")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="pattern_cnn")


@pytest.fixture(scope="module")
def patterns(tmp_path_factory):
    from edgecls.data.datasets import load_dataset
    from edgecls.data.split import make_split

    root = write_patterns(tmp_path_factory.mktemp("data") / "patterns", PER_CLASS, seed=0)
    dataset = load_dataset(root)
    return root, dataset, make_split(dataset, seed=7)


@pytest.fixture(scope="module")
def trained(patterns):
    from edgecls.core.tf_env import import_tf

    _, dataset, split = patterns
    _, keras = import_tf()
    keras.utils.set_random_seed(0)
    model = small_cnn(keras, len(dataset.labels))
    train = dataset.items[(split == "train").to_numpy()]
    x = dataset.load_images(train, (SIZE, SIZE)).astype(np.float32) / 255.0
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, train["label_index"].to_numpy(), epochs=12, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="module")
def every_mode(patterns, trained, tmp_path_factory):
    """One conversion in all five modes; the report and the folder it wrote."""
    from edgecls.convert import convert_model

    _, dataset, split = patterns
    output = tmp_path_factory.mktemp("convert")
    options = ConvertOptions(modes=MODES, qat_epochs=2, calibration_size=64, max_drop=100.0, command="pytest",
                             groups={"striped": ["horizontal", "vertical", "diagonal"]}, target_sensitivity=0.8)  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = convert_model(trained, dataset, split, options, output, source="pattern_cnn (pytest)")
    return report, output, [str(w.message) for w in caught]


def size_ratio(report, mode: str) -> float:
    return report.row(mode).size_bytes / report.row("float32").size_bytes


# -- every mode, measured ------------------------------------------------------------------
def test_the_float_model_learned_the_patterns(every_mode):
    report, _, _ = every_mode
    assert report.reference.accuracy >= 0.85, report.reference  # else the parity numbers mean little
    assert report.test_images >= 30


def test_every_mode_writes_a_file_that_shrinks_as_expected(every_mode):
    report, output, _ = every_mode
    for mode in MODES:
        row = report.row(mode)
        assert row.error is None and (output / row.file).stat().st_size == row.size_bytes
    assert size_ratio(report, "float16") == pytest.approx(0.5, abs=0.06)
    assert size_ratio(report, "dynamic") < 0.35
    assert size_ratio(report, "ptq-int8") <= 0.35
    assert size_ratio(report, "qat") <= 0.35
    assert {p.name for p in output.glob("*.tflite")} == {output_file_name(m, MODES) for m in MODES}


def test_converted_files_classify_like_float(every_mode):
    report, _, _ = every_mode
    keras, float32 = report.reference, report.row("float32")
    assert float32.accuracy == keras.accuracy and float32.agreement == 1.0
    assert float32.mean_kl < 1e-4
    for mode in ("float16", "dynamic", "ptq-int8", "qat"):
        row = report.row(mode)
        assert row.agreement >= 0.9, (mode, row.agreement)
        assert row.mean_kl < 0.1, (mode, row.mean_kl)
        assert row.accuracy_drop <= 10.0, (mode, row.accuracy_drop)
        assert 0.5 <= row.macro_auc <= 1.0 and 0 < row.balanced_accuracy <= 1.0
        assert row.latency_ms > 0 and row.latency_p90_ms >= row.latency_ms


def test_qat_is_not_worse_than_post_training_int8(every_mode):
    report, _, _ = every_mode
    one_image = 100.0 / report.test_images
    qat, ptq = report.row("qat"), report.row("ptq-int8")
    # Noise on a test split this small is a couple of images either way.
    assert qat.accuracy_drop <= ptq.accuracy_drop + 2 * one_image + 1e-9, (qat.accuracy, ptq.accuracy)
    # Fine-tuning keeps its best epoch on validation, "0" (calibrated, not fine-tuned) included.
    assert qat.details["qat_epochs"] == 2 and 0 <= qat.details["qat_best_epoch"] <= 2
    # A model from outside a run: judged by plain accuracy, as nothing says what it was trained to.
    assert qat.details["qat_monitor"] == "val_accuracy"
    assert qat.details["qat_val_best"] >= qat.details["qat_val_before"]


def test_full_integer_files_are_integer_only_with_the_pixel_as_uint8_input(every_mode):
    from edgecls.convert.verify import check_ops

    report, output, _ = every_mode
    for mode in ("ptq-int8", "qat"):
        row = report.row(mode)
        check = check_ops((output / row.file).read_bytes())
        assert row.integer_only and check.integer_only and not check.float_ops, check.float_ops
        assert "CONV_2D" in check.op_counts and "FULLY_CONNECTED" in check.op_counts
        assert row.gate == "passed"
        # The default I/O is uint8 (MediaPipe Tasks and Android refuse int8): the input is the
        # pixel itself, and one QUANTIZE op hands the int8 kernels pixel - 128.
        described = TFLiteClassifier(output / row.file).describe()
        tensor = described["input"]
        assert tensor["dtype"] == "uint8" and tensor["quantization"]["zero_point"] == 0
        assert tensor["quantization"]["scale"] == pytest.approx(1 / 255, rel=1e-6)
        # Two outputs: the probabilities (what MediaPipe reads) and the softmax's input, the logits
        # (what edgecls reads: no 1/256 steps), each handed out as uint8 by a QUANTIZE.
        assert [o["name"] for o in described["outputs"]][1] == "logits" and described["output"]["name"] == "logits"
        assert all(o["dtype"] == "uint8" for o in described["outputs"]) and check.op_counts["QUANTIZE"] == 3
        assert TFLiteClassifier(output / row.file).metadata.logits_output == "logits"
    # Float files are not full-integer and are not gated.
    assert report.row("float32").integer_only is None and report.row("dynamic").gate is None


def test_every_file_carries_its_metadata(every_mode, patterns):
    report, output, _ = every_mode
    _, dataset, _ = patterns
    for mode in MODES:
        row = report.row(mode)
        meta = read_metadata((output / row.file).read_bytes())
        assert meta.labels == list(dataset.labels) and meta.input_size == (SIZE, SIZE) and meta.channels == 3
        assert meta.mean == [0.0, 0.0, 0.0] and meta.std == [255.0, 255.0, 255.0] and meta.output == "probabilities"
        assert meta.name == "pattern_cnn" and meta.dataset == dataset.name and meta.quantization == mode
        assert meta.created and meta.edgecls_version
        assert meta.metrics["accuracy"] == pytest.approx(row.accuracy, abs=1e-6)
        assert meta.metrics["float_keras_accuracy"] == pytest.approx(report.reference.accuracy, abs=1e-6)
        assert meta.provenance["command"] == "pytest" and meta.provenance["conversion_mode"] == mode
        assert meta.provenance["parity_gate"] == ("passed" if mode in ("ptq-int8", "qat") else "not gated")


def test_every_file_loads_in_mediapipe_tasks_with_labels_and_classifies_like_edgecls(every_mode):
    """MediaPipe Tasks (what Android, iOS, web and Raspberry Pi apps use) reads the standard
    TFLite metadata each file carries: label names, and the normalisation of float inputs."""
    from conftest import SHARED_DATA
    from mediapipe_tasks import compare_with_mediapipe, require_mediapipe

    require_mediapipe()
    report, output, _ = every_mode
    # Real photographs where they are here (the agreement of two runtimes needs no labels);
    # the generated test images otherwise.
    real = sorted((SHARED_DATA / "ham10000").rglob("*.jpg"))[:300]
    rng = np.random.default_rng(1)
    images = np.stack(
        [load_image(f, (SIZE, SIZE)) for f in real] if real else [pattern_image(PATTERNS[i % 4], rng) for i in range(300)]
    )
    for mode in MODES:
        result = compare_with_mediapipe(output / report.row(mode).file, images)
        assert result.label_names <= set(report.labels) and result.label_names, (mode, result.label_names)
        assert result.rate >= 0.995, f"{mode}: MediaPipe agrees on {result.same_top1} + {result.ties} ties of {result.images}"


def test_every_file_is_calibrated_on_validation_with_the_groups_operating_point(every_mode, patterns):
    """Temperature and threshold are fitted on the validation split to each file's own outputs,
    stored in its metadata, and measured on the test split; the device applies them."""
    from edgecls.core.clinical_metrics import binary_rates

    report, output, _ = every_mode
    root, dataset, split = patterns
    val = dataset.items[(split == "val").to_numpy()]
    for mode in MODES:
        row = report.row(mode)
        c = row.calibration
        meta = read_metadata((output / row.file).read_bytes())
        assert meta.temperature == c["temperature"] and 0.05 <= c["temperature"] <= 20
        assert meta.groups == {"striped": ["horizontal", "vertical", "diagonal"]}
        point = meta.operating_point
        assert point["group"] == "striped" and point["target_sensitivity"] == 0.8 and point["val_sensitivity"] >= 0.8
        assert 0 <= c["ece_after"] <= 1 and len(c["coverage"]) == 8 and c["validation_images"] == len(val)
        # Recompute the validation sensitivity at the stored threshold through the device's path.
        clf = TFLiteClassifier(output / row.file)
        striped = [clf.labels.index(m) for m in meta.groups["striped"]]
        predictions = [clf.predict(load_image(root / key, (SIZE, SIZE))) for key in val["key"]]
        scores = np.array([p.groups["striped"] for p in predictions])
        positive = val["label"].isin(meta.groups["striped"]).to_numpy()
        assert binary_rates(scores, positive, point["threshold"])["sensitivity"] == pytest.approx(point["val_sensitivity"])
        assert all(p.flag == (p.groups["striped"] >= point["threshold"]) for p in predictions)
        raw = np.array([p.probabilities for p in predictions])
        assert np.allclose(raw[:, striped].sum(1), scores, atol=1e-5)
        assert (c["tta"] != {}) == (mode in ("ptq-int8", "qat"))
    markdown = (output / "parity.md").read_text()
    assert "## Probabilities: calibration, operating point, abstention, flip-averaging" in markdown
    assert "Flip-averaging" in markdown


def test_report_numbers_are_what_the_device_sees(every_mode, patterns):
    """Recompute the int8 accuracy independently: image files -> load_image -> predict."""
    report, output, _ = every_mode
    root, dataset, split = patterns
    classifier = TFLiteClassifier(output / report.row("qat").file)
    test = dataset.items[(split == "test").to_numpy()]
    correct = [classifier.predict(load_image(root / key, (SIZE, SIZE))).label == label for key, label in zip(test["key"], test["label"])]
    assert report.row("qat").accuracy == pytest.approx(np.mean(correct))

    saved = json.loads((output / "parity.json").read_text())
    assert saved["gate_passed"] is True and saved["test_images"] == len(test)
    assert [row["name"] for row in saved["rows"]] == ["keras", *MODES]
    markdown = (output / "parity.md").read_text()
    assert "parity gate passed" in markdown and "| qat | model_int8.tflite |" in markdown


def test_qat_activation_ranges_start_from_the_data(trained, patterns):
    """tfmot starts every activation range at [-6, 6] and moves it by 0.1% a step: after a short
    fine-tune ReLU ranges would still waste half the int8 levels and logits would clip at +-6.
    Calibration must set them to the float model's actual extremes before fine-tuning."""
    from edgecls.convert.qat import calibrate_activation_ranges, freeze_batch_norm, quantization_aware_model
    from edgecls.core.tf_env import import_tf

    _, dataset, split = patterns
    _, keras = import_tf()
    images = dataset.load_images(dataset.items[(split == "train").to_numpy()].head(64), (SIZE, SIZE))
    qat_model, _ = quantization_aware_model(trained)
    freeze_batch_norm(qat_model)
    assert calibrate_activation_ranges(qat_model, images, batch_size=32)
    ranges = {v.name.split(":")[0]: float(np.asarray(v.numpy()).reshape(-1)[0]) for v in qat_model.variables}

    x = images.astype(np.float32) / 255.0
    relu1 = keras.Model(trained.input, trained.get_layer("conv1_relu").output)(x).numpy()
    hidden = keras.Model(trained.input, trained.get_layer("dense").output)(x).numpy()
    kernel, bias = trained.get_layer("probabilities").get_weights()
    logits = hidden @ kernel + bias
    assert ranges["quant_conv1_relu/output_min"] == 0.0
    assert ranges["quant_conv1_relu/output_max"] == pytest.approx(relu1.max(), rel=0.05)
    assert ranges["quant_dense/post_activation_max"] == pytest.approx(hidden.max(), rel=0.05)
    assert ranges["quant_probabilities/pre_activation_min"] == pytest.approx(min(logits.min(), 0.0), rel=0.05)
    assert ranges["quant_probabilities/pre_activation_max"] == pytest.approx(max(logits.max(), 0.0), rel=0.05)
    # Calibrated, not yet fine-tuned, the fake-quantized model already answers like float.
    float_answers = trained(x).numpy().argmax(axis=1)
    assert np.mean(qat_model(x, training=False).numpy().argmax(axis=1) == float_answers) >= 0.95


# -- layers tfmot cannot wrap, fallbacks, verification -----------------------------------------
def test_unwrappable_layers_are_named_and_left_to_calibration(patterns, tmp_path):
    """GroupNormalization, LSTM and a custom layer in one model: QAT wraps the rest, says which
    layers it left, and the result is still integer-only (GroupNorm swapped for MUL maths)."""
    from edgecls.convert import convert_model
    from edgecls.core.tf_env import import_tf

    _, dataset, split = patterns
    _, keras = import_tf()

    class HalveLayer(keras.layers.Layer):
        def call(self, x):
            return x * 0.5

    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(12, 3, strides=2, padding="same", name="conv")(inputs)
    x = keras.layers.GroupNormalization(groups=3, name="gn")(x)
    x = HalveLayer(name="halve")(keras.layers.ReLU()(x))
    x = keras.layers.Reshape((16, 16 * 12))(x)
    x = keras.layers.LSTM(8, name="lstm")(x)
    model = keras.Model(inputs, keras.layers.Dense(len(dataset.labels), activation="softmax")(x))
    options = ConvertOptions(modes=("qat",), qat_epochs=1, calibration_size=16, max_drop=100.0)
    with pytest.warns(UserWarning, match="QAT: tfmot cannot wrap") as caught:
        report = convert_model(model, dataset, split, options, tmp_path)
    message = next(str(w.message) for w in caught if "cannot wrap" in str(w.message))
    for named in ("GroupNormalization 'gn'", "HalveLayer 'halve'", "LSTM 'lstm'"):
        assert named in message
    row = report.row("qat")
    assert row.error is None and row.integer_only, row.float_ops
    assert row.details["quantization"] == "qat" and row.details["rewritten_layers"] == "gn"
    assert (tmp_path / "model_int8.tflite").is_file()


def test_qat_falls_back_to_post_training_int8_when_tfmot_gives_up(patterns, trained, tmp_path, monkeypatch):
    from edgecls.convert import convert_model, modes
    from edgecls.convert.qat import QatUnavailable

    def refuse(model):
        raise QatUnavailable("nested models are not supported")

    monkeypatch.setattr(modes, "quantization_aware_model", refuse)
    _, dataset, split = patterns
    with pytest.warns(UserWarning, match="using post-training int8 instead"):
        report = convert_model(trained, dataset, split, ConvertOptions(modes=("qat",), max_drop=100.0), tmp_path)
    row = report.row("qat")
    meta = read_metadata((tmp_path / "model_int8.tflite").read_bytes())
    assert meta.quantization == "ptq-int8" and "nested models" in meta.provenance["qat_fallback"]
    assert row.integer_only and row.agreement >= 0.9


def test_op_check_catches_float_islands():
    """Keras' own GroupNormalization converts with a float SQUARE even under TFLITE_BUILTINS_INT8:
    the check must see it (and the rewrite must remove it)."""
    from edgecls.convert.converter import convert_to_tflite
    from edgecls.convert.rewrite import integer_friendly
    from edgecls.convert.verify import check_ops
    from edgecls.core.tf_env import import_tf

    _, keras = import_tf()
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GroupNormalization(groups=3)(keras.layers.Conv2D(6, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x)))
    calibration = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    plain = check_ops(convert_to_tflite(model, "ptq-int8", calibration=calibration))
    assert not plain.integer_only and "SQUARE" in plain.float_ops
    rewritten, names = integer_friendly(model)
    assert names and check_ops(convert_to_tflite(rewritten, "ptq-int8", calibration=calibration)).integer_only
    probe = np.random.default_rng(1).random((4, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(rewritten(probe).numpy(), model(probe).numpy(), atol=1e-5)


def test_every_registry_model_converts_to_full_integer(patterns, tmp_path):
    """Post-training int8 for every registered model; QAT (1 epoch) for the ones tfmot cannot
    wrap whole. Each file must be integer-only. (QAT on every model: the test below.)"""
    from edgecls.convert import convert_model
    from edgecls.convert.qat import QatUnavailable, quantization_aware_model
    from edgecls.train.models import create_model, list_models

    _, dataset, split = patterns
    small = _subset(dataset, split, per_class=8)
    for name in list_models():
        model = create_model(name, (SIZE, SIZE, 3), num_classes=len(dataset.labels))
        try:  # what QAT conversion asks: can tfmot wrap every layer?
            wraps_whole = not quantization_aware_model(model)[1].left_float
        except QatUnavailable:
            wraps_whole = False
        mode = "ptq-int8" if wraps_whole else "qat"
        options = ConvertOptions(modes=(mode,), qat_epochs=1, qat_batch_size=16, calibration_size=8, max_drop=100.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = convert_model(model, *small, options, tmp_path / name)
        row = report.row(mode)
        assert row.error is None and row.integer_only, (name, row.error, row.float_ops)
        assert read_metadata((tmp_path / name / row.file).read_bytes()).labels == list(dataset.labels)


@pytest.mark.slow
def test_every_registry_model_converts_with_qat(patterns, tmp_path):
    """QAT is the default mode: every registry model gets through it (about a minute on 2 cores)."""
    from edgecls.convert import convert_model
    from edgecls.train.models import create_model, list_models

    _, dataset, split = patterns
    small = _subset(dataset, split, per_class=8)
    for name in list_models():
        model = create_model(name, (SIZE, SIZE, 3), num_classes=len(dataset.labels))
        options = ConvertOptions(modes=("qat",), qat_epochs=1, qat_batch_size=16, calibration_size=8, max_drop=100.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row = convert_model(model, *small, options, tmp_path / name).row("qat")
        assert row.error is None and row.integer_only and "qat_fallback" not in row.details, (name, row)


def _subset(dataset, split, per_class: int):
    """A few images per class and split side: registry models only need to convert, not learn."""
    import dataclasses

    keep = split.groupby([dataset.items["label"], split]).cumcount().to_numpy() < per_class
    items = dataset.items[keep].reset_index(drop=True)
    return dataclasses.replace(dataset, items=items), split[keep].reset_index(drop=True)


# -- the command line ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_folder(patterns, trained, tmp_path_factory):
    """A run folder as `edgecls train` leaves it, written with the train package's own writers."""
    from edgecls.core import runs
    from edgecls.data.split import save_split
    from edgecls.train.options import TrainOptions
    from edgecls.train.run import write_run_config

    root, dataset, split = patterns
    run_dir = tmp_path_factory.mktemp("runs") / "patterns"
    run_dir.mkdir()
    save_split(run_dir, dataset, split)
    # What `trained` did: no augmentation (a rotated stripe is another class here), no class weights.
    options = TrainOptions(model="edge-cnn-small", image_size=SIZE, augment=False, imbalance="none")
    write_run_config(run_dir, root, dataset, options)
    runs.save_keras_model(trained, run_dir / runs.MODEL_FILE)
    return run_dir


def cli(*args):
    return runner.invoke(app, ["convert", *(os.fspath(a) if isinstance(a, Path) else a for a in args)])


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("edgecls: error:")]


def test_cli_gate_trips_on_an_impossible_budget_but_still_writes_the_file(run_folder):
    result = cli(run_folder, "--mode", "ptq-int8", "--max-drop", "-100", "--calibration-size", "32", "-q")
    assert result.exit_code == EXIT_GATE, result.output
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "parity gate FAILED" in errors[0] and "model_int8.tflite" in errors[0], result.stderr
    assert "allowed drop -100 points" in errors[0]
    assert "FAILED" in result.stdout and "ptq-int8" in result.stdout  # the table and verdict
    written = run_folder / "convert" / "model_int8.tflite"
    meta = read_metadata(written.read_bytes())
    assert meta.provenance["parity_gate"] == "failed" and meta.quantization == "ptq-int8"
    assert meta.provenance["run_dir"] == str(run_folder) and meta.name == "edge-cnn-small"
    saved = json.loads((run_folder / "convert" / "parity.json").read_text())
    assert saved["gate_passed"] is False and saved["gate"] == saved["rows"][1]["gate"] == "failed"
    # The interval behind the verdict, in the file too: every bound is below the +100 points asked for.
    assert saved["rows"][1]["paired"]["high"] < 100 and meta.metrics["int8_minus_float_high_points"] < 100


def test_cli_refuses_to_replace_a_conversion_without_force(run_folder, tmp_path):
    out = tmp_path / "out"
    assert cli(run_folder, "--output", out, "--mode", "float32", "-q").exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = cli(run_folder, "--output", out, "--mode", "dynamic", "-q")
    assert result.exit_code == EXIT_ERROR and "already holds a conversion" in result.output and "--force" in result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched
    result = cli(run_folder, "--output", out, "--mode", "dynamic", "--force", "-q")
    assert result.exit_code == 0, result.output
    # The float32 file of the replaced conversion would no longer match parity.json: it is gone.
    assert sorted(p.name for p in out.iterdir()) == ["model_dynamic.tflite", "parity.json", "parity.md"]
    assert [row["name"] for row in json.loads((out / "parity.json").read_text())["rows"]] == ["keras", "dynamic"]


def test_gate_fails_a_full_integer_file_with_float_ops_left():
    from edgecls.convert.parity import ParityReport, ParityRow, apply_gate

    report = ParityReport("m", "d", ["a", "b"], (8, 8), test_images=10, test_class_counts={}, max_drop=1.0, io_type="int8")
    report.rows = [ParityRow("keras", "float", accuracy=0.9), ParityRow("ptq-int8", "int8", accuracy=0.9, file="model_int8.tflite")]
    row = report.rows[1]
    row.integer_only, row.float_ops = False, "LOGISTIC x1"
    y_true = np.array([0, 1] * 5)
    apply_gate(row, y_true, y_true, y_true, 1.0)  # identical answers: only the ops can fail it
    assert row.gate == "failed" and not report.gate_passed and report.gate == "failed"
    assert "FAILED" in report.verdict and "not integer-only: LOGISTIC x1" in report.verdict
    row.integer_only = True
    apply_gate(row, y_true, y_true, y_true, 1.0)
    assert row.gate == "passed" and report.gate_passed and report.gate == "passed"


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_max_drop_must_be_a_number(run_folder, value):
    result = cli(run_folder, "--max-drop", value, "-q")
    assert result.exit_code == EXIT_ERROR and "edgecls: error: --max-drop must be a number" in result.output


def test_cli_converts_a_run_folder_by_default_to_float32_and_qat(run_folder, tmp_path):
    result = cli(run_folder, "--output", tmp_path / "out", "--qat-epochs", "1", "--max-drop", "100", "-q")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "layer_error_qat.png", "model_float32.tflite", "model_int8.tflite", "parity.json", "parity.md"]  # fmt: skip
    assert "parity gate passed" in result.stdout
    meta = read_metadata((tmp_path / "out" / "model_int8.tflite").read_bytes())
    assert meta.quantization == "qat" and meta.provenance["qat_epochs"] == 1
    qat = next(row for row in json.loads((tmp_path / "out" / "parity.json").read_text())["rows"] if row["name"] == "qat")
    # A run's QAT keeps the epoch best by the metric the run was trained to.
    assert qat["details"]["qat_monitor"] == "val_balanced_accuracy"
    assert qat["details"]["qat_val_best"] >= qat["details"]["qat_val_before"]


def test_cli_converts_a_keras_file_with_data_labels_and_uint8_io(patterns, trained, tmp_path):
    from edgecls.core.runs import save_keras_model

    root, dataset, _ = patterns
    model_path = save_keras_model(trained, tmp_path / "pattern.keras")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(dataset.labels) + "\n")
    result = cli(model_path, "--data", root, "--labels", labels, "--mode", "float32,ptq-int8", "--io", "uint8", "--max-drop", "100", "-q")
    assert result.exit_code == 0, result.output
    output = tmp_path / "pattern_convert"
    assert (output / "split.csv").is_file() and (output / "parity.md").is_file()
    tensor = TFLiteClassifier(output / "model_int8.tflite").describe()["input"]
    assert tensor["dtype"] == "uint8" and tensor["quantization"]["zero_point"] == 0  # uint8 input = the pixel
    meta = read_metadata((output / "model_int8.tflite").read_bytes())
    assert meta.labels == list(dataset.labels) and meta.provenance["io_type"] == "uint8"


def test_cli_keras_file_with_its_training_split(run_folder, tmp_path):
    """--split: parity runs on the test images of the split the model was trained with."""
    root = json.loads((run_folder / "config.json").read_text())["dataset"]["path"]
    out = tmp_path / "out"
    args = (run_folder / "model.keras", "--data", root, "--mode", "float32", "--output", out, "-q")
    result = cli(*args, "--split", run_folder / "split.csv")
    assert result.exit_code == 0, result.output
    assert (out / "split.csv").read_text() == (run_folder / "split.csv").read_text()
    assert "may hold images this model was trained on" not in result.output
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # said by an earlier test from the same line, too
        fresh = cli(*args[:-3], "--output", tmp_path / "fresh", "-q")
    assert fresh.exit_code == 0 and "may hold images this model was trained on" in fresh.output


def test_cli_help_documents_every_option():
    result = runner.invoke(app, ["convert", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--data", "--labels", "--split", "--force", "--output", "--mode", "--io", "--qat-epochs", "--qat-lr", "--calibration-size", "--max-drop", "--threads"):
        assert option in result.stdout
    assert "ptq-int8" in result.stdout and "(default: float32,qat)" in result.stdout


@pytest.mark.parametrize(
    "case, phrase",
    [
        ("missing", "no such run folder or model file"),
        ("not-keras", "not a Keras model file"),
        ("no-data", "needs --data DATASET (its test split"),
        ("no-split", "no split.csv"),
        ("bad-mode", "unknown conversion mode 'int4'"),
        ("labels-mismatch", "there are 2 labels"),
    ],
)
def test_cli_bad_input_is_one_clear_line(case, phrase, run_folder, patterns, tmp_path):
    import shutil

    root, _, _ = patterns
    args = {
        "missing": [tmp_path / "nowhere"],
        "not-keras": [tmp_path / "notes.txt", "--data", root],
        "no-data": [run_folder / "model.keras"],
        "no-split": [tmp_path / "run"],
        "bad-mode": [run_folder, "--mode", "float32,int4"],
        "labels-mismatch": [run_folder / "model.keras", "--data", root, "--labels", tmp_path / "two.json"],
    }[case]
    (tmp_path / "notes.txt").write_text("not a model")
    (tmp_path / "two.json").write_text('["a", "b"]')
    shutil.copytree(run_folder, tmp_path / "run", ignore=shutil.ignore_patterns("split.csv", "convert"))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = cli(*args, "-q")
    assert result.exit_code == EXIT_ERROR, result.output
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and phrase in errors[0], result.stderr
    assert "Traceback" not in result.output
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written


# -- small parts -----------------------------------------------------------------------------
def test_modes_parse_from_repeats_and_commas():
    assert parse_modes(["qat", "float32,fp16", " dynamic "]) == ("float32", "float16", "dynamic", "qat")
    assert parse_modes(["int8", "ptq"]) == ("ptq-int8", "qat")
    with pytest.raises(EdgeclsError, match="unknown conversion mode"):
        parse_modes(["float8"])
    assert output_file_name("ptq-int8", ("ptq-int8",)) == "model_int8.tflite"
    assert output_file_name("ptq-int8", ("ptq-int8", "qat")) == "model_int8_ptq.tflite"
    with pytest.raises(EdgeclsError, match="^`io_type` must be one of"):
        ConvertOptions(io_type="int16")


def test_calibration_sample_is_class_balanced():
    from edgecls.convert.samples import class_balanced_sample

    labels = np.array([0] * 900 + [1] * 80 + [2] * 20)
    picked = class_balanced_sample(labels, 120, seed=0)
    counts = np.bincount(labels[picked], minlength=3)
    assert len(set(picked.tolist())) == 120 and counts.tolist() == [50, 50, 20]  # rare class: all of it
    assert np.bincount(labels[class_balanced_sample(labels, 30, seed=1)]).tolist() == [10, 10, 10]


def test_divergence_and_agreement_measure_what_they_say():
    from edgecls.convert.parity import mean_kl_divergence, top1_agreement

    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    assert mean_kl_divergence(p, p) == pytest.approx(0.0, abs=1e-9)
    q = np.array([[0.2, 0.7, 0.1], [0.1, 0.8, 0.1]])
    expected = (0.7 * np.log(0.7 / 0.2) + 0.2 * np.log(0.2 / 0.7)) / 2
    assert mean_kl_divergence(p, q) == pytest.approx(expected, rel=1e-4)
    assert top1_agreement(p, q) == 0.5


def test_mixed_precision_models_are_converted_in_float32():
    from edgecls.convert.keras_model import as_float32
    from edgecls.core.tf_env import import_tf

    _, keras = import_tf()
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, dtype="mixed_float16")(inputs)
    x = keras.layers.GlobalAveragePooling2D(dtype="mixed_float16")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", dtype="float32")(x))
    copy = as_float32(model)
    assert {layer.dtype_policy.name for layer in copy.layers} == {"float32"}
    probe = np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(copy(probe).numpy(), model(probe).numpy(), atol=2e-2)

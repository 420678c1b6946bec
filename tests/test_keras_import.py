"""`edgecls convert` takes the Keras models people have.

Seed-notebook style CNNs are built with Keras 3 (`import keras`, TensorFlow's default
`tf.keras` since 2.16; the test process sets TF_USE_LEGACY_KERAS, which changes only what
`tf.keras` means) and with tf_keras, trained for a few epochs on generated stripe/spot images,
saved as a Keras 3 `.keras`, an `.h5`, a tf_keras `.keras` and a SavedModel from
`model.export()`, each with and without a Rescaling layer inside, and converted to int8:
QAT where tfmot can (every format with Keras layers), calibrated post-training int8 where it
cannot (a graph-only SavedModel), always with the parity report and gate. The metadata must
carry the normalisation the model really takes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import shared_dataset
from edgecls.cli import app
from edgecls.convert import ConvertOptions
from edgecls.edge_runtime.classifier import TFLiteClassifier
from edgecls.edge_runtime.metadata import read_metadata
from edgecls.edge_runtime.normalization import PIXEL_UNIT, InputNormalization
from edgecls.errors import EXIT_ERROR, EdgeclsError
from test_convert import SIZE, write_patterns

PER_CLASS = 30
MAX_DROP = 6.0  # points: one test image of ~18
runner = CliRunner()


# -- data and models -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def patterns(tmp_path_factory):
    from edgecls.data.datasets import load_dataset
    from edgecls.data.split import make_split

    root = write_patterns(tmp_path_factory.mktemp("data") / "patterns", PER_CLASS, seed=3)
    dataset = load_dataset(root)
    split = make_split(dataset, seed=7)
    train = dataset.items[(split == "train").to_numpy()]
    pixels = dataset.load_images(train["key"].tolist(), (SIZE, SIZE)).astype(np.float32)
    return root, dataset, split, pixels, train["label_index"].to_numpy().astype(np.int64)


def notebook_cnn(keras, rescaling: bool, activation: str = "relu", size: int = SIZE, classes: int = 4):
    """The seed notebook's shape: Conv, BN, pool, Conv, pool, Flatten, Dropout, Dense, Dense(softmax)."""
    keras.utils.set_random_seed(0)
    layers = [keras.Input((size, size, 3))]
    if rescaling:
        layers.append(keras.layers.Rescaling(1.0 / 255))
    layers += [
        keras.layers.Conv2D(8, 3, padding="same", activation=activation),
        keras.layers.BatchNormalization(momentum=0.8),  # settles within a few dozen steps
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(classes, activation="softmax"),
    ]
    return keras.Sequential(layers)


def trained(keras, model, pixels, labels, fed: str, epochs: int = 8):
    """Train as a notebook does: on pixel/255, raw pixels (Rescaling inside) or [-1, 1]."""
    x = {"0-1": pixels / 255.0, "0-255": pixels, "-1-1": pixels / 127.5 - 1.0}[fed]
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, labels, epochs=epochs, batch_size=16, verbose=0)
    return model


def keras3():
    from edgecls.core.tf_env import import_tf

    _, tf_keras = import_tf()
    import keras

    assert keras.__version__.startswith("3.") and keras is not tf_keras
    return keras


@pytest.fixture(scope="module")
def user_models(patterns, tmp_path_factory) -> dict[tuple[str, bool], Path]:
    """(format, has Rescaling) -> the saved model, as a user would hand it over."""
    from edgecls.core.tf_env import import_tf

    _, _, _, pixels, labels = patterns
    _, tf_keras = import_tf()
    keras = keras3()
    folder = tmp_path_factory.mktemp("user_models")
    paths = {}
    for rescaling in (False, True):
        tag = "rescaling" if rescaling else "plain"
        fed = "0-255" if rescaling else "0-1"
        model = trained(keras, notebook_cnn(keras, rescaling), pixels, labels, fed)
        paths["keras3", rescaling] = folder / f"k3_{tag}.keras"
        paths["h5", rescaling] = folder / f"k3_{tag}.h5"
        paths["savedmodel", rescaling] = folder / f"k3_{tag}_savedmodel"
        model.save(paths["keras3", rescaling])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "HDF5 is legacy"
            model.save(paths["h5", rescaling])
        model.export(str(paths["savedmodel", rescaling]), verbose=False)
        legacy = trained(tf_keras, notebook_cnn(tf_keras, rescaling), pixels, labels, fed)
        paths["tf_keras", rescaling] = folder / f"tk_{tag}.keras"
        legacy.save(paths["tf_keras", rescaling])
    return paths


def convert_file(path: Path, patterns, out: Path, modes=("float32", "qat"), **options):
    from edgecls.convert import convert_model_file

    root = patterns[0]
    options = ConvertOptions(modes=modes, qat_epochs=1, calibration_size=48, max_drop=MAX_DROP, command="pytest", **options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = convert_model_file(path, root, options, out)
    return report, [str(w.message) for w in caught]


# -- every format, with and without Rescaling ------------------------------------------------------
CASES = [(fmt, rescaling) for fmt in ("keras3", "h5", "tf_keras", "savedmodel") for rescaling in (False, True)]


@pytest.mark.parametrize("fmt, rescaling", CASES, ids=[f"{f}-{'rescaling' if r else 'plain'}" for f, r in CASES])
def test_user_model_converts_to_int8_and_passes_parity(fmt, rescaling, user_models, patterns, tmp_path):
    report, said = convert_file(user_models[fmt, rescaling], patterns, tmp_path / "out")
    qat = report.row("qat")
    # ~18 test images: a file within the drop can still be too close to call, never surely worse.
    assert report.gate in ("passed", "inconclusive"), report.verdict
    assert qat.integer_only and qat.agreement >= 0.9 and report.reference.accuracy >= 0.8, (qat.agreement, report.reference.accuracy)
    graph_only = fmt == "savedmodel"
    if graph_only:  # model.export() keeps no Keras layers: calibrated post-training int8, saying why
        assert "keras_metadata.pb" in qat.details["qat_fallback"] and qat.details["quantization"] == "ptq-int8"
        assert any("using post-training int8 instead" in message for message in said)
    else:
        assert qat.details["quantization"] == "qat" and "qat_fallback" not in qat.details, qat.details
    if fmt in ("keras3", "h5") and not graph_only:
        assert any("rebuilt tf_keras model vs the original Keras 3 model" in note for note in report.notes)

    # The normalisation the model really takes, in the report and in every file's metadata.
    if rescaling and graph_only:
        expected = InputNormalization.from_range("0-255")  # the Rescaling op stays in the graph
    else:
        expected = PIXEL_UNIT  # pixel/255 outside, or Rescaling(1/255) folded into the input
    norm = report.input_normalization
    assert (norm["mean"], norm["std"]) == (list(expected.mean), list(expected.std)), norm
    assert ("detected" if rescaling else "assumed") in norm["source"], norm
    assigned = any("--input-range" in message and "assumes it takes pixel / 255" in message for message in said)
    assert assigned == (not rescaling), said  # the assumption is said, in one line naming the option
    for name in ("model_float32.tflite", "model_int8.tflite"):
        meta = read_metadata((tmp_path / "out" / name).read_bytes())
        assert (meta.mean, meta.std) == (list(expected.mean), list(expected.std))
        assert meta.provenance["input_normalization"].startswith(expected.describe())
    classifier = TFLiteClassifier(tmp_path / "out" / "model_int8.tflite")
    scale, zero_point = classifier.input_details["quantization"]
    if expected == PIXEL_UNIT and report.io_type == "uint8":
        assert abs(scale - 1 / 255) < 1e-9 and zero_point == 0  # the uint8 input is the pixel itself
    if expected.range == "0-255":
        assert abs(scale - 1.0) < 1e-6 and zero_point == 0


def test_cli_input_range_and_bad_values(user_models, patterns, tmp_path):
    root = patterns[0]
    path = user_models["keras3", False]
    result = runner.invoke(app, ["convert", str(path), "--data", str(root), "--mode", "float32", "--input-range", "-1-1",
                                 "--output", str(tmp_path / "out"), "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert read_metadata((tmp_path / "out" / "model_float32.tflite").read_bytes()).mean == [127.5] * 3
    result = runner.invoke(app, ["convert", str(path), "--data", str(root), "--input-range", "0-2"])
    assert result.exit_code == EXIT_ERROR and "edgecls: error: --input-range: " in result.output


# -- what is refused ------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_lambda_layers_are_refused_in_one_line(fmt, patterns, tmp_path, monkeypatch):
    from keras.src.utils import python_utils

    keras = keras3()
    model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Lambda(lambda t: t / 255.0, name="scale"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4, activation="softmax")])  # fmt: skip
    path = tmp_path / f"lambda.{fmt}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(path)
    unmarshalled = []
    monkeypatch.setattr(python_utils, "func_load", lambda *a, **k: unmarshalled.append(a) or (_ for _ in ()).throw(RuntimeError("func_load")))
    result = runner.invoke(app, ["convert", str(path), "--data", str(patterns[0]), "--output", str(tmp_path / "out")])
    errors = [line for line in result.output.splitlines() if line.startswith("edgecls: error:")]
    assert result.exit_code == EXIT_ERROR and len(errors) == 1, result.output
    assert "Lambda layer 'scale'" in errors[0] and "Traceback" not in result.output
    assert not unmarshalled and not (tmp_path / "out").exists()


def test_damaged_or_hostile_keras3_files_fail_cleanly_and_unpickle_nothing(tmp_path, monkeypatch):
    """load_user_model on mutated Keras 3 `.keras` files (test_fuzz's mutations: layers renamed
    to Lambda or unknown classes, fields replaced with junk, bytes flipped): a model or one
    EdgeclsError line, never another exception, and never pickle or marshal."""
    import pickle

    from hypothesis import given, settings
    from keras.src.utils import python_utils
    from tf_keras.src.utils import generic_utils

    from edgecls.convert.keras_import import load_user_model
    from test_fuzz import FUZZ, mutated_keras

    keras = keras3()
    seeds = {}
    for name, middle in (("plain", keras.layers.Rescaling(1 / 255)), ("lambda", keras.layers.Lambda(lambda t: t * 2.0))):
        model = keras.Sequential([keras.Input((8, 8, 3)), middle, keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
        model.save(tmp_path / f"{name}.keras")
        seeds[name] = (tmp_path / f"{name}.keras").read_bytes()
    called: list[str] = []
    # func_load: where Keras 3 and tf_keras unmarshal a Lambda's bytecode (marshal itself also
    # loads every .pyc, so it cannot be the tripwire).
    for module, name in ((pickle, "loads"), (pickle, "load"), (python_utils, "func_load"), (generic_utils, "func_load")):
        monkeypatch.setattr(module, name, lambda *a, _n=f"{module.__name__}.{name}", **k: called.append(_n) or (_ for _ in ()).throw(RuntimeError(_n)))
    path = tmp_path / "model.keras"

    @given(data=mutated_keras(seeds))
    @settings(FUZZ, max_examples=25, print_blob=False)
    def check(data):
        path.write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                imported = load_user_model(path, input_range="0-1")
            except EdgeclsError as exc:
                assert "\n" not in str(exc) and str(exc).startswith(str(path)), str(exc)
            else:
                assert imported.model.outputs[0].shape[-1] == 3
        assert not called, called

    check()


def test_folder_without_saved_model_pb_is_refused(patterns, tmp_path):
    folder = tmp_path / "not_a_savedmodel"
    (folder / "variables").mkdir(parents=True)
    result = runner.invoke(app, ["convert", str(folder), "--data", str(patterns[0])])
    assert result.exit_code == EXIT_ERROR, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("edgecls: error:")]
    assert len(errors) == 1 and "no saved_model.pb" in errors[0]
    with pytest.raises(EdgeclsError, match="no saved_model.pb"):
        from edgecls.convert.keras_import import load_user_model

        load_user_model(folder)


# -- real images -------------------------------------------------------------------------------------
def test_keras3_model_on_real_blood_smears(tmp_path):
    """A tiny Keras 3 model trained for a few epochs on ~200 real ALL smears converts with QAT,
    and its parity report, run through the LiteRT interpreter, agrees with float."""
    from edgecls.convert import convert_model
    from edgecls.convert.keras_import import load_user_model
    from edgecls.data.datasets import load_dataset
    from edgecls.data.split import stratified_subset
    from edgecls.data.split import make_split

    dataset = stratified_subset(load_dataset(shared_dataset("blood")), 200, seed=0)
    split = make_split(dataset, seed=1)
    train = dataset.items[(split == "train").to_numpy()]
    size = 48
    pixels = dataset.load_images(train["key"].tolist(), (size, size)).astype(np.float32)
    keras = keras3()
    model = notebook_cnn(keras, rescaling=True, size=size, classes=len(dataset.labels))
    model = trained(keras, model, pixels, train["label_index"].to_numpy().astype(np.int64), "0-255", epochs=10)
    model.save(tmp_path / "smears.keras")
    options = ConvertOptions(modes=("float32", "qat"), qat_epochs=1, calibration_size=64, max_drop=100.0, command="pytest")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = convert_model(load_user_model(tmp_path / "smears.keras"), dataset, split, options, tmp_path / "out")
    qat = report.row("qat")
    assert "litert" in report.interpreter.lower(), report.interpreter
    assert qat.details["quantization"] == "qat" and qat.integer_only
    assert report.reference.accuracy > 0.5 and qat.agreement >= 0.9, (report.reference.accuracy, qat.agreement)
    assert report.input_normalization["std"] == [255.0] * 3
    assert (tmp_path / "out" / "parity.md").read_text().count("Input normalisation: pixel / 255") == 1

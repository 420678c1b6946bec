"""The Python API (`import edgecls`), end to end on tiny generated data.

load_dataset -> split_dataset -> train_classifier -> convert_classifier (float32 and post-training
int8, from the TrainedRun, and
from a Keras model object that was never saved) -> Classifier on a 600x450 array, a PIL image, a
path, a list and a folder -> benchmark. One 2-epoch run on 32x32 images of three colour classes
is trained per module; errors are checked to be EdgeclsError with one-line messages.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import numpy as np
import pytest
from PIL import Image
from test_train import COLOURS, make_colour_folders

import edgecls
from edgecls.errors import ParityGateFailed, ParityGateInconclusive

SIZE = 32
PER_CLASS = 24


def colour_photo(colour, size=(450, 600), seed: int = 1) -> np.ndarray:
    """A 600x450 (w x h) photo-sized image of one colour, with noise."""
    rng = np.random.default_rng(seed)
    return np.clip(np.array(colour) + rng.normal(0, 30, (*size, 3)), 0, 255).astype(np.uint8)


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert isinstance(excinfo.value, edgecls.EdgeclsError), type(excinfo.value)
    assert message and "\n" not in message, repr(message)
    return message


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_colour_folders(tmp_path_factory.mktemp("colours") / "colours", per_class=PER_CLASS)


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """(TrainedRun, log messages, what training printed on stdout), trained through the API."""
    data = edgecls.load_dataset(data_dir)
    handler = Collect()
    logger = logging.getLogger("edgecls")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            run = edgecls.train_classifier(
                data, edgecls.TrainOptions(model="edge-cnn-small", image_size=SIZE, epochs=2, patience=2, tensorboard=False),
                output=tmp_path_factory.mktemp("runs") / "colours", progress=False, batch_size=16, learning_rate=5e-3,
            )  # fmt: skip
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return run, handler.messages, stdout.getvalue()


@pytest.fixture(scope="module")
def converted(trained, tmp_path_factory):
    run, _, _ = trained
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return edgecls.convert_classifier(run, modes=["float32", "ptq-int8"], calibration_size=32,
                                          output=tmp_path_factory.mktemp("convert") / "out", progress=False)  # fmt: skip


# -- the package -----------------------------------------------------------------------------
def test_every_public_name_resolves_and_is_documented():
    for name in edgecls.__all__:
        value = getattr(edgecls, name)
        if name != "__version__":
            assert (getattr(value, "__doc__", None) or "").strip(), f"edgecls.{name} has no docstring"
    assert set(edgecls.__all__) <= set(dir(edgecls))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        edgecls.nope  # noqa: B018


def test_the_api_names_survive_the_subpackages_being_imported():
    """`edgecls.train` and `edgecls.convert` are packages; the API functions must not depend on
    import order (importing a subpackage rebinds its name on `edgecls`)."""
    import edgecls.convert.options  # noqa: F401
    import edgecls.train.options  # noqa: F401

    assert callable(edgecls.train_classifier) and callable(edgecls.convert_classifier)
    assert edgecls.TrainOptions is edgecls.train.options.TrainOptions
    assert edgecls.ConvertOptions is edgecls.convert.options.ConvertOptions


def test_enable_logging_shows_messages_once_and_turns_off():
    stream = io.StringIO()
    logger = edgecls.enable_logging("INFO", stream=stream)
    try:
        with pytest.raises(edgecls.EdgeclsError, match="unknown logging level"):
            edgecls.enable_logging("LOUD")
        edgecls.enable_logging("INFO", stream=stream)  # a second call adds no second handler
        logging.getLogger("edgecls.data").info("hello %s", "there")
        assert stream.getvalue() == "edgecls: hello there\n" and not logger.propagate
    finally:
        edgecls.enable_logging(None)
    assert logger.propagate and logger.level == logging.NOTSET
    assert not [h for h in logger.handlers if not isinstance(h, logging.NullHandler)]
    logging.getLogger("edgecls.data").info("not shown")
    assert stream.getvalue() == "edgecls: hello there\n"


# -- datasets --------------------------------------------------------------------------------
def test_load_and_split_dataset(data_dir):
    data = edgecls.load_dataset(data_dir)
    assert isinstance(data, edgecls.Dataset) and data.labels == ["blue", "green", "red"] and len(data) == 3 * PER_CLASS
    assert "3 classes" in data.summary()
    parts = edgecls.split_dataset(data)
    assert isinstance(parts, edgecls.DatasetSplit)
    assert len(parts.train) + len(parts.val) + len(parts.test) == len(data)
    table = parts.table
    assert list(table.columns) == ["train", "val", "test"] and table.loc["total"].sum() == len(data)
    assert set(parts.test.items["key"]) == set(data.items["key"][(parts.split == "test").to_numpy()])
    assert parts.test.load_images(parts.test.items.head(2), (SIZE, SIZE)).shape == (2, SIZE, SIZE, 3)
    with pytest.raises(edgecls.EdgeclsError) as excinfo:
        edgecls.train_classifier(parts.train, epochs=1)
    assert "not the train side of a split" in one_line(excinfo)


def test_dataset_errors_are_one_line(tmp_path):
    with pytest.raises(edgecls.EdgeclsError) as excinfo:
        edgecls.load_dataset(tmp_path / "missing")
    assert "dataset not found" in one_line(excinfo)
    with pytest.raises(edgecls.EdgeclsError) as excinfo:
        edgecls.load_dataset(tmp_path, format="pictures")
    assert "unknown dataset format" in one_line(excinfo)


# -- training --------------------------------------------------------------------------------
def test_train_returns_a_run_with_metrics_history_and_model(trained):
    run, messages, printed = trained
    assert isinstance(run, edgecls.TrainedRun) and run.labels == ["blue", "green", "red"] and run.image_size == (SIZE, SIZE)
    table = run.metrics_table
    assert list(table.index) == ["val", "test"] and {"accuracy", "balanced_accuracy", "macro_auc"} <= set(table.columns)
    assert 0 <= table.loc["test", "accuracy"] <= 1 and run.metrics["test"]["accuracy"] == table.loc["test", "accuracy"]
    assert list(run.per_class("test").index) == run.labels and run.confusion_matrix("val").to_numpy().sum() == table.loc["val", "images"]
    assert len(run.history) == 2 and run.options.epochs == 2 and run.options.batch_size == 16  # keyword overrides applied
    assert run.model.predict(np.zeros((1, SIZE, SIZE, 3), np.float32), verbose=0).shape == (1, 3)
    assert {"model", "split", "metrics", "report"} <= set(run.files) and all(p.exists() for p in run.files.values())
    assert "edge-cnn-small, 3 classes, 32x32" in repr(run) and "<table" in run._repr_html_()
    # Library code logs; with progress=False nothing is printed.
    assert any(m.startswith("dataset: ") for m in messages) and any(m.startswith("split: ") for m in messages), messages
    assert printed == "", printed
    reopened = edgecls.load_run(run.path)
    assert reopened.metrics == run.metrics and reopened.split.equals(run.split)


def test_train_errors_are_one_line(data_dir, tmp_path):
    with pytest.raises(edgecls.EdgeclsError) as excinfo:
        edgecls.train_classifier(data_dir, output=tmp_path / "r", epochz=3)
    assert "unknown TrainOptions field(s): epochz" in one_line(excinfo)
    with pytest.raises(edgecls.EdgeclsError) as excinfo:
        edgecls.train_classifier(data_dir, output=tmp_path / "r", model="no-such-net")
    assert "no-such-net" in one_line(excinfo)
    with pytest.raises(edgecls.EdgeclsError) as excinfo:
        edgecls.train_classifier(tmp_path / "nothing", output=tmp_path / "r")
    assert "dataset not found" in one_line(excinfo)
    with pytest.raises(edgecls.EdgeclsError) as excinfo:
        edgecls.train_classifier(42)
    assert "takes a Dataset or a dataset path" in one_line(excinfo)
    with pytest.raises(edgecls.EdgeclsError) as excinfo:
        edgecls.load_run(data_dir)
    assert "no config.json" in one_line(excinfo)


def test_an_interrupted_training_says_how_to_go_on_once(data_dir, tmp_path, monkeypatch):
    """Ctrl-C (a notebook's stop button): the API re-raises KeyboardInterrupt carrying the Python
    resume call; the command line shows one line with its own `--resume` hint, not both."""
    import edgecls.train.trainer
    from typer.testing import CliRunner

    from edgecls.cli import app
    from edgecls.errors import EXIT_INTERRUPTED

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(edgecls.train.trainer, "train_model", interrupted)
    with pytest.raises(KeyboardInterrupt, match=r"resume=True"):
        edgecls.train_classifier(data_dir, output=tmp_path / "api-run")
    result = CliRunner().invoke(app, ["train", str(data_dir), "--output", str(tmp_path / "cli-run")])
    assert result.exit_code == EXIT_INTERRUPTED
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"edgecls: error: interrupted; continue with: edgecls train {data_dir} --output {tmp_path / 'cli-run'} --resume"], lines


# -- conversion ------------------------------------------------------------------------------
def test_convert_a_trained_run(converted, trained):
    run, _, _ = trained
    result = converted
    assert isinstance(result, edgecls.ConversionResult)
    assert set(result.files) == {"float32", "ptq-int8"} and all(path.is_file() for path in result.files.values())
    assert result.files["ptq-int8"].name == "model_int8.tflite" and result.output_dir == result.files["ptq-int8"].parent
    table = result.table
    assert list(table.index) == ["keras", "float32", "ptq-int8"]
    assert table.loc["ptq-int8", "gate"] == result.gate in ("passed", "failed", "inconclusive") and table.loc["ptq-int8", "size_kb"] > 0
    assert table.loc["ptq-int8", "difference_low"] <= table.loc["ptq-int8", "difference_high"]
    assert list(result.layer_errors["mode"].unique()) == ["ptq-int8"] and result.layer_errors["rmse_steps"].gt(0).all()
    assert table.loc["float32", "agreement"] > 0.9  # float TFLite computes what float Keras does
    assert result.passed == result.report.gate_passed and result.errors == {}
    assert result.verdict.startswith("parity gate") and "model_int8.tflite" in repr(result)
    assert "| model |" in result._repr_markdown_() and result.to_dict()["gate_passed"] == result.passed
    if result.passed:
        assert result.check() is result
    else:
        with pytest.raises(edgecls.EdgeclsError) as excinfo:
            result.check()
        assert isinstance(excinfo.value, ParityGateFailed if result.gate == "failed" else ParityGateInconclusive)
    assert edgecls.Classifier(result.files["ptq-int8"]).labels == run.labels


def test_convert_a_model_file_with_its_split(trained, data_dir, tmp_path):
    run, _, _ = trained
    result = edgecls.convert_classifier(run.model_path, data=data_dir, split=run.files["split"], modes="float32",
                                        output=tmp_path / "file", progress=False)  # fmt: skip
    assert set(result.files) == {"float32"} and result.passed and result.report.source == str(run.model_path)
    assert (tmp_path / "file" / "split.csv").read_text() == run.files["split"].read_text()


def test_convert_a_keras_model_object_that_was_never_saved(data_dir, tmp_path):
    """A notebook's own Keras 3 model (what `tf.keras` is since TF 2.16), raw pixels in through
    Rescaling, trained on the split's train side and converted with that DatasetSplit, so parity
    runs on test images it never saw. QAT goes through its tf_keras rebuild."""
    keras = pytest.importorskip("keras", reason="Keras 3 is installed with TensorFlow >= 2.16")
    keras.utils.set_random_seed(0)
    data = edgecls.load_dataset(data_dir)
    parts = edgecls.split_dataset(data)
    model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")], name="notebook_cnn")  # fmt: skip
    model.compile("adam", "sparse_categorical_crossentropy")
    images = parts.train.load_images(parts.train.items, (SIZE, SIZE)).astype(np.float32)
    model.fit(images, parts.train.items["label_index"].to_numpy(), epochs=2, verbose=0)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = edgecls.convert_classifier(model, data=parts, modes="float32,qat", qat_epochs=1, calibration_size=32,
                                            output=tmp_path / "nb", progress=False)  # fmt: skip
    assert set(result.files) == {"float32", "qat"} and (tmp_path / "nb" / "split.csv").is_file()
    assert result.report.source == "(in-memory Keras model)" and result.report.model == "notebook_cnn"
    assert result.report.test_images == len(parts.test)
    assert any("rebuilt as a tf_keras model" in note for note in result.report.notes), result.report.notes
    norm = result.report.input_normalization  # the Rescaling layer was folded in: the uint8 input is the pixel
    assert norm["range"] == "0-1" and "Rescaling" in norm["source"], norm
    assert result.table.loc["float32", "agreement"] > 0.9
    clf = edgecls.Classifier(result.files["qat"])
    assert clf.labels == data.labels


def test_convert_errors_are_one_line(trained, data_dir, tmp_path):
    run, _, _ = trained
    cases = [
        (lambda: edgecls.convert_classifier(tmp_path / "missing"), "no such run folder or model file"),
        (lambda: edgecls.convert_classifier(run.model), "needs data=DATASET"),
        (lambda: edgecls.convert_classifier(42), "not a int"),
        (lambda: edgecls.convert_classifier(run, modes=["int4"]), "unknown conversion mode"),
        (lambda: edgecls.convert_classifier(run, mode="qat"), "unknown ConvertOptions field(s): mode"),
        (lambda: edgecls.convert_classifier(run, labels=["a", "b", "c"]), "`labels`, `split` and `input_range` are for a model file"),
        (lambda: edgecls.convert_classifier(run.model_path), "needs `data` DATASET"),
    ]
    for call, expected in cases:
        with pytest.raises(edgecls.EdgeclsError) as excinfo:
            call()
        assert expected in one_line(excinfo)
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(edgecls.EdgeclsError) as excinfo:
        edgecls.convert_classifier(tmp_path / "junk.keras", data=data_dir, progress=False)
    assert "junk.keras" in one_line(excinfo)


# -- the device runtime ----------------------------------------------------------------------
def test_classifier_takes_any_size_arrays_pil_images_paths_and_lists(converted, tmp_path):
    from edgecls.edge_runtime.preprocess import load_image, prepare_image

    clf = edgecls.Classifier(converted.files["ptq-int8"], threads=1)
    assert clf.input_size == (SIZE, SIZE) and "3 classes, 32x32" in repr(clf)
    red = colour_photo(COLOURS["red"])  # 450 rows x 600 columns: not the model's input size
    prediction = clf.classify(red)
    assert isinstance(prediction, edgecls.Prediction) and prediction.label in clf.labels
    assert len(prediction.top_k) == 3 and prediction.probabilities.shape == (3,)
    # Resized by the device's own preprocessing, so it is what predict() gives on those pixels.
    expected = clf.runtime.predict(prepare_image(red, (SIZE, SIZE)))
    np.testing.assert_array_equal(prediction.probabilities, expected.probabilities)
    assert clf.classify(Image.fromarray(red)).probabilities.tolist() == expected.probabilities.tolist()
    assert clf.classify(red.astype(np.float32) / 255).label == prediction.label  # float 0..1 arrays too
    path = tmp_path / "red.jpg"
    Image.fromarray(red).save(path, quality=95)
    from_path = clf.classify(path)
    np.testing.assert_array_equal(from_path.probabilities, clf.runtime.predict(load_image(path, (SIZE, SIZE))).probabilities)
    assert clf.classify(str(path), top_k=1).top_k == from_path.top_k[:1]

    paths = []
    for i, colour in enumerate(COLOURS.values()):
        paths.append(tmp_path / "photos" / f"{i}.jpg")
        paths[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(colour_photo(colour, seed=i)).save(paths[-1])
    mixed = [paths[0], red, Image.fromarray(red), str(paths[1]), paths[2]]
    many = clf.classify(mixed)
    assert isinstance(many, list) and len(many) == len(mixed)
    for item, result in zip(mixed, many):
        np.testing.assert_allclose(result.probabilities, clf.classify(item).probabilities, atol=1e-6)
    batch = clf.classify(np.stack([red, red]))
    assert len(batch) == 2 and batch[0].label == prediction.label
    assert clf.classify([]) == []

    results = clf.classify_files(tmp_path / "photos")
    assert [r.path for r in results] == [str(p) for p in paths] and all(r.error is None for r in results)
    assert results[0].to_record()["label"] == many[0].label
    assert clf.classify(path, tta=True).probabilities.shape == (3,)
    assert clf.classify(path, min_confidence=1.01).label == "uncertain"


def test_builtin_model_and_benchmark(tmp_path):
    clf = edgecls.Classifier("ham10000")
    assert clf.labels == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"] and clf.input_size == (94, 94)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.fromarray(colour_photo((180, 120, 100), seed=i)).save(photos / f"{i}.jpg")
    report = clf.benchmark(images=photos, runs=5, warmup=1, threads=1)
    assert report["schema"] == "edgecls.bench/1" and report["models"][0]["name"] == "ham10000"
    result = report["models"][0]["results"][0]
    assert result["threads"] == 1 and result["runs"] == 5 and result["end_to_end"]["images"] == 3
    compared = clf.benchmark(runs=3, warmup=0, threads=[1], compare=["all-blood"])
    assert [m["name"] for m in compared["models"]] == ["ham10000", "all-blood"]


def test_classifier_errors_are_one_line(tmp_path):
    (tmp_path / "junk.tflite").write_bytes(b"\x00" * 64)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    clf = edgecls.Classifier("all-blood")
    cases = [
        (lambda: edgecls.Classifier(tmp_path / "missing.tflite"), "no such model file"),
        (lambda: edgecls.Classifier(tmp_path / "junk.tflite"), "not a TFLite model"),
        (lambda: edgecls.Classifier("no-such-builtin"), "not a file and not a built-in model"),
        (lambda: edgecls.Classifier(12), "Classifier takes a .tflite path"),
        (lambda: edgecls.Classifier(b"garbage"), "not a TFLite model"),
        (lambda: clf.classify(tmp_path / "missing.jpg"), "no such file"),
        (lambda: clf.classify(tmp_path / "broken.jpg"), "broken.jpg"),
        (lambda: clf.classify([tmp_path / "broken.jpg", tmp_path / "broken.jpg"]), "broken.jpg"),
        (lambda: clf.classify([tmp_path / "broken.jpg", tmp_path / "missing.jpg"]), "missing.jpg: no such file"),
        (lambda: clf.classify(tmp_path), "is a folder"),
        (lambda: clf.classify(object()), "cannot classify a object"),
        (lambda: clf.classify(np.zeros((4, 4, 2), np.uint8)), "H x W or H x W x 1, 3 or 4"),
        (lambda: clf.classify(np.zeros((0, 4, 3), np.uint8)), "H x W or H x W x 1, 3 or 4"),
        (lambda: clf.classify(np.array([["a"]])), "H x W or H x W x 1, 3 or 4"),
        (lambda: clf.classify_files(tmp_path / "nowhere"), "no such file or folder"),
        (lambda: edgecls.Classifier(edgecls.Classifier("all-blood").path.read_bytes()).benchmark(runs=1), "made from bytes"),
    ]
    for call, expected in cases:
        with pytest.raises(edgecls.EdgeclsError) as excinfo:
            call()
        assert expected in one_line(excinfo), expected
    with pytest.raises(edgecls.ImageError):
        clf.classify(tmp_path / "broken.jpg")

"""The standard TFLite Model Metadata every edgecls file carries (for MediaPipe Tasks, the Task
Library, Android Studio), read back without TensorFlow; models made by other tools, which carry
only that metadata, run in edgecls with their own labels and normalisation."""

from __future__ import annotations

import io
import warnings
import zipfile

import numpy as np
import pytest
from tiny_models import COLOUR_LABELS, colour_tflite, solid_image
from typer.testing import CliRunner

from edgecls.cli import app
from edgecls.edge_runtime.classifier import TFLiteClassifier
from edgecls.edge_runtime.metadata import (
    METADATA_NAME,
    ModelMetadata,
    read_metadata,
    read_metadata_entries,
    read_standard_metadata,
    tflite_schema,
    write_metadata,
)
from edgecls.edge_runtime.preprocess import prepare_image
from edgecls.edge_runtime.standard_metadata import LABEL_FILE, STANDARD_METADATA_NAME, associated_files
from edgecls.errors import EdgeclsError


def without_entry(model_bytes: bytes, name: str) -> bytes:
    """The model as another tool would write it: the named metadata entry removed, the label
    archive appended after the flatbuffer kept."""
    import flatbuffers

    schema = tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    model.metadata = [m for m in model.metadata if (m.name.decode() if isinstance(m.name, bytes) else m.name) != name]
    builder = flatbuffers.Builder(len(model_bytes))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    archive = model_bytes[model_bytes.index(b"PK\x03\x04"):]
    return bytes(builder.Output()) + archive


@pytest.fixture(scope="module")
def float_model() -> bytes:
    return colour_tflite("float32", with_metadata=False)


def test_written_next_to_edgecls_metadata_with_labels_normalisation_and_licence(float_model):
    meta = ModelMetadata(
        labels=["akiec", "bcc", "nv"], input_size=(16, 16), mean=[127.5] * 3, std=[127.5] * 3, name="m",
        dataset="ham10000", quantization="float32", created="2026-11-30", edgecls_version="0.2.0",
        provenance={"licence": "CC BY-NC 4.0", "intended_use": "research; not a medical device"},
    )
    written = write_metadata(float_model, meta)
    entries = read_metadata_entries(written)
    assert {METADATA_NAME, STANDARD_METADATA_NAME} <= set(entries)
    assert entries[STANDARD_METADATA_NAME][4:8] == b"M001"
    standard = read_standard_metadata(written)
    assert standard.labels == meta.labels and standard.label_file == LABEL_FILE
    assert standard.mean == meta.mean and standard.std == meta.std
    assert standard.license == "CC BY-NC 4.0" and "not a medical device" in standard.description
    assert standard.name == "m" and standard.author == "edgecls" and standard.min_parser_version == "1.0.0"
    # The label file is an uncompressed zip member appended to the model, as MediaPipe reads it.
    with zipfile.ZipFile(io.BytesIO(written)) as archive:
        (info,) = archive.infolist()
        assert info.filename == LABEL_FILE and info.compress_type == zipfile.ZIP_STORED
        assert archive.read(info).decode().splitlines() == meta.labels
    assert read_metadata(written) == meta


def test_rewriting_replaces_both_entries_and_the_archive(float_model):
    first = write_metadata(float_model, ModelMetadata(labels=["a", "b", "c"], input_size=(16, 16)))
    second = write_metadata(first, ModelMetadata(labels=["x", "y", "z"], input_size=(16, 16)))
    assert list(read_metadata_entries(second)).count(STANDARD_METADATA_NAME) == 1
    assert second.count(b"PK\x03\x04") == 1 and associated_files(second) == {LABEL_FILE: b"x\ny\nz\n"}
    assert read_standard_metadata(second).labels == ["x", "y", "z"]
    # The model is still the same model.
    image = np.full((16, 16, 3), 200, np.uint8)
    assert np.array_equal(TFLiteClassifier(first).predict(image).probabilities, TFLiteClassifier(second).predict(image).probabilities)


def test_a_float_model_with_only_tflite_metadata_uses_its_labels_and_normalisation(float_model):
    # Mean 127.5 / std 127.5 is what MediaPipe Model Maker writes for inputs in [-1, 1].
    meta = ModelMetadata(labels=["r", "g", "b"], input_size=(16, 16), mean=[127.5] * 3, std=[127.5] * 3)
    foreign = without_entry(write_metadata(float_model, meta), METADATA_NAME)
    assert read_metadata(foreign) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # standard metadata is enough: no "no metadata" warning
        clf = TFLiteClassifier(foreign)
    assert clf.metadata_source == "tflite" and clf.labels == ["r", "g", "b"]
    assert clf.metadata.mean == [127.5] * 3 and clf.metadata.std == [127.5] * 3
    buffer = clf.to_input(np.array([[[0, 127, 255]] * 16] * 16, np.uint8))
    assert buffer[0, 0, 0].tolist() == pytest.approx([-1.0, -0.0039216, 1.0], abs=1e-6)


def test_a_uint8_model_with_only_tflite_metadata_takes_the_pixel_as_mediapipe_does():
    raw = colour_tflite("uint8", with_metadata=False)
    # Normalisation of the float model it came from; for uint8 input MediaPipe feeds the pixel.
    meta = ModelMetadata(labels=COLOUR_LABELS, input_size=(16, 16), mean=[127.5] * 3, std=[127.5] * 3)
    clf = TFLiteClassifier(without_entry(write_metadata(raw, meta), METADATA_NAME))
    assert clf.metadata_source == "tflite"
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert np.array_equal(clf.to_input(image)[0], image)
    assert clf.predict(prepare_image(solid_image((230, 20, 20)), (16, 16))).label == "red"


def test_info_shows_both_metadata_sets(float_model, tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(write_metadata(float_model, ModelMetadata(labels=["a", "b", "c"], input_size=(16, 16), provenance={"licence": "MIT"})))
    result = CliRunner().invoke(app, ["info", str(path)])
    assert result.exit_code == 0, result.output
    assert "TFLite Model Metadata (read by MediaPipe Tasks" in result.stdout
    assert "labels.txt" in result.stdout and "MIT" in result.stdout
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(float_model)
    result = CliRunner().invoke(app, ["info", str(bare)])
    assert "TFLite Model Metadata: none" in result.stdout


def test_a_damaged_tflite_metadata_entry_is_one_clear_line(float_model):
    written = write_metadata(float_model, ModelMetadata(labels=["a", "b", "c"], input_size=(16, 16)))
    raw = read_metadata_entries(written)[STANDARD_METADATA_NAME]
    damaged = written.replace(raw, raw[:8] + b"\xff" * (len(raw) - 8))
    foreign = without_entry(damaged, METADATA_NAME)
    with pytest.raises(EdgeclsError, match="TFLITE_METADATA"):
        TFLiteClassifier(foreign)

"""Metadata stored inside the .tflite file: written by edgecls, read back without TensorFlow."""

from __future__ import annotations

import pytest
from tiny_models import colour_tflite

from edgecls.edge_runtime.metadata import (
    METADATA_NAME,
    ModelMetadata,
    read_metadata,
    read_metadata_entries,
    write_metadata,
)
from edgecls.errors import EdgeclsError


@pytest.fixture(scope="module")
def bare_model() -> bytes:
    return colour_tflite("float32", with_metadata=False)


def test_round_trip_keeps_every_field(bare_model):
    meta = ModelMetadata(
        labels=["akiec", "bcc", "nv"],
        input_size=(16, 16),
        mean=[1.0, 2.0, 3.0],
        std=[4.0, 5.0, 6.0],
        output="logits",
        name="m",
        dataset="HAM10000 (CC BY-NC 4.0)",
        quantization="int8 (qat)",
        created="2026-11-23",
        edgecls_version="0.1.0",
        metrics={"accuracy": 0.81},
        provenance={"seed": 1234, "command": "edgecls train ..."},
    )
    written = write_metadata(bare_model, meta)
    assert read_metadata(written) == meta


def test_converter_metadata_is_preserved_and_rewrite_replaces_ours(bare_model):
    before = read_metadata_entries(bare_model)
    assert METADATA_NAME not in before
    first = write_metadata(bare_model, ModelMetadata(labels=["a", "b", "c"], input_size=(16, 16)))
    second = write_metadata(first, ModelMetadata(labels=["x", "y", "z"], input_size=(16, 16)))
    entries = read_metadata_entries(second)
    # The converter's own entries (e.g. min_runtime_version) survive; ours appears exactly once.
    assert set(before) <= set(entries)
    assert read_metadata(second).labels == ["x", "y", "z"]
    assert list(entries).count(METADATA_NAME) == 1


def test_rewriting_metadata_does_not_grow_the_file_or_change_the_model(bare_model):
    # A write that left the replaced entries' payloads behind as unreferenced buffers would grow
    # a built-in model by ~3.5 KB per recalibration.
    import numpy as np

    from edgecls.edge_runtime.classifier import TFLiteClassifier

    meta = ModelMetadata(labels=["a", "b", "c"], input_size=(16, 16), provenance={"note": "x" * 5000})
    first = write_metadata(bare_model, meta)
    again = write_metadata(write_metadata(first, meta), meta)
    assert len(again) == len(first)
    image = np.zeros((16, 16, 3), np.uint8)
    image[..., 1] = 200
    assert np.array_equal(TFLiteClassifier(first).predict(image).probabilities, TFLiteClassifier(again).predict(image).probabilities)


def test_model_without_metadata_reads_none(bare_model):
    assert read_metadata(bare_model) is None


def test_not_a_tflite_file_is_a_clear_error():
    with pytest.raises(EdgeclsError, match="not a TFLite model"):
        read_metadata(b"\xff\xd8\xff\xe0 this is a jpeg")

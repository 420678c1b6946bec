"""int8-I/O files (edgecls before uint8 became the default) get uint8 I/O with the same maths."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import colour_tflite

from edgecls.convert.retype_io import int8_io_to_uint8, verify_same_maths
from edgecls.convert.verify import check_ops
from edgecls.edge_runtime.classifier import TFLiteClassifier
from edgecls.errors import EdgeclsError


def test_retyped_model_gives_exactly_the_same_answers():
    int8 = colour_tflite("int8")
    uint8 = int8_io_to_uint8(int8)
    images = np.random.default_rng(0).integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)
    verify_same_maths(int8, uint8, images)  # raises on any difference
    check = check_ops(uint8)
    assert check.input_type == "uint8" and check.output_type == "uint8" and check.op_counts["QUANTIZE"] == 2
    assert check.integer_only
    before, after = TFLiteClassifier(int8), TFLiteClassifier(uint8)
    for image in images[:8]:
        assert np.array_equal(before.predict(image).probabilities, after.predict(image).probabilities)


def test_the_check_catches_a_different_model():
    int8 = colour_tflite("int8")
    other = int8_io_to_uint8(colour_tflite("int8", labels=["a", "b", "c"]))
    images = np.zeros((1, 16, 16, 3), np.uint8)
    images[0, ..., 0] = 255
    verify_same_maths(int8, other, images)  # same weights: same answers
    with pytest.raises(EdgeclsError, match="differs"):
        # A model whose output is shifted by one quantization step is not the same maths.
        verify_same_maths(int8, _shift_output_zero_point(other), images)


def test_only_int8_io_is_retyped():
    with pytest.raises(EdgeclsError, match="only int8"):
        int8_io_to_uint8(colour_tflite("float32"))


def _shift_output_zero_point(model_bytes: bytes) -> bytes:
    import flatbuffers

    from edgecls.edge_runtime.metadata import tflite_schema

    schema = tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    subgraph = model.subgraphs[0]
    tensor = subgraph.tensors[subgraph.outputs[0]]
    tensor.quantization.zeroPoint = np.asarray(tensor.quantization.zeroPoint) + 1
    builder = flatbuffers.Builder(len(model_bytes))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())

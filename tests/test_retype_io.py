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


@pytest.mark.parametrize("io_type", ["uint8", "int8"])
def test_the_logits_output_keeps_the_probabilities_and_gives_the_small_ones_back(io_type):
    from edgecls.convert.retype_io import LOGITS_OUTPUT, add_logits_output, drop_logits_output, logits_output_name
    from edgecls.edge_runtime.interpreter import make_interpreter
    from edgecls.edge_runtime.metadata import read_metadata, write_metadata

    plain = colour_tflite(io_type)
    with_logits = add_logits_output(plain)
    assert logits_output_name(with_logits) == LOGITS_OUTPUT and logits_output_name(plain) == ""
    check = check_ops(with_logits)
    assert check.integer_only and check.output_type == f"{io_type},{io_type}"

    images = np.random.default_rng(1).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
    images[0] = 0
    images[0, ..., 0] = 255  # pure red: p(green) = p(blue) = e^-8 / (1 + 2e^-8) ~ 3.4e-4, below half a 1/256 step
    verify_same_maths(plain, with_logits, images, offset=0)
    before, _ = make_interpreter(plain, 1)
    after, _ = make_interpreter(with_logits, 1)
    offset = 128 if io_type == "int8" else 0
    for image in images:
        pixels = (image.astype(np.int16) - offset).astype(np.int8 if io_type == "int8" else np.uint8)[None]
        outputs = []
        for interpreter in (before, after):
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], pixels)
            interpreter.invoke()
            outputs.append([interpreter.get_tensor(o["index"])[0].copy() for o in interpreter.get_output_details()])
        assert np.array_equal(outputs[0][0], outputs[1][0])  # the first output is untouched
        logits_details = after.get_output_details()[1]
        scale, zero_point = logits_details["quantization"]
        logits = (outputs[1][1].astype(np.float64) - zero_point) * scale
        # The colour model's logits are 8 x the mean of each channel (pixel / 255).
        assert np.allclose(logits, 8.0 * image.reshape(-1, 3).mean(axis=0) / 255.0, atol=2 * scale)

    meta = read_metadata(plain)
    file = write_metadata(with_logits, _with_logits_output(meta))
    classifier = TFLiteClassifier(file)
    assert classifier.reads_logits and classifier.output_details["name"] == LOGITS_OUTPUT
    red = classifier.predict(images[0]).probabilities
    quantized = TFLiteClassifier(plain).predict(images[0]).probabilities
    assert quantized[1] == 0.0 and quantized[2] == 0.0  # what the quantized softmax loses
    assert np.allclose(red[1:], np.exp(-8.0) / (1 + 2 * np.exp(-8.0)), rtol=0.5)  # what the logits keep
    assert red.argmax() == 0 and abs(float(red.sum()) - 1.0) < 1e-5

    # And back: without the logits output, the file computes what the plain one does.
    dropped = drop_logits_output(with_logits)
    assert logits_output_name(dropped) == "" and check_ops(dropped).output_type == io_type
    verify_same_maths(plain, dropped, images, offset=0)


def test_a_second_output_needs_the_metadata_that_names_it():
    from edgecls.convert.retype_io import add_logits_output
    from edgecls.edge_runtime.metadata import read_metadata, write_metadata

    plain = colour_tflite("uint8")
    with pytest.raises(EdgeclsError, match="1 output"):
        TFLiteClassifier(write_metadata(add_logits_output(plain), read_metadata(plain)))
    meta = _with_logits_output(read_metadata(plain))
    with pytest.raises(EdgeclsError, match="logits output 'logits' the model does not have"):
        TFLiteClassifier(write_metadata(plain, meta))


def test_only_a_full_integer_softmax_gets_a_logits_output():
    from edgecls.convert.retype_io import add_logits_output

    with pytest.raises(EdgeclsError, match="full-integer"):
        add_logits_output(colour_tflite("float32"))
    with_logits = add_logits_output(colour_tflite("uint8"))
    with pytest.raises(EdgeclsError, match="1 output"):
        add_logits_output(with_logits)  # not twice


def _with_logits_output(meta):
    import dataclasses

    return dataclasses.replace(meta, logits_output="logits")

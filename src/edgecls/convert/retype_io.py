"""Give a full-integer model with int8 input and output uint8 ones, without touching its maths.

MediaPipe Tasks, the TFLite Task Library and Android's ML model binding take uint8 or float32
image inputs only. A file converted with int8 I/O (edgecls before 0.2, `--io int8`) gets the
same two QUANTIZE ops the TFLite converter adds for `inference_input_type=uint8`: uint8 -> int8
before the first layer and int8 -> uint8 after the last, each with the same scale and the zero
point moved by 128, which is exact (q_uint8 = q_int8 + 128 for every value). `verify_same_maths`
proves it on a model's own outputs.
"""

from __future__ import annotations

import copy

import numpy as np

from edgecls.edge_runtime.metadata import tflite_schema
from edgecls.errors import EdgeclsError


def int8_io_to_uint8(model_bytes: bytes) -> bytes:
    """The model with its (single) int8 input and int8 output turned into uint8 ones."""
    import flatbuffers

    schema = tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    if len(model.subgraphs) != 1:
        raise EdgeclsError(f"expected a model with one subgraph, got {len(model.subgraphs)}")
    subgraph = model.subgraphs[0]
    if len(subgraph.inputs) != 1 or len(subgraph.outputs) != 1:
        raise EdgeclsError("expected an image classifier with 1 input and 1 output")
    for index in (subgraph.inputs[0], subgraph.outputs[0]):
        if subgraph.tensors[index].type != schema.TensorType.INT8:
            raise EdgeclsError("only int8 inputs and outputs can be turned into uint8 ones; this model's are not int8")
    quantize = _opcode_index(model, schema)

    old_input = subgraph.inputs[0]
    new_input = _add_uint8_twin(subgraph, old_input, schema)
    subgraph.operators.insert(0, _operator(schema, quantize, new_input, old_input))
    subgraph.inputs = [new_input]

    old_output = subgraph.outputs[0]
    new_output = _add_uint8_twin(subgraph, old_output, schema)
    subgraph.operators.append(_operator(schema, quantize, old_output, new_output))
    subgraph.outputs = [new_output]

    for signature in model.signatureDefs or []:
        for tensor_map, old, new in ((signature.inputs, old_input, new_input), (signature.outputs, old_output, new_output)):
            for item in tensor_map or []:
                if item.tensorIndex == old:
                    item.tensorIndex = new
    builder = flatbuffers.Builder(len(model_bytes) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _add_uint8_twin(subgraph, index: int, schema) -> int:
    """A uint8 tensor with the same shape, name and scale as int8 tensor `index`, zero point +128.
    The new tensor takes the old name (what apps see); the old one becomes `<name>_int8`."""
    old = subgraph.tensors[index]
    twin = copy.deepcopy(old)
    twin.type = schema.TensorType.UINT8
    twin.buffer = 0  # an activation: no constant data (buffer 0 is the empty sentinel)
    twin.quantization.zeroPoint = np.asarray(old.quantization.zeroPoint, dtype=np.int64) + 128
    if isinstance(old.name, bytes):
        old.name = old.name + b"_int8"
    else:
        old.name = f"{old.name}_int8"
    subgraph.tensors.append(twin)
    return len(subgraph.tensors) - 1


def _opcode_index(model, schema) -> int:
    code = schema.BuiltinOperator.QUANTIZE
    for i, opcode in enumerate(model.operatorCodes):
        if max(opcode.builtinCode, opcode.deprecatedBuiltinCode) == code:
            opcode.version = max(opcode.version, 2)
            return i
    opcode = schema.OperatorCodeT()
    opcode.builtinCode = code
    opcode.deprecatedBuiltinCode = min(code, 127)  # the pre-2.4 field, for old interpreters
    opcode.version = 2  # requantization int8 <-> uint8 is version 2 of QUANTIZE
    model.operatorCodes.append(opcode)
    return len(model.operatorCodes) - 1


def _operator(schema, opcode_index: int, source: int, target: int):
    operator = schema.OperatorT()
    operator.opcodeIndex = opcode_index
    operator.inputs = [source]
    operator.outputs = [target]
    return operator


def verify_same_maths(int8_bytes: bytes, uint8_bytes: bytes, images: np.ndarray) -> None:
    """Raise unless the uint8-I/O model's output is exactly the int8 model's + 128 on `images`
    (uint8 N x H x W x C, fed as pixel to the uint8 model and pixel - 128 to the int8 one)."""
    from edgecls.edge_runtime.interpreter import make_interpreter

    int8_model, _ = make_interpreter(int8_bytes, 1)
    uint8_model, _ = make_interpreter(uint8_bytes, 1)
    for image in images:
        outputs = []
        for interpreter, pixels in ((int8_model, (image.astype(np.int16) - 128).astype(np.int8)), (uint8_model, image)):
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], pixels[None])
            interpreter.invoke()
            outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0].astype(np.int16))
        if not np.array_equal(outputs[0] + 128, outputs[1]):
            raise EdgeclsError(f"the uint8-I/O model differs from the int8 one: {outputs[0] + 128} vs {outputs[1]}")

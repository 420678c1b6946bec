"""Rewrite a full-integer model's inputs and outputs without touching its maths.

`add_logits_output`: a second output holding the logits, the input of the final softmax. A
quantized softmax gives probabilities in steps of 1/256, so every probability under 1/512 reads
as exactly 0: the small ones, which calibration and ROC curves need, are lost, and ties appear.
The int8 logits keep them (steps of ~0.1 logit), so edgecls's runtime reads them and computes
the softmax itself; the first output stays the probabilities every other runtime reads.

`int8_io_to_uint8`: int8 input and output -> uint8 ones.

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

from edgecls.edge_runtime.metadata import builtin_code, pack_model, tflite_schema
from edgecls.errors import EdgeclsError


def int8_io_to_uint8(model_bytes: bytes) -> bytes:
    """The model with its (single) int8 input and int8 output turned into uint8 ones."""
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
    return pack_model(model, len(model_bytes))


LOGITS_OUTPUT = "logits"  # the second output's tensor and signature name


def add_logits_output(model_bytes: bytes, required: bool = True) -> bytes:
    """The model with the input of its final SOFTMAX as a second output named `logits`.

    The softmax's input is int8 (the fully connected layer's output); with uint8 outputs (the
    default) it is handed out through a QUANTIZE to uint8 with the zero point moved by 128, as
    the probabilities are, which is exact. A model whose output is not a softmax (it gives
    logits already) is refused, or returned unchanged when not `required`.
    """
    schema = tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    if len(model.subgraphs) != 1:
        raise EdgeclsError(f"expected a model with one subgraph, got {len(model.subgraphs)}")
    subgraph = model.subgraphs[0]
    if len(subgraph.outputs) != 1:
        raise EdgeclsError(f"expected a classifier with 1 output, got {len(subgraph.outputs)}")
    producers = {output: op for op in subgraph.operators for output in op.outputs}
    opcode = lambda op: builtin_code(model.operatorCodes[op.opcodeIndex])  # noqa: E731
    tensor = subgraph.outputs[0]
    producer = producers.get(tensor)
    if producer is not None and opcode(producer) == schema.BuiltinOperator.QUANTIZE:  # the uint8 output's requantize
        producer = producers.get(producer.inputs[0])
    if producer is None or opcode(producer) != schema.BuiltinOperator.SOFTMAX:
        if not required:
            return model_bytes
        raise EdgeclsError("the model's output does not come from a SOFTMAX: there are no logits to add")
    logits = producer.inputs[0]
    output_type = subgraph.tensors[tensor].type
    if subgraph.tensors[logits].type != schema.TensorType.INT8 or output_type not in (schema.TensorType.INT8, schema.TensorType.UINT8):
        raise EdgeclsError("only a full-integer model's softmax input can be added as a logits output")
    if output_type == schema.TensorType.UINT8:
        new_output = _add_uint8_twin(subgraph, logits, schema, name=LOGITS_OUTPUT)
        subgraph.operators.append(_operator(schema, _opcode_index(model, schema), logits, new_output))
    else:
        new_output = logits
        subgraph.tensors[logits].name = LOGITS_OUTPUT
    subgraph.outputs = [tensor, new_output]
    for signature in model.signatureDefs or []:
        item = schema.TensorMapT()
        item.name, item.tensorIndex = LOGITS_OUTPUT, new_output
        signature.outputs = [*(signature.outputs or []), item]
    return pack_model(model, len(model_bytes))


def drop_logits_output(model_bytes: bytes) -> bytes:
    """The model with its first output (the probabilities) only: the undoing of
    `add_logits_output` (the ops stay; the logits are no longer an output)."""
    schema = tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    model.subgraphs[0].outputs = model.subgraphs[0].outputs[:1]
    for signature in model.signatureDefs or []:
        signature.outputs = (signature.outputs or [])[:1]
    return pack_model(model, len(model_bytes))


def logits_output_name(model_bytes: bytes) -> str:
    """`LOGITS_OUTPUT` when the model has the second output `add_logits_output` adds, else ""."""
    schema = tflite_schema()
    subgraph = schema.Model.GetRootAs(model_bytes, 0).Subgraphs(0)
    if subgraph is None or subgraph.OutputsLength() != 2:
        return ""
    name = subgraph.Tensors(subgraph.Outputs(1)).Name()
    return LOGITS_OUTPUT if name == LOGITS_OUTPUT.encode() else ""


def _add_uint8_twin(subgraph, index: int, schema, name: str | None = None) -> int:
    """A uint8 tensor with the same shape and scale as int8 tensor `index`, zero point +128.
    Named `name`, or else it takes the old name (what apps see) and the old one becomes `<name>_int8`."""
    old = subgraph.tensors[index]
    twin = copy.deepcopy(old)
    twin.type = schema.TensorType.UINT8
    twin.buffer = 0  # an activation: no constant data (buffer 0 is the empty sentinel)
    twin.quantization.zeroPoint = np.asarray(old.quantization.zeroPoint, dtype=np.int64) + 128
    if name is not None:
        twin.name = name
    elif isinstance(old.name, bytes):
        old.name = old.name + b"_int8"
    else:
        old.name = f"{old.name}_int8"
    subgraph.tensors.append(twin)
    return len(subgraph.tensors) - 1


def _opcode_index(model, schema) -> int:
    code = schema.BuiltinOperator.QUANTIZE
    for i, opcode in enumerate(model.operatorCodes):
        if builtin_code(opcode) == code:
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


def verify_same_maths(before: bytes, after: bytes, images: np.ndarray, offset: int = 128) -> None:
    """Raise unless `after`'s first output is exactly `before`'s + `offset` on `images` (uint8
    N x H x W x C, each model fed them in its own input type: pixel, or pixel - 128 for int8).
    offset 128: `before` has int8 I/O and `after` uint8 (int8_io_to_uint8); 0: same types
    (add_logits_output)."""
    from edgecls.edge_runtime.interpreter import make_interpreter

    models = [make_interpreter(model, 1)[0] for model in (before, after)]
    for image in images:
        outputs = []
        for interpreter in models:
            details = interpreter.get_input_details()[0]
            pixels = (image.astype(np.int16) - 128).astype(np.int8) if details["dtype"] == np.int8 else image
            interpreter.set_tensor(details["index"], pixels[None])
            interpreter.invoke()
            outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0].astype(np.int16))
        if not np.array_equal(outputs[0] + offset, outputs[1]):
            raise EdgeclsError(f"the rewritten model differs from the original: {outputs[0] + offset} vs {outputs[1]}")

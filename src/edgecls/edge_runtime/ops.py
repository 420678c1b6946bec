"""Which operators a `.tflite` file may use before an interpreter is built for it.

An image classifier is a fixed pipeline of convolutions, pooling, element-wise maths and a
softmax: it needs no loops, no branches, no custom kernels. A file is checked against an
allow-list of those builtin operators, read straight from its flatbuffer (no interpreter, no
schema package), so a WHILE that never ends, or a custom op the runtime would look up by
name, is refused in one line before anything runs. `allow_control_flow=True` lets WHILE, IF
and CALL_ONCE through (their subgraphs are checked against the same list); invokes are then
bounded in time by the CLI's watchdog (edge_runtime.watchdog).
"""

from __future__ import annotations

import struct

from flatbuffers import encode, number_types, table

from edgecls.edge_runtime.metadata import is_tflite
from edgecls.errors import EdgeclsError

# Builtin operator codes of the TFLite schema (tensorflow/compiler/mlir/lite/schema/schema.fbs,
# enum BuiltinOperator) an image classifier is made of: what tf.lite's converter and edgecls's
# own (float32, PTQ and QAT int8, uint8/int8 I/O, logits outputs, float layers between
# DEQUANTIZE and QUANTIZE) write for CNNs, ViTs and MediaPipe Model Maker's EfficientNets.
# Left out on purpose: anything with state (variables, hash tables, random numbers), custom and
# delegate ops, and FILL (a tensor whose size comes from the image's values: memory on demand).
CLASSIFIER_OPS: dict[int, str] = {
    0: "ADD", 1: "AVERAGE_POOL_2D", 2: "CONCATENATION", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D", 5: "DEPTH_TO_SPACE",
    6: "DEQUANTIZE", 8: "FLOOR", 9: "FULLY_CONNECTED", 11: "L2_NORMALIZATION", 12: "L2_POOL_2D",
    13: "LOCAL_RESPONSE_NORMALIZATION", 14: "LOGISTIC", 17: "MAX_POOL_2D", 18: "MUL", 19: "RELU", 20: "RELU_N1_TO_1",
    21: "RELU6", 22: "RESHAPE", 23: "RESIZE_BILINEAR", 25: "SOFTMAX", 26: "SPACE_TO_DEPTH", 28: "TANH", 34: "PAD",
    36: "GATHER", 37: "BATCH_TO_SPACE_ND", 38: "SPACE_TO_BATCH_ND", 39: "TRANSPOSE", 40: "MEAN", 41: "SUB", 42: "DIV",
    43: "SQUEEZE", 45: "STRIDED_SLICE", 47: "EXP", 49: "SPLIT", 50: "LOG_SOFTMAX", 53: "CAST", 54: "PRELU",
    55: "MAXIMUM", 56: "ARG_MAX", 57: "MINIMUM", 58: "LESS", 59: "NEG", 60: "PADV2", 61: "GREATER",
    62: "GREATER_EQUAL", 63: "LESS_EQUAL", 64: "SELECT", 65: "SLICE", 66: "SIN", 67: "TRANSPOSE_CONV", 69: "TILE",
    70: "EXPAND_DIMS", 71: "EQUAL", 72: "NOT_EQUAL", 73: "LOG", 74: "SUM", 75: "SQRT", 76: "RSQRT", 77: "SHAPE",
    78: "POW", 79: "ARG_MIN", 81: "REDUCE_PROD", 82: "REDUCE_MAX", 83: "PACK", 84: "LOGICAL_OR", 86: "LOGICAL_AND",
    87: "LOGICAL_NOT", 88: "UNPACK", 89: "REDUCE_MIN", 90: "FLOOR_DIV", 92: "SQUARE", 93: "ZEROS_LIKE",
    95: "FLOOR_MOD", 97: "RESIZE_NEAREST_NEIGHBOR", 98: "LEAKY_RELU", 99: "SQUARED_DIFFERENCE", 100: "MIRROR_PAD",
    101: "ABS", 102: "SPLIT_V", 107: "GATHER_ND", 108: "COS", 111: "ELU", 114: "QUANTIZE", 116: "ROUND",
    117: "HARD_SWISH", 123: "SELECT_V2", 126: "BATCH_MATMUL", 130: "BROADCAST_TO", 132: "CONV_3D", 150: "GELU",
    152: "RELU_0_TO_1", 158: "SIGN", 145: "BROADCAST_ARGS",
    # Recurrent layers (edgecls's cnn-lstm baseline): fused kernels over a fixed number of
    # steps, the sequence length being a tensor dimension, not a loop condition.
    16: "LSTM", 35: "UNIDIRECTIONAL_SEQUENCE_RNN", 44: "UNIDIRECTIONAL_SEQUENCE_LSTM", 46: "BIDIRECTIONAL_SEQUENCE_RNN",
    52: "BIDIRECTIONAL_SEQUENCE_LSTM",
}  # fmt: skip
# Control flow: subgraphs run in loops or branches. A WHILE whose condition never turns false
# hangs the invoke; no classifier edgecls makes or imports has one.
CONTROL_FLOW_OPS: dict[int, str] = {118: "IF", 119: "WHILE", 129: "CALL_ONCE"}
CUSTOM = 32

# Field slots (vtable offset = 4 + 2 * field index) of the schema's Model and OperatorCode tables.
_MODEL_OPERATOR_CODES = 4 + 2 * 1
_CODE_DEPRECATED_BUILTIN = 4 + 2 * 0
_CODE_CUSTOM = 4 + 2 * 1
_CODE_BUILTIN = 4 + 2 * 3


def operator_codes(model_bytes: bytes) -> list[tuple[int, str | None]]:
    """(builtin code, custom code name or None) of every operator code the file declares."""
    if not is_tflite(model_bytes):
        raise EdgeclsError("not a TFLite model (no TFL3 identifier)")
    buf = memoryview(model_bytes)
    try:
        model = table.Table(buf, encode.Get(number_types.UOffsetTFlags.packer_type, buf, 0))
        offset = model.Offset(_MODEL_OPERATOR_CODES)
        if not offset:
            return []
        vector, count = model.Vector(offset), model.VectorLen(offset)
        codes = []
        for i in range(count):
            code = table.Table(buf, model.Indirect(vector + 4 * i))
            deprecated = _field(code, _CODE_DEPRECATED_BUILTIN, number_types.Int8Flags)
            builtin = _field(code, _CODE_BUILTIN, number_types.Int32Flags)
            custom_off = code.Offset(_CODE_CUSTOM)
            custom = code.String(code.Pos + custom_off).decode("utf-8", "replace") if custom_off else None
            # Newer schemas moved codes > 127 to builtin_code and keep the old byte for old
            # readers: whichever is set is the larger.
            codes.append((max(deprecated, builtin), custom))
        return codes
    except (IndexError, ValueError, TypeError, struct.error, OverflowError):
        raise EdgeclsError("the model file is corrupt: its operator list is unreadable") from None


def _field(t: table.Table, slot: int, flags) -> int:
    offset = t.Offset(slot)
    return int(t.Get(flags, t.Pos + offset)) if offset else 0


def check_operators(model_bytes: bytes, allow_control_flow: bool = False) -> None:
    """Raise EdgeclsError naming the first operator an image classifier has no use for."""
    for code, custom in operator_codes(model_bytes):
        if code in CLASSIFIER_OPS:
            continue
        if code in CONTROL_FLOW_OPS:
            if allow_control_flow:
                continue
            raise EdgeclsError(
                f"the model uses the control-flow op {CONTROL_FLOW_OPS[code]}, which an image classifier does not need "
                "(a loop in a model file can run forever); pass --allow-control-flow to run it anyway, bounded in time"
            )
        if code == CUSTOM or custom:
            shown = (custom or "?")[:60].encode("unicode_escape").decode("ascii")
            raise EdgeclsError(f"the model uses the custom op '{shown}': edgecls runs builtin image-classifier ops only")
        raise EdgeclsError(f"the model uses the op {operator_name(code)}, which is not among the ops an image classifier uses")


def operator_name(code: int) -> str:
    """A builtin operator's schema name (from LiteRT's schema when it is installed)."""
    known = CLASSIFIER_OPS.get(code) or CONTROL_FLOW_OPS.get(code)
    if known:
        return known
    try:
        from ai_edge_litert.schema_py_generated import BuiltinOperator
    except ImportError:
        return f"builtin operator {code}"
    names = {value: name for name, value in vars(BuiltinOperator).items() if not name.startswith("_")}
    return names.get(code, f"builtin operator {code}")

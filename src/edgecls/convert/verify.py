"""What a converted `.tflite` actually computes in: read from its flatbuffer, op by op.

`supported_ops=[TFLITE_BUILTINS_INT8]` is not a guarantee: for an op without an int8 kernel
the converter may keep a float island (DEQUANTIZE -> op -> QUANTIZE). Checking every op's
tensors is the only way to know a "full-integer" model is one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from edgecls.edge_runtime.metadata import builtin_code, tflite_schema

_FLOAT_TYPES = ("FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16", "COMPLEX64", "COMPLEX128")


@dataclass
class OpCheck:
    op_counts: dict[str, int]
    float_ops: dict[str, int] = field(default_factory=dict)  # ops reading or writing float tensors
    custom_ops: dict[str, int] = field(default_factory=dict)  # not TFLite builtins (Flex, custom)
    input_type: str = ""
    output_type: str = ""

    @property
    def integer_only(self) -> bool:
        return not self.float_ops and not self.custom_ops

    def describe_problems(self) -> str:
        parts = [f"{name} x{count}" if count > 1 else name for name, count in sorted(self.float_ops.items())]
        parts += [f"custom {name}" for name in sorted(self.custom_ops)]
        return ", ".join(parts)


def check_ops(model_bytes: bytes) -> OpCheck:
    """Count op types, and find ops that compute in float or are not builtins."""
    schema = tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)
    counts: Counter = Counter()
    float_ops: Counter = Counter()
    custom_ops: Counter = Counter()
    input_type = output_type = ""
    for subgraph in model.subgraphs or []:
        types = [type_names.get(tensor.type, str(tensor.type)) for tensor in subgraph.tensors or []]
        if subgraph is model.subgraphs[0]:
            input_type = ",".join(types[i] for i in subgraph.inputs)
            output_type = ",".join(types[i] for i in subgraph.outputs)
        for op in subgraph.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            builtin = builtin_code(code)
            name = op_names.get(builtin, str(builtin))
            if name == "CUSTOM":
                custom = code.customCode.decode() if isinstance(code.customCode, bytes) else str(code.customCode)
                custom_ops[custom] += 1
                name = f"CUSTOM:{custom}"
            counts[name] += 1
            tensors = [*(op.inputs if op.inputs is not None else []), *(op.outputs if op.outputs is not None else [])]
            if any(types[i] in _FLOAT_TYPES for i in tensors if i >= 0):  # -1: an omitted optional input
                float_ops[name] += 1
    return OpCheck(dict(counts), dict(float_ops), dict(custom_ops), input_type.lower(), output_type.lower())


def _enum_names(enum_class) -> dict[int, str]:
    return {value: key for key, value in vars(enum_class).items() if not key.startswith("_") and isinstance(value, int)}


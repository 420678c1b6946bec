"""What a converted `.tflite` actually computes in: read from its flatbuffer, op by op.

`supported_ops=[TFLITE_BUILTINS_INT8]` is not a guarantee: for an op without an int8 kernel
the converter may keep a float island (DEQUANTIZE -> op -> QUANTIZE). Checking every op's
tensors is the only way to know a "full-integer" model is one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

from edgecls.edge_runtime.metadata import builtin_code, tflite_schema

_FLOAT_TYPES = ("FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16", "COMPLEX64", "COMPLEX128")


@dataclass
class OpCheck:
    op_counts: dict[str, int]
    float_ops: dict[str, int] = field(default_factory=dict)  # ops reading or writing float tensors, undeclared
    custom_ops: dict[str, int] = field(default_factory=dict)  # not TFLite builtins (Flex, custom)
    input_type: str = ""
    output_type: str = ""
    # Float ops of the layers declared float (--keep-float), with the DEQUANTIZE / QUANTIZE
    # ops that feed and read them; the layers they compute.
    kept_float_ops: dict[str, int] = field(default_factory=dict)
    float_layers: list[str] = field(default_factory=list)

    @property
    def integer_only(self) -> bool:
        return not self.float_ops and not self.custom_ops

    def describe_problems(self) -> str:
        parts = [f"{name} x{count}" if count > 1 else name for name, count in sorted(self.float_ops.items())]
        parts += [f"custom {name}" for name in sorted(self.custom_ops)]
        return ", ".join(parts)


def check_ops(model_bytes: bytes, keep_float: Sequence[str] = ()) -> OpCheck:
    """Count op types, and find ops that compute in float or are not builtins. `keep_float`:
    Keras layers declared float: their ops (output tensor named after the layer), and the
    DEQUANTIZE ops feeding them and QUANTIZE ops reading them, may compute in float; any other
    float op is still reported."""
    from edgecls.convert.layer_error import name_layers

    declared = {name: i for i, name in enumerate(keep_float)}
    schema = tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)
    counts: Counter = Counter()
    float_ops: Counter = Counter()
    kept_ops: Counter = Counter()
    float_layers: set[str] = set()
    custom_ops: Counter = Counter()
    input_type = output_type = ""
    for subgraph in model.subgraphs or []:
        types = [type_names.get(tensor.type, str(tensor.type)) for tensor in subgraph.tensors or []]
        if subgraph is model.subgraphs[0]:
            input_type = ",".join(types[i] for i in subgraph.inputs)
            output_type = ",".join(types[i] for i in subgraph.outputs)
        names = [tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name) for tensor in subgraph.tensors or []]
        ops = subgraph.operators or []
        kept = _kept_float(ops, names, declared, model, op_names) if declared else set()
        for position, op in enumerate(ops):
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
                if position in kept:
                    kept_ops[name] += 1
                else:
                    float_ops[name] += 1
        for position in kept:
            for index in ops[position].outputs if ops[position].outputs is not None else []:
                float_layers.update(layer for layer, _ in name_layers(names[index], declared))
    ordered = [name for name in keep_float if name in float_layers]
    return OpCheck(dict(counts), dict(float_ops), dict(custom_ops), input_type.lower(), output_type.lower(), dict(kept_ops), ordered)


def _kept_float(ops, names: list[str], declared: dict[str, int], model, op_names: dict[int, str]) -> set[int]:
    """Positions of the ops a declared layer may compute in float: those whose output tensor is
    named after it, the DEQUANTIZE ops whose output only they read, the QUANTIZE ops reading them."""
    from edgecls.convert.layer_error import name_layers

    def op_name(op) -> str:
        return op_names.get(builtin_code(model.operatorCodes[op.opcodeIndex]), "")

    def outputs(op) -> list[int]:
        return list(op.outputs) if op.outputs is not None else []

    def inputs(op) -> list[int]:
        return [i for i in (op.inputs if op.inputs is not None else []) if i >= 0]

    layer_ops = {p for p, op in enumerate(ops) if any(name_layers(names[i], declared) for i in outputs(op))}
    feeding = {i for p in layer_ops for i in inputs(ops[p])}
    produced = {i for p in layer_ops for i in outputs(ops[p])}
    readers: dict[int, set[int]] = {}
    for p, op in enumerate(ops):
        for i in inputs(op):
            readers.setdefault(i, set()).add(p)
    kept = set(layer_ops)
    for p, op in enumerate(ops):
        kind = op_name(op)
        if kind == "DEQUANTIZE" and outputs(op) and all(o in feeding and readers.get(o, set()) <= layer_ops for o in outputs(op)):
            kept.add(p)
        elif kind == "QUANTIZE" and inputs(op) and all(i in produced for i in inputs(op)):
            kept.add(p)
    return kept


def _enum_names(enum_class) -> dict[int, str]:
    return {value: key for key, value in vars(enum_class).items() if not key.startswith("_") and isinstance(value, int)}


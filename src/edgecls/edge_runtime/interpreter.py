"""Find a TFLite interpreter: LiteRT first, then the older tflite-runtime, then TensorFlow."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from edgecls.errors import EdgeclsError, first_line

# (module, human name). TensorFlow is last: it costs ~5 s and ~580 MiB to import.
INTERPRETER_MODULES = (
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite-runtime"),
    ("tensorflow.lite.python.interpreter", "tensorflow"),
)


def find_interpreter() -> tuple[type, str]:
    """Return (Interpreter class, package name) of the first interpreter that imports."""
    for module_name, package in INTERPRETER_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        return module.Interpreter, package
    raise EdgeclsError(
        "no TFLite interpreter is installed: pip install ai-edge-litert "
        "(or tflite-runtime on 32-bit ARM)"
    )


def make_interpreter(model_bytes: bytes, num_threads: int | None, allow_control_flow: bool = False) -> tuple[Any, str]:
    """An interpreter for `model_bytes`, its tensors allocated, once the file's operators are
    among an image classifier's (ops.check_operators) and its tensors are sane."""
    interpreter_class, package = find_interpreter()
    from edgecls.edge_runtime.metadata import subgraph_count
    from edgecls.edge_runtime.ops import check_operators

    check_operators(model_bytes, allow_control_flow)
    if subgraph_count(model_bytes) < 1:  # the constructor segfaults on a model without one
        raise EdgeclsError("the model file is corrupt or truncated: it holds no readable subgraph")
    try:
        interpreter = interpreter_class(model_content=model_bytes, num_threads=num_threads)
        # The constructor verifies the flatbuffer's structure, not its values: an out-of-range
        # zero point or a zero/negative scale (a bit flip in a copied file) segfaults
        # allocate_tensors(), and an absurd shape gets the process OOM-killed; check them first.
        check_tensors(interpreter)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise EdgeclsError(f"the model file is corrupt or unsupported: the interpreter cannot load it ({first_line(exc)})") from None
    return interpreter, package


# More tensor memory than this is a corrupt shape, not a model for a phone or a Raspberry Pi.
MAX_TENSOR_BYTES = 2 << 30

# Zero points the kernels can represent, per quantized tensor type.
_ZERO_POINT_RANGE = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255), np.dtype(np.int16): (-32768, 32767)}


# Ops whose inputs from this position on may be absent (-1): the optional bias. Every other input
# of these ops, every input of the ops in _ALL_INPUTS_REQUIRED and input 0 of any op must exist:
# XNNPACK dereferences them unchecked, so a -1 left by a bit flip segfaults allocate_tensors().
_OPTIONAL_FROM = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "TRANSPOSE_CONV": 3}
_ALL_INPUTS_REQUIRED = frozenset(
    "ADD AVERAGE_POOL_2D CONCATENATION DEQUANTIZE HARD_SWISH LOGISTIC MAX_POOL_2D MEAN MUL PAD "
    "QUANTIZE RELU RELU6 SOFTMAX SUB".split()  # not RESHAPE: its shape input is optional
)


def check_tensors(interpreter: Any) -> None:
    """Refuse shapes, quantizations and op wiring no valid model has, before they crash or
    exhaust the machine."""
    _check_ops(interpreter)
    total = 0
    for details in _all_tensor_details(interpreter):
        shape = [int(d) for d in details.get("shape", ())]
        size = np.dtype(details["dtype"]).itemsize
        for dim in shape:
            size *= max(dim, 0)
        total += size
        if min(shape, default=0) < 0 or total > MAX_TENSOR_BYTES:
            raise EdgeclsError(
                f"the model file is corrupt: tensor {details['index']} ({details.get('name', '')!s:.60}) "
                f"has shape {shape}, {total / 2**30:.1f} GiB of tensors in all"
            )
        params = details.get("quantization_parameters") or {}
        scales = np.asarray(params.get("scales", ()), dtype=np.float64).ravel()
        zero_points = np.asarray(params.get("zero_points", ()), dtype=np.int64).ravel()
        if not scales.size and not zero_points.size:
            continue
        # Per-channel weights may legitimately have a zero scale (an all-zero channel).
        lowest = 0.0 if scales.size > 1 else float(np.finfo(np.float32).tiny)
        bad = None
        if not np.all(np.isfinite(scales)) or (scales.size and scales.min() < lowest):
            bad = f"scale {scales.tolist()[:4]}"
        else:
            limits = _ZERO_POINT_RANGE.get(np.dtype(details["dtype"]))
            if limits and zero_points.size and (zero_points.min() < limits[0] or zero_points.max() > limits[1]):
                bad = f"zero point {zero_points.tolist()[:4]} for {np.dtype(details['dtype']).name}"
        if bad:
            raise EdgeclsError(
                f"the model file is corrupt: tensor {details['index']} ({details.get('name', '')!s:.60}) has an "
                f"impossible quantization {bad}"
            )


def _all_tensor_details(interpreter: Any):
    """Details of every tensor in every subgraph.

    `get_tensor_details()` silently skips tensors it cannot describe (a name that is not UTF-8)
    and covers subgraph 0 only: exactly the damaged tensors this check is for.
    """
    wrapper = getattr(interpreter, "_interpreter", None)
    try:
        subgraphs = int(wrapper.NumSubgraphs())
        counts = [int(wrapper.NumTensors(index)) for index in range(subgraphs)]
        try:
            interpreter._get_tensor_details(0, 0) if counts and counts[0] else None
        except ValueError:  # the call works; tensor 0 is one the loop below handles
            pass
    except (AttributeError, TypeError):  # an older interpreter package without these internals
        yield from interpreter.get_tensor_details()
        return
    for subgraph, count in enumerate(counts):
        for index in range(count):
            try:
                yield interpreter._get_tensor_details(index, subgraph)
            except UnicodeDecodeError:
                raise EdgeclsError(f"the model file is corrupt: tensor {index} has a garbled name") from None
            except ValueError:  # a tensor without a type (a scratch buffer): nothing to check
                continue


def _check_ops(interpreter: Any) -> None:
    wrapper = getattr(interpreter, "_interpreter", None)
    try:
        nodes, tensors = int(wrapper.NumNodes()), int(wrapper.NumTensors(0))
    except (AttributeError, TypeError):  # an older interpreter package without these internals
        return
    for node in range(nodes):
        name = str(wrapper.NodeName(node))
        inputs = [int(i) for i in wrapper.NodeInputs(node)]
        outputs = [int(i) for i in wrapper.NodeOutputs(node)]
        required = inputs if name in _ALL_INPUTS_REQUIRED else inputs[: _OPTIONAL_FROM.get(name, 1)]
        if any(i < 0 for i in required) or any(i < 0 or i >= tensors for i in outputs) or any(i >= tensors for i in inputs):
            raise EdgeclsError(
                f"the model file is corrupt: op {node} ({name}) has inputs {inputs} and outputs {outputs} "
                f"of {tensors} tensors"
            )

"""Find a TFLite interpreter: LiteRT first, then the older tflite-runtime, then TensorFlow."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from edgecls.errors import EdgeclsError

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


def make_interpreter(model_bytes: bytes, num_threads: int | None) -> tuple[Any, str]:
    interpreter_class, package = find_interpreter()
    try:
        interpreter = interpreter_class(model_content=model_bytes, num_threads=num_threads)
        # The constructor verifies the flatbuffer's structure, not its values: an out-of-range
        # zero point or a zero/negative scale (a bit flip in a copied file) segfaults
        # allocate_tensors(), so check them first.
        check_quantization(interpreter)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgeclsError(f"the interpreter cannot load this model ({first[:200]})") from None
    return interpreter, package


# Zero points the kernels can represent, per quantized tensor type.
_ZERO_POINT_RANGE = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255), np.dtype(np.int16): (-32768, 32767)}


def check_quantization(interpreter: Any) -> None:
    """Refuse tensors whose quantization no valid converter output has (before they crash a kernel)."""
    for details in interpreter.get_tensor_details():
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

"""Find a TFLite interpreter: LiteRT first, then the older tflite-runtime, then TensorFlow."""

from __future__ import annotations

import importlib
from typing import Any

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
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgeclsError(f"the interpreter cannot load this model ({first[:200]})") from None
    return interpreter, package

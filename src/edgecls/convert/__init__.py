"""`edgecls convert`: Keras model -> float32 / float16 / dynamic / int8 TFLite files, each with
its metadata, and a parity report proving them on the test split (workstation; needs
`pip install edgecls[train]`).

    from edgecls.convert import ConvertOptions, convert_run
    report = convert_run("runs/ham", ConvertOptions(modes=("float32", "qat", "ptq-int8")))
    report = convert_model_file("m.keras", "data/", ConvertOptions(input_range="0-1"))  # .keras, .h5, SavedModel

Importing this package stays cheap (the CLI does it at start-up): the converting functions,
which need TensorFlow, load on first use.
"""

from __future__ import annotations

from edgecls.convert.options import DEFAULT_MODES, MODES, ConvertOptions, parse_modes

_LAZY = {
    "convert_run": "edgecls.convert.conversion",
    "convert_model": "edgecls.convert.conversion",
    "convert_model_file": "edgecls.convert.conversion",
    "read_labels": "edgecls.core.runs",
    "load_user_model": "edgecls.convert.keras_import",
    "ImportedModel": "edgecls.convert.keras_import",
    "ParityReport": "edgecls.convert.parity",
    "ParityRow": "edgecls.convert.parity",
    "check_ops": "edgecls.convert.verify",
}

__all__ = ["ConvertOptions", "DEFAULT_MODES", "MODES", "parse_modes", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

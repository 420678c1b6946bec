"""What `edgecls convert` can be asked to do: conversion modes and the options of one run.

Light on purpose (no numpy, no TensorFlow): the CLI imports it to build its help text.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Iterable

from edgecls.core.defaults import SEED
from edgecls.errors import EdgeclsError

# Conversion modes, in the order they are converted and reported.
FLOAT32 = "float32"
FLOAT16 = "float16"
DYNAMIC = "dynamic"
PTQ_INT8 = "ptq-int8"
QAT = "qat"
MODES = (FLOAT32, FLOAT16, DYNAMIC, PTQ_INT8, QAT)
FULL_INTEGER_MODES = (PTQ_INT8, QAT)
DEFAULT_MODES = (FLOAT32, QAT)

MODE_HELP = {
    FLOAT32: "float32 TFLite, the reference the others are compared with",
    FLOAT16: "float16 weights (half the size; computes in float32 on most CPUs)",
    DYNAMIC: "dynamic-range: int8 weights, float activations",
    PTQ_INT8: "full integer, calibrated on a class-balanced sample of the training split",
    QAT: "full integer after quantization-aware fine-tuning on the training split",
}

# Names people type for the same thing.
_ALIASES = {"fp32": FLOAT32, "float": FLOAT32, "fp16": FLOAT16, "ptq": PTQ_INT8, "int8": QAT, "dynamic-range": DYNAMIC}

IO_TYPES = ("int8", "uint8")


def parse_modes(values: Iterable[str]) -> tuple[str, ...]:
    """Normalise repeated and comma-separated `--mode` values into MODES order, without repeats."""
    wanted: set[str] = set()
    for value in values:
        for part in str(value).split(","):
            name = part.strip().lower()
            if not name:
                continue
            name = _ALIASES.get(name, name)
            if name not in MODES:
                raise EdgeclsError(f"unknown conversion mode {part.strip()!r}; choose from: {', '.join(MODES)}")
            wanted.add(name)
    if not wanted:
        raise EdgeclsError(f"no conversion mode given; choose from: {', '.join(MODES)}")
    return tuple(mode for mode in MODES if mode in wanted)


def output_file_name(mode: str, modes: Iterable[str]) -> str:
    """The file a mode writes. QAT is the default int8 path, so it owns `model_int8.tflite`;
    post-training int8 takes that name when it is the only full-integer mode asked for."""
    if mode == QAT or (mode == PTQ_INT8 and QAT not in tuple(modes)):
        return "model_int8.tflite"
    if mode == PTQ_INT8:
        return "model_int8_ptq.tflite"
    return f"model_{mode}.tflite"


@dataclass
class ConvertOptions:
    """Everything one conversion needs besides the model and its data (`edgecls convert`'s flags).

    `modes`: the files to make (float32, float16, dynamic, ptq-int8, qat). `io_type`: full-integer
    files' input and output type, "uint8" (the pixel itself; what MediaPipe Tasks and Android
    load) or "int8" (pixel - 128). QAT fine-tuning: `qat_epochs`, `qat_learning_rate`,
    `qat_batch_size`. `calibration_size`: class-balanced training images that calibrate int8
    ranges. `max_drop`: the parity gate, the most accuracy points a full-integer file may lose
    against the float Keras model. `threads`: interpreter threads for parity and latency.
    `seed`: a model file's split, calibration sampling and QAT. `command`: recorded in each
    file's provenance. `verbose`: progress lines (the `edgecls.convert` logger) and Keras' QAT
    epoch lines. `force`: replace an earlier conversion in the output folder. `input_range`: what
    a model file's input takes when its layers do not say ("0-1", "0-255", "-1-1"; None:
    detect, else 0-1). `groups`: class groups reported as one, {"malignant": ["mel", ...]}
    (None: the dataset's malignant group when edgecls knows it). `target_sensitivity`: the
    group's operating point, the most specific threshold that flags at least this share of its
    validation images. `custom_objects`: a `.py` file with a model file's custom layers,
    imported to load them (which runs it). `keep_float`: Keras layer names computed in float inside the otherwise
    int8 post-training file (`--keep-float`); `auto_keep_float`: when that file does not pass the
    gate, keep its worst layers float one by one, up to `auto_keep_float_limit`, until it does.
    """

    modes: tuple[str, ...] = DEFAULT_MODES
    # Full-integer models' input and output type. uint8 by default: MediaPipe Tasks, the TFLite
    # Task Library and Android's ML model binding take uint8 or float32 only, never int8; uint8
    # input is the pixel itself (scale 1/255, zero point 0) and the converter turns it into the
    # int8 the kernels run on with one exact QUANTIZE op.
    io_type: str = "uint8"
    qat_epochs: int = 2
    # Low, so fine-tuning nudges the weights towards the int8 grid rather than retraining them.
    qat_learning_rate: float = 1e-4
    qat_batch_size: int = 32
    calibration_size: int = 256  # images, class-balanced, from the training split
    max_drop: float = 1.0  # accuracy points a full-integer model may lose against float Keras
    threads: int | None = None  # interpreter threads for parity and latency
    seed: int = SEED
    command: str = ""  # recorded in the files' provenance
    verbose: bool = False  # progress lines to the `edgecls.convert` logger, and Keras' QAT epoch lines
    force: bool = False  # replace an earlier conversion in the output folder
    # What a model file's input takes when its layers do not say: "0-1" (pixel / 255), "0-255"
    # (raw pixels) or "-1-1" (MobileNet's preprocess_input). None: detect, else assume 0-1.
    input_range: str | None = None
    # Class groups reported together (malignant vs benign): {"malignant": ["mel", ...]}; None:
    # the dataset's malignant group when edgecls knows it (clinical_metrics.default_groups).
    groups: dict[str, list[str]] | None = None
    # The operating point: the most specific group probability that flags at least this share of the
    # group's validation images.
    target_sensitivity: float = 0.90
    # A model file's custom layers: the user's own `.py` file, imported (so run) to load them;
    # None: a model with custom layers is refused, naming them (docs/safety.md).
    custom_objects: str | None = None
    # Keras layers computed in float inside the otherwise int8 post-training file (--keep-float).
    keep_float: tuple[str, ...] = ()
    # When the post-training int8 file does not pass the gate: keep its worst layers float, one
    # more each step, up to `auto_keep_float_limit` layers, until it passes (--auto-keep-float).
    auto_keep_float: bool = False
    auto_keep_float_limit: int = 3

    def __post_init__(self) -> None:
        self.modes = parse_modes(self.modes)
        if isinstance(self.keep_float, str):
            self.keep_float = (self.keep_float,)
        self.keep_float = tuple(dict.fromkeys(n.strip() for item in self.keep_float for n in str(item).split(",") if n.strip()))
        if (self.keep_float or self.auto_keep_float) and (QAT in self.modes or PTQ_INT8 not in self.modes):
            field = "keep_float" if self.keep_float else "auto_keep_float"
            raise EdgeclsError(f"`{field}` keeps layers float in the post-training int8 file (QAT files cannot): "
                               "convert with `modes` float32,ptq-int8", fields=(field, "modes"))  # fmt: skip
        if self.auto_keep_float_limit < 1:
            raise EdgeclsError(f"`auto_keep_float_limit` must be 1 or more, got {self.auto_keep_float_limit}", fields="auto_keep_float_limit")
        if not 0 < self.target_sensitivity <= 1:
            raise EdgeclsError(f"`target_sensitivity` must be in (0, 1], got {self.target_sensitivity}", fields="target_sensitivity")
        if self.input_range is not None:
            from edgecls.edge_runtime.normalization import range_name

            try:
                self.input_range = range_name(self.input_range)
            except ValueError as exc:
                raise EdgeclsError(f"`input_range`: {exc}", fields="input_range") from None
        self.io_type = str(self.io_type).lower()
        if self.io_type not in IO_TYPES:
            raise EdgeclsError(f"`io_type` must be one of {', '.join(IO_TYPES)}, got {self.io_type!r}", fields="io_type")
        if self.qat_epochs < 1:
            raise EdgeclsError(f"`qat_epochs` must be 1 or more, got {self.qat_epochs}", fields="qat_epochs")
        if not self.qat_learning_rate > 0:
            raise EdgeclsError(f"`qat_learning_rate` must be positive, got {self.qat_learning_rate}", fields="qat_learning_rate")
        if self.qat_batch_size < 1:
            raise EdgeclsError(f"`qat_batch_size` must be 1 or more, got {self.qat_batch_size}", fields="qat_batch_size")
        if self.calibration_size < 1:
            raise EdgeclsError(f"`calibration_size` must be 1 or more, got {self.calibration_size}", fields="calibration_size")
        if not math.isfinite(self.max_drop):
            raise EdgeclsError(f"`max_drop` must be a number of accuracy points, got {self.max_drop}", fields="max_drop")
        if self.custom_objects is not None:
            self.custom_objects = str(self.custom_objects)
        if self.threads is not None and self.threads < 1:
            raise EdgeclsError(f"`threads` must be 1 or more, got {self.threads}", fields="threads")

    def to_dict(self) -> dict:
        doc = dataclasses.asdict(self)
        doc["modes"] = list(self.modes)
        doc["keep_float"] = list(self.keep_float)
        for run_control in ("verbose", "force"):
            doc.pop(run_control)
        return doc

"""What an import gives: `ImportedModel` (a user's model ready to convert), `FloatFunction` (a
model known only as a function: no layers, no QAT), and `NoCounterpart` (what tf_keras cannot
rebuild)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgecls.core.model_safety import MAX_MODEL_BYTES, bounded_call
from edgecls.core.tf_env import import_tf
from edgecls.edge_runtime.normalization import PIXEL_UNIT, InputNormalization

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
PREPROCESSING_LAYERS = ("Rescaling", "Normalization")
MODEL_CLASSES = ("Functional", "Sequential", "Model")
MAX_SAVED_MODEL_BYTES = MAX_MODEL_BYTES
VERIFY_IMAGES = 8
VERIFY_TOLERANCE = 1e-4  # max |difference| of outputs, relative to max(1, |output|)


class NoCounterpart(Exception):
    """A Keras 3 layer (or graph construct) that tf_keras cannot reproduce; the message names it."""


@dataclass
class ImportedModel:
    """A user's model, ready to convert."""

    model: Any  # a tf_keras model, or a FloatFunction (no Keras layers: no QAT)
    normalization: InputNormalization  # what `model` takes: (pixel - mean) / std
    name: str
    format: str = "in-memory model"
    range_source: str = "convention"  # "option" (--input-range), "detected", "assumed", "convention"
    outside: InputNormalization = PIXEL_UNIT  # what the original model's own input takes
    fold: tuple[np.ndarray, np.ndarray] | None = None  # affine (scale, offset) of the folded layers
    folded_layers: list[str] = field(default_factory=list)  # "Rescaling 'rescaling'"
    qat_unavailable: str | None = None  # why QAT falls back to post-training int8
    original: Any = None  # the Keras 3 model a rebuild came from, kept as the parity cross-check
    notes: list[str] = field(default_factory=list)

    def normalization_for(self, input_range: str) -> InputNormalization:
        """What `model` would take if the original model's input were `input_range`."""
        outside = InputNormalization.from_range(input_range)
        return outside.then_affine(*self.fold) if self.fold is not None else outside


class FloatFunction:
    """A float model known only as a function from images to class scores: a SavedModel
    signature, or a Keras 3 model that could not be rebuilt in tf_keras. It offers what the
    float conversion modes and the parity reference use (`inputs`, `outputs`, `__call__`,
    `predict`) and no layers, so tfmot cannot wrap it."""

    layers: list = []

    def __init__(self, function, input_shape, num_classes: int, name: str, keep: Any = None):
        tf, _ = import_tf()
        self._function = function
        self._keep = keep  # the SavedModel or Keras object whose variables the function reads
        self.name = name
        self.inputs = [tf.TensorSpec((None, *input_shape), tf.float32)]
        self.outputs = [tf.TensorSpec((None, num_classes), tf.float32)]

    @property
    def variables(self) -> list:
        return list(getattr(self._keep, "variables", []) or [])

    def __call__(self, x, training: bool = False):
        tf, _ = import_tf()
        if not tf.executing_eagerly():  # traced into a graph (conversion): nothing runs yet
            return self._function(x)
        return bounded_call(lambda: self._function(x), self.name)

    def predict(self, x, batch_size: int = 64, verbose: int = 0) -> np.ndarray:
        tf, _ = import_tf()

        def batch(i: int) -> np.ndarray:
            return np.asarray(self._function(tf.constant(x[i : i + batch_size], tf.float32)))

        # Each batch under a wall-clock limit: a graph built to spin must not hang a conversion.
        parts = [bounded_call(lambda i=i: batch(i), self.name) for i in range(0, len(x), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.outputs[0].shape[1]), np.float32)

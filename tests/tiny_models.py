"""Tiny TFLite models whose answers are known from their weights, built by the tests themselves.

The "colour" classifier averages each channel and scores classes red/green/blue with an
identity dense layer: a mostly red image is "red", and so on. Softmax output.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from edgecls.edge_runtime.metadata import ModelMetadata, write_metadata

COLOUR_LABELS = ["red", "green", "blue"]


def colour_keras_model(size: int = 16):
    import tf_keras as keras

    inputs = keras.Input((size, size, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    # Input is pixel/255; scores = 8 * mean colour, so a pure colour wins with p ~ 0.9994.
    logits = keras.layers.Dense(3, kernel_initializer=keras.initializers.Constant(np.eye(3) * 8.0), bias_initializer="zeros")(x)
    outputs = keras.layers.Softmax()(logits)
    model = keras.Model(inputs, outputs)
    model.layers[2].set_weights([np.eye(3, dtype=np.float32) * 8.0, np.zeros(3, np.float32)])
    return model


def representative_images(size: int, count: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, size, size, 3)).astype(np.float32)
    # Include pure colours so calibration sees the full output range.
    for i in range(min(count, 6)):
        images[i] = 0
        images[i, ..., i % 3] = 255
    return images / 255.0


def convert(model, size: int, mode: str = "float32") -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode in ("int8", "uint8"):
        data = representative_images(size)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x[None]] for x in data)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_type = tf.int8 if mode == "int8" else tf.uint8
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
    return converter.convert()


def colour_tflite(mode: str = "float32", size: int = 16, with_metadata: bool = True, labels=None) -> bytes:
    raw = convert(colour_keras_model(size), size, mode)
    if not with_metadata:
        return raw
    meta = ModelMetadata(
        labels=list(labels or COLOUR_LABELS),
        input_size=(size, size),
        name="colour-test",
        dataset="synthetic colours",
        quantization=mode,
        provenance={"made_by": "tests/tiny_models.py"},
    )
    return write_metadata(raw, meta)


def solid_image(colour: tuple[int, int, int], size=(40, 30)) -> "np.ndarray":
    image = np.zeros((size[1], size[0], 3), np.uint8)
    image[...] = colour
    return image

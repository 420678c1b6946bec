"""`edgecls.convert.keras_import.normalization`: what a user's model takes at its input.
Leading Rescaling/Normalization layers are folded into the recorded (pixel - mean) / std; a
model without them takes what `--input-range` says, or pixel / 255 with a warning naming the option."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from edgecls.convert.keras_import import load_user_model
from edgecls.edge_runtime.metadata import read_metadata
from edgecls.edge_runtime.normalization import PIXEL_UNIT, InputNormalization
from test_keras_import import convert_file, keras3, notebook_cnn, patterns, trained  # noqa: F401 - patterns is a fixture


def test_minus_one_to_one_model_needs_its_input_range(patterns, tmp_path):
    """A model trained on [-1, 1] (MobileNet's preprocess_input) without a layer to say so:
    assumed 0-1 it does worse, and edgecls says which --input-range the images point to."""
    _, _, _, pixels, labels = patterns
    keras = keras3()
    model = trained(keras, notebook_cnn(keras, rescaling=False), pixels, labels, "-1-1")
    path = tmp_path / "minus_one_to_one.keras"
    model.save(path)
    right, said_right = convert_file(path, patterns, tmp_path / "right", modes=("float32",), input_range="-1-1")
    wrong, said_wrong = convert_file(path, patterns, tmp_path / "wrong", modes=("float32",))
    meta = read_metadata((tmp_path / "right" / "model_float32.tflite").read_bytes())
    assert (meta.mean, meta.std) == ([127.5] * 3, [127.5] * 3)
    assert right.input_normalization["source"] == "--input-range -1-1"
    assert not any("pass --input-range" in message for message in said_right)
    assert wrong.reference.accuracy < right.reference.accuracy
    assert any("pass --input-range -1-1 if that is how it was trained" in message for message in said_wrong), said_wrong


def test_normalization_layers_fold_into_the_input(tmp_path):
    """Rescaling then an adapted Normalization (ImageNet-style statistics) at the input of a
    functional Keras 3 model: folded into one (pixel - mean) / std, the rebuilt model checked
    against the original."""
    keras = keras3()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 16, 16, 3)).astype(np.float32)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1.0 / 255, name="to_unit")(inputs)
    normalization = keras.layers.Normalization(name="standardize")
    normalization.adapt(images / 255.0)
    x = normalization(x)
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    b = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.Concatenate()([a, b])
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    model.save(tmp_path / "normalized.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing assumed: the layers say it all
        imported = load_user_model(tmp_path / "normalized.keras")
    assert imported.folded_layers == ["Rescaling 'to_unit'", "Normalization 'standardize'"]
    mean, std = images.reshape(-1, 3).mean(0), images.reshape(-1, 3).std(0)
    assert np.allclose(imported.normalization.mean, mean, rtol=1e-4) and np.allclose(imported.normalization.std, std, rtol=1e-3)
    assert not any(type(layer).__name__ in ("Rescaling", "Normalization") for layer in imported.model.layers)
    expected = np.asarray(model(images))
    got = np.asarray(imported.model(imported.normalization.apply(images.astype(np.uint8))))
    assert np.max(np.abs(expected - got)) < 1e-5


def test_input_normalization_arithmetic():
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    assert np.array_equal(PIXEL_UNIT.apply(pixels), pixels.astype(np.float32) / np.float32(255.0))  # bit-identical
    assert InputNormalization.from_range("-1-1").apply(pixels).min() == -1.0
    raw = InputNormalization.from_range("0-255")
    assert raw.then_affine(1 / 255, 0) == PIXEL_UNIT
    assert raw.then_affine(1 / 127.5, -1).range == "-1-1"
    imagenet = PIXEL_UNIT.then_affine(1 / np.array([0.229, 0.224, 0.225]), -np.array([0.485, 0.456, 0.406]) / np.array([0.229, 0.224, 0.225]))
    assert np.allclose(imagenet.mean, [123.675, 116.28, 103.53]) and np.allclose(imagenet.std, [58.395, 57.12, 57.375])
    with pytest.raises(ValueError):
        InputNormalization.from_range("0-2")

"""The Keras side of a conversion: check a model follows the conventions (DESIGN.md), and make
a float32 copy when it was trained under mixed precision. Loading users' files: keras_import/."""

from __future__ import annotations

import numpy as np

from edgecls.core.tf_env import import_tf
from edgecls.errors import EdgeclsError


def image_input_size(model) -> tuple[int, int]:
    """(height, width) of a model's single image input, which must be fixed and RGB."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise EdgeclsError(f"expected a classifier with 1 input and 1 output, got {len(model.inputs)} and {len(model.outputs)}")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[3] != 3 or shape[1] is None or shape[2] is None:
        raise EdgeclsError(f"expected an RGB image input of fixed size (None, H, W, 3), got {shape}")
    return int(shape[1]), int(shape[2])


def output_classes(model) -> int:
    shape = tuple(model.outputs[0].shape)
    if len(shape) != 2 or shape[1] is None or shape[1] < 2:
        raise EdgeclsError(f"expected class scores of shape (None, N>=2), got {shape}")
    return int(shape[1])


def as_float32(model):
    """The model itself when it is all float32, else a float32 clone with the same weights.

    A model trained under mixed precision keeps float16 layer policies in its config; the
    TFLite converter and tfmot want one float32 graph, and float16 maths on a workstation
    would also make the parity reference differ from what the model learned.
    """
    if all(_policy_name(layer) in ("float32", None) for layer in all_layers(model)):
        return model
    _, keras = import_tf()

    def float32_layer(layer):
        config = layer.get_config()
        if "dtype" in config:
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    clone = keras.models.clone_model(model, clone_function=float32_layer)
    clone.set_weights([np.asarray(w, np.float32) for w in model.get_weights()])
    return clone


def outputs_probabilities(scores: np.ndarray) -> bool:
    """True when rows look like softmax output (non-negative, summing to 1)."""
    if not len(scores):
        return True
    return bool(np.all(scores >= -1e-6) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3))


def all_layers(model):
    """Every layer, nested models' layers included."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):  # nested models
            yield from all_layers(layer)


def _policy_name(layer) -> str | None:
    policy = getattr(layer, "dtype_policy", None)
    return getattr(policy, "name", None)

"""Graph rewrites that keep a full-integer model integer: same maths, int8-friendly ops.

Keras' GroupNormalization computes its variance with SQUARE, which TFLite has no int8 kernel
for: the converter silently wraps it in DEQUANTIZE/QUANTIZE and the "int8" model runs part of
itself in float (slow on CPUs, impossible on int8-only accelerators). The replacement computes
the variance as mean(centered * centered); MUL, MEAN and RSQRT all have int8 kernels.
"""

from __future__ import annotations

import functools

from edgecls.core.tf_env import import_tf


@functools.lru_cache(maxsize=None)
def _integer_group_normalization_class():
    tf, keras = import_tf()

    class IntegerFriendlyGroupNormalization(keras.layers.GroupNormalization):
        """GroupNormalization for channels-last 4-D inputs without SQUARE (inference only)."""

        def call(self, inputs, mask=None):
            height, width, channels = inputs.shape[1:]
            groups = self.groups
            grouped = tf.reshape(inputs, [-1, height, width, groups, channels // groups])
            axes = [1, 2, 4]
            mean = tf.reduce_mean(grouped, axis=axes, keepdims=True)
            centered = grouped - mean
            variance = tf.reduce_mean(centered * centered, axis=axes, keepdims=True)
            normalized = tf.reshape(centered * tf.math.rsqrt(variance + self.epsilon), [-1, height, width, channels])
            if self.scale:
                normalized = normalized * self.gamma
            if self.center:
                normalized = normalized + self.beta
            return normalized

    return IntegerFriendlyGroupNormalization


def _rewritable_group_norm(layer, keras) -> bool:
    if type(layer) is not keras.layers.GroupNormalization:
        return False
    shape = layer.input_shape
    return len(shape) == 4 and layer.axis in (-1, 3) and all(d is not None for d in shape[1:])


def integer_friendly(model):
    """(model, names of rewritten layers): a copy with int8-friendly layers, or the model itself."""
    _, keras = import_tf()
    targets = [layer.name for layer in model.layers if _rewritable_group_norm(layer, keras)]
    if not targets:
        return model, []
    replacement = _integer_group_normalization_class()

    def clone(layer):
        if layer.name in targets:
            return replacement.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    rewritten = keras.models.clone_model(model, clone_function=clone)
    rewritten.set_weights(model.get_weights())
    return rewritten, targets

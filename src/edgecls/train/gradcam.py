"""Grad-CAM (Selvaraju et al. 2017): where in the image the model looked for its answer.

Works on any registry model: the last layer with a spatial (4-D) output is found by walking
the layers backwards, so no layer names are hard-coded.
"""

from __future__ import annotations

import numpy as np

from edgecls.errors import EdgeclsError


def last_spatial_layer(model):
    """The last layer whose output is a feature map (batch, h, w, channels), h, w > 1 if any;
    None for a model without one (the input image itself does not count)."""
    candidates = [layer for layer in model.layers[1:] if len(getattr(layer.output, "shape", ())) == 4]
    if not candidates:
        return None
    spatial = [layer for layer in candidates if (layer.output.shape[1] or 0) > 1 and (layer.output.shape[2] or 0) > 1]
    return (spatial or candidates)[-1]


def gradcam_heatmaps(model, images: np.ndarray, class_indices: np.ndarray, layer=None) -> np.ndarray:
    """Heatmaps in 0..1 at the images' size, for uint8 `images` (N,h,w,3) and the classes to explain."""
    from edgecls.core.tf_env import import_tf
    from edgecls.edge_runtime.normalization import PIXEL_UNIT

    tf, keras = import_tf()
    layer = layer or last_spatial_layer(model)
    if layer is None:
        raise EdgeclsError(f"model {model.name} has no convolutional feature map for Grad-CAM")
    probe = keras.Model(model.inputs, [layer.output, model.output])
    x = tf.convert_to_tensor(PIXEL_UNIT.apply(images))  # the DESIGN.md model convention
    with tf.GradientTape() as tape:
        features, probabilities = probe(x, training=False)
        features = tf.cast(features, tf.float32)
        # log p(class): a smooth, unsaturated score even when the softmax is confident.
        chosen = tf.gather(tf.cast(probabilities, tf.float32), class_indices.astype(np.int32), batch_dims=1)
        score = tf.math.log(chosen + 1e-7)
    gradients = tape.gradient(score, features)
    if gradients is None:
        # A layer between the feature map and the output that TensorFlow cannot differentiate
        # (an integer cast, a custom layer): there is nothing to weight the channels with.
        raise EdgeclsError(f"model {model.name}: no gradient from the output to layer {layer.name} for Grad-CAM")
    channel_weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(features * channel_weights, axis=-1, keepdims=True))
    cam = tf.image.resize(cam, images.shape[1:3], method="bilinear")[..., 0].numpy()
    peak = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
    return np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0)

"""Keras pieces of a training recipe that tf_keras lacks: the one-cycle learning-rate schedule
and a label-smoothed cross-entropy on integer labels. Imports TensorFlow: import this module
inside functions only (as the trainer does).
"""

from __future__ import annotations

import math

from edgecls.core.tf_env import import_tf

tf, keras = import_tf()


@keras.utils.register_keras_serializable(package="edgecls")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """One-cycle learning rate (Smith & Topin 2017, as PyTorch's OneCycleLR with cosine annealing):
    linear from `peak / div_factor` up to `peak` over the first `warmup_steps`, then cosine down
    to `peak / div_factor / final_div_factor` (~0) at `total_steps`, and flat after that."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, name: str | None = None):  # fmt: skip
        super().__init__()
        self.peak, self.total_steps, self.warmup_steps = float(peak), int(total_steps), int(warmup_steps)
        self.div_factor, self.final_div_factor, self.name = float(div_factor), float(final_div_factor), name

    def __call__(self, step):
        with tf.name_scope(self.name or "OneCycle"):
            step = tf.cast(step, tf.float32)
            start = self.peak / self.div_factor
            end = start / self.final_div_factor
            warmup = float(max(self.warmup_steps, 1))
            rising = start + (self.peak - start) * tf.minimum(step / warmup, 1.0)
            decay_steps = float(max(self.total_steps - self.warmup_steps, 1))
            progress = tf.clip_by_value((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
            falling = end + 0.5 * (self.peak - end) * (1.0 + tf.cos(math.pi * progress))
            return tf.where(step < self.warmup_steps, rising, falling)

    def get_config(self) -> dict:
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "div_factor": self.div_factor, "final_div_factor": self.final_div_factor, "name": self.name}  # fmt: skip


@keras.utils.register_keras_serializable(package="edgecls")
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Categorical cross-entropy with label smoothing, on integer labels: the same value as
    `CategoricalCrossentropy(label_smoothing=e)` on one-hot labels (targets (1 - e) * one-hot +
    e / classes), so the pipeline, fit's `class_weight` and the metrics keep their integer labels."""

    def __init__(self, label_smoothing: float = 0.0, name: str = "smoothed_sparse_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        classes = tf.shape(y_pred)[-1]
        labels = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
        one_hot = tf.one_hot(labels, classes, dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(one_hot, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self) -> dict:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}

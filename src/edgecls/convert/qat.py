"""Quantization-aware fine-tuning with tfmot, for models tfmot can only partly wrap.

`quantize_model` refuses a whole model over one unsupported layer (GroupNormalization, LSTM,
a BatchNormalization after a Dense layer, custom layers). Instead each layer the default
8-bit registry supports is annotated, plus every BatchNormalization directly after a
convolution, so tfmot's Conv+BN folding patterns still match; whatever tfmot then still
rejects is left unannotated and retried. Unannotated layers stay float during fine-tuning
and get their int8 ranges from calibration data at conversion, like post-training int8.

A short fine-tune on top of a trained model also needs two things long QAT runs do not:
activation ranges calibrated before the first step (tfmot starts them at [-6, 6] and moves
them 0.1% a step) and BatchNormalization frozen (the exported model folds its moving
statistics). Then the epoch kept is the best on validation, "no fine-tuning" included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from edgecls.core.tf_env import import_tf
from edgecls.errors import EdgeclsError, first_line

_UNSUPPORTED_LAYER = re.compile(r"Layer (\S+?):<class '([^']+)'> is not supported")


class QatUnavailable(Exception):
    """tfmot cannot build a quantization-aware version of this model at all."""


@dataclass
class QatPlan:
    """Which layers fine-tune with fake quantization, and which are left to calibration."""

    wrapped: list[str] = field(default_factory=list)  # layer names
    left_float: list[str] = field(default_factory=list)  # layer names

    def describe_left_float(self, model) -> str:
        """"GroupNormalization 'conv1_gn', LSTM 'lstm'", with `model`'s (the original) classes."""
        return ", ".join(f"{type(model.get_layer(name)).__name__} '{name}'" for name in self.left_float)


def quantization_aware_model(model):
    """(QAT model, plan). Raises QatUnavailable when no layer can be wrapped."""
    _, keras = import_tf()
    import tensorflow_model_optimization as tfmot

    quantize = tfmot.quantization.keras
    registry = _default_registry()
    candidates = {layer.name for layer in model.layers if registry.supports(layer) or _bn_after_conv(layer, keras)}
    rejected: set[str] = set()
    while True:
        wrapped = candidates - rejected
        if not wrapped:
            raise QatUnavailable("tfmot can wrap none of its layers")
        try:
            # tfmot rebuilds the model from its config: it must know every layer class.
            with quantize.quantize_scope(_layer_classes(model)):
                annotated = _annotate(model, wrapped, keras, quantize)
                qat_model = quantize.quantize_apply(annotated)
            break
        except RuntimeError as exc:
            match = _UNSUPPORTED_LAYER.search(str(exc))
            if not match or match.group(1) in rejected:
                raise QatUnavailable(first_line(exc)) from None
            rejected.add(match.group(1))  # e.g. a BatchNormalization that no pattern folded
        except Exception as exc:  # nested or subclassed models, unclonable layers, tfmot bugs
            raise QatUnavailable(first_line(exc)) from None
    left_float = [
        layer.name for layer in model.layers if layer.name not in wrapped and not isinstance(layer, keras.layers.InputLayer)
    ]
    return qat_model, QatPlan(sorted(wrapped), left_float)


def freeze_batch_norm(qat_model) -> int:
    """Run every BatchNormalization in inference mode (moving statistics, fixed scale and
    offset) while fine-tuning; returns how many.

    The int8 file folds BN's moving statistics into the convolutions, so a short fine-tune
    should see those, not per-batch statistics: it then trains, and its fake quantization
    measures, exactly the function that is exported ("BN freezing", Krishnamoorthi 2018).
    """
    _, keras = import_tf()
    frozen = 0
    for layer in qat_model.layers:
        inner = getattr(layer, "layer", layer)  # QuantizeWrapper holds the real layer
        if isinstance(inner, keras.layers.BatchNormalization):
            inner.trainable = False  # tf_keras runs a non-trainable BN in inference mode
            frozen += 1
    return frozen


def calibrate_activation_ranges(qat_model, images, batch_size: int = 64, normalization=None) -> bool:
    """Start every activation range at what calibration images produce, not at tfmot's +-6.

    tfmot tracks activation ranges as moving averages (decay 0.999) starting from [-6, 6].
    Real QAT runs thousands of steps; a few fine-tuning epochs leave ReLU ranges near [-6, 6]
    (half the int8 levels unused) and clip logits beyond +-6, and the exported model is then
    worse than post-training int8. One training-mode pass per batch with the decay forced
    to 0 sets each range to exactly the batch's (with upstream ranges already set, as in the
    exported model); the union over batches is kept. BatchNorm statistics that the
    training-mode pass moved are put back. Returns False when tfmot's internals changed and
    the ranges were left alone. `normalization`: how pixels become the model's input
    (default: pixel / 255).
    """
    from edgecls.edge_runtime.normalization import PIXEL_UNIT

    tf, _ = import_tf()
    normalization = normalization or PIXEL_UNIT
    try:
        from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

        moving_average_quantize = quant_ops.MovingAvgQuantize
    except (ImportError, AttributeError):
        return False

    def instant_ranges(*args, **kwargs):
        kwargs["ema_decay"] = 0.0
        return moving_average_quantize(*args, **kwargs)

    ranges = [v for v in qat_model.variables if _is_range_variable(v)]
    others = [(v, v.numpy()) for v in qat_model.variables if not _is_range_variable(v)]
    low = {v.ref(): None for v in ranges}
    high = {v.ref(): None for v in ranges}
    quant_ops.MovingAvgQuantize = instant_ranges
    try:
        for start in range(0, len(images), batch_size):
            batch = tf.constant(normalization.apply(images[start : start + batch_size]))
            qat_model(batch, training=True)
            for v in ranges:
                value = v.numpy()
                if v.name.endswith("_min:0"):
                    low[v.ref()] = value if low[v.ref()] is None else np.minimum(low[v.ref()], value)
                else:
                    high[v.ref()] = value if high[v.ref()] is None else np.maximum(high[v.ref()], value)
    finally:
        quant_ops.MovingAvgQuantize = moving_average_quantize
        for variable, value in others:
            variable.assign(value)
    by_name = {v.name: v for v in ranges}
    for v in ranges:
        if not v.name.endswith("_min:0"):
            continue
        partner = by_name.get(v.name[: -len("_min:0")] + "_max:0")
        if partner is None:
            continue
        new_low, new_high = low[v.ref()], high[partner.ref()]
        # A range that is not finite, or collapsed to a point (an untrained model's vanishing
        # activations), would break fake quantization: keep tfmot's start for it instead.
        if not (np.all(np.isfinite(new_low)) and np.all(np.isfinite(new_high))) or np.any(new_high - new_low < 1e-6):
            continue
        v.assign(new_low)
        partner.assign(new_high)
    return True


def _is_range_variable(variable) -> bool:
    # tfmot names its quantizer ranges "<layer>/<what>_min" and "_max" (output, post_activation,
    # pre_activation, kernel, depthwise_kernel, quantize_layer).
    return variable.name.endswith(("_min:0", "_max:0"))


def fine_tune(qat_model, train, validation, *, epochs: int, learning_rate: float, class_weight=None, seed: int = 0,
              monitor: str = "val_accuracy", verbose: bool = False) -> dict:  # fmt: skip
    """Fine-tune in place on finite batches of (float image, label), one pass per epoch.

    Keeps the weights (and ranges) of the epoch best on validation by `monitor`, the metric the
    run itself was trained to (any of training's: val_accuracy, val_balanced_accuracy, val_auc,
    val_acc_balacc_mean, val_loss),
    measured with fake quantization, so close to what int8 will do. Epoch 0, the model before
    fine-tuning, is a candidate too, so fine-tuning can only help on validation. Returns
    {"epochs": [per-epoch logs, with `monitor`], "best_epoch": n, "monitor": m, "start": v, "best": v}.
    """
    tf, keras = import_tf()
    keras.utils.set_random_seed(seed)
    qat_model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    try:
        score = _validation_score(validation, monitor) if validation is not None else None
        start = score(qat_model) if score is not None else None
        keep_best = _keep_best_epoch_callback(keras, score, monitor, start, qat_model.get_weights())
        history = qat_model.fit(
            train,
            epochs=epochs,
            class_weight=class_weight,
            callbacks=[keras.callbacks.TerminateOnNaN(), keep_best],
            verbose=2 if verbose else 0,
        )
    except tf.errors.OpError as exc:  # an unreadable image in the pipeline, out of memory...
        raise EdgeclsError(f"QAT fine-tuning failed ({first_line(exc)})") from None
    per_epoch = [{key: float(values[i]) for key, values in history.history.items()} for i in range(len(history.epoch))]
    return {"epochs": per_epoch, "best_epoch": keep_best.best_epoch, "monitor": monitor, "start": start, "best": keep_best.best}


def _validation_score(validation, monitor: str):
    """model -> the validation value of `monitor` as training measures it, higher is better
    (val_loss comes negated)."""
    from edgecls.core.metrics import validation_logs

    y_true = np.concatenate([np.asarray(labels) for _, labels in validation.as_numpy_iterator()])
    sign = -1.0 if monitor == "val_loss" else 1.0

    def score(model) -> float:
        probabilities = model.predict(validation, verbose=0)
        if not np.all(np.isfinite(probabilities)):
            return float("nan")
        return sign * validation_logs(y_true, probabilities, [str(i) for i in range(probabilities.shape[1])])[monitor]

    return score


def _keep_best_epoch_callback(keras, score, monitor: str, start: float | None, start_weights):
    class KeepBestEpoch(keras.callbacks.Callback):
        """Restore the weights (and learned quantizer ranges) of the best validation epoch."""

        def __init__(self):
            super().__init__()
            self.best = start if start is not None and np.isfinite(start) else -np.inf
            self.best_epoch = 0
            self.best_weights = start_weights

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            # Without validation data: the last epoch whose loss stayed finite.
            value = score(self.model) if score is not None else 0.0
            logs[monitor] = value
            # >=: on a tie the later epoch has seen more data and better-settled ranges.
            if np.isfinite(logs.get("loss", 0.0)) and np.isfinite(value) and value >= self.best:
                self.best, self.best_epoch = value, epoch + 1
                self.best_weights = self.model.get_weights()

        def on_train_end(self, logs=None):
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return KeepBestEpoch()


def _annotate(model, wrapped: set[str], keras, quantize):
    def clone(layer):
        copy = layer.__class__.from_config(layer.get_config())
        return quantize.quantize_annotate_layer(copy) if layer.name in wrapped else copy

    annotated = keras.models.clone_model(model, clone_function=clone)
    annotated.set_weights(model.get_weights())
    return annotated


def _layer_classes(model) -> dict:
    return {type(layer).__name__: type(layer) for layer in model.layers}


def _bn_after_conv(layer, keras) -> bool:
    # quantize_model folds Conv+BN before checking support, so these BNs must be annotated too.
    if not isinstance(layer, keras.layers.BatchNormalization) or len(layer._inbound_nodes) != 1:
        return False
    inbound = layer._inbound_nodes[0].inbound_layers
    inbound = inbound if isinstance(inbound, (list, tuple)) else [inbound]
    return len(inbound) == 1 and isinstance(inbound[0], (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))


def _default_registry():
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry,
    )

    return default_8bit_quantize_registry.Default8BitQuantizeRegistry()

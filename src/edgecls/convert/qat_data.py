"""QAT fine-tuning data: the training run's own tf.data pipeline, augmentation and imbalance
handling, so fine-tuning continues the training it starts from instead of shifting it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgecls.convert.samples import ConversionData
from edgecls.edge_runtime.normalization import PIXEL_UNIT, InputNormalization


@dataclass
class QatData:
    train: Any  # tf.data batches of (float32 model input, label): data.normalization of the pixels
    validation: Any | None
    class_weight: dict[int, float] | None
    train_images: int
    validation_images: int


def qat_data(data: ConversionData, train_options, batch_size: int, seed: int) -> QatData:
    """Batches from the train and val splits, through `edgecls.core.pipeline`.

    `train_options` (a TrainOptions, from the run's config or the defaults) says whether the
    run augmented and how it handled class imbalance; fine-tuning does the same.
    """
    from edgecls.core import pipeline
    from edgecls.core.tf_env import import_tf

    tf, _ = import_tf()
    train_items, val_items = data.items("train"), data.items("val")
    train_labels = data.model_labels(train_items)
    imbalance = getattr(train_options, "imbalance", "none")
    train, _steps = pipeline.training_dataset(
        tf,
        pipeline.image_sources(data.dataset, train_items["key"], data.image_size),
        train_labels,
        data.image_size,
        batch_size=batch_size,
        num_classes=len(data.labels),
        seed=seed,
        augment=getattr(train_options, "augment", "standard"),  # none, standard or strong (or an old bool)
        balanced=imbalance == "balanced-sampling",
    )
    validation = None
    if len(val_items):
        validation = pipeline.evaluation_dataset(
            tf,
            pipeline.image_sources(data.dataset, val_items["key"], data.image_size),
            data.model_labels(val_items),
            data.image_size,
            batch_size,
        )
    if data.normalization != PIXEL_UNIT:
        # The pipeline gives pixel / 255 (augmenting in 0..1); the model takes another range.
        train = train.map(_renormalize(tf, data.normalization))
        validation = validation.map(_renormalize(tf, data.normalization)) if validation is not None else None
    class_weight = None
    if imbalance == "class-weights":
        from edgecls.core.pipeline import class_weights

        class_weight = class_weights(train_labels, len(data.labels), getattr(train_options, "class_weight_power", 1.0))
    return QatData(train, validation, class_weight, len(train_items), len(val_items))


def _renormalize(tf, normalization: InputNormalization):
    mean = tf.constant(normalization.mean, tf.float32)
    std = tf.constant(normalization.std, tf.float32)

    def convert(images, labels):
        return (images * 255.0 - mean) / std, labels

    return convert

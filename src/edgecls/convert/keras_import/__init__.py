"""Bring your own model: the Keras models people have, made ready for `edgecls convert`.

    imported = load_user_model("m.keras", input_range=None)
    imported.model          # a tf_keras model (QAT works), or a float function (PTQ only)
    imported.normalization  # what the converted files take: (pixel - mean) / std

Accepted: a Keras 3 `.keras` (TensorFlow's default `tf.keras` since 2.16), a `tf_keras` /
Keras 2 `.keras`, a legacy HDF5 `.h5` from either, and a TensorFlow SavedModel folder
(`tf_keras` `model.save(dir)`, or Keras 3 `model.export(dir)`).

tensorflow-model-optimization works on `tf_keras` models only, so a Keras 3 model is rebuilt
layer by layer in `tf_keras` from its own config, its weights copied, and the rebuilt model's
outputs checked against the original's on sample images. A layer with no `tf_keras`
counterpart is named, and the original Keras 3 model is converted as it is, with calibrated
post-training int8 in place of QAT. A SavedModel without Keras metadata is a graph only: it
converts as a float function, also without QAT.

Input normalisation: a Rescaling or Normalization layer at the model's input means the model
itself takes raw pixels. Such leading layers are folded into the recorded normalisation (and
dropped from the model), so the int8 file's input quantization carries them and tfmot, which
cannot wrap them, never sees them. Otherwise `--input-range` says what the model takes, or
edgecls assumes pixel / 255 and says so.

Loading stays safe (`edgecls.core.model_safety`, docs/safety.md): every config and every
SavedModel op is checked against an allow-list before anything is deserialised, and Keras
loads `.keras` files in safe mode too. Custom layers load only from code the user passes
(`custom_objects`).
"""

from __future__ import annotations

from edgecls.convert.keras_import.loading import load_user_model
from edgecls.convert.keras_import.model import (
    MAX_SAVED_MODEL_BYTES,
    MODEL_CLASSES,
    PREPROCESSING_LAYERS,
    VERIFY_IMAGES,
    VERIFY_TOLERANCE,
    FloatFunction,
    ImportedModel,
    NoCounterpart,
)
from edgecls.convert.keras_import.normalization import import_keras_model
from edgecls.convert.keras_import.rebuild import rebuild_in_tf_keras

__all__ = [
    "MAX_SAVED_MODEL_BYTES", "MODEL_CLASSES", "PREPROCESSING_LAYERS", "VERIFY_IMAGES", "VERIFY_TOLERANCE", "FloatFunction",
    "ImportedModel", "NoCounterpart", "import_keras_model", "load_user_model", "rebuild_in_tf_keras",
]  # fmt: skip

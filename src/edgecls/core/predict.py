"""Probabilities of Keras (inference mode) and TFLite models alike on a dataset's images.

Both kinds of model see the same uint8 images from `Dataset.load_images` (the shared
preprocessing); a Keras model gets its input normalisation (pixel/255 for edgecls's own) and
runs with training=False, a TFLite model gets its own input mapping from `TFLiteClassifier`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from edgecls.errors import EdgeclsError

Predictor = Callable[[np.ndarray], np.ndarray]  # uint8 (N,h,w,3) -> probabilities (N,classes)


def keras_predictor(model, batch_size: int = 64, normalization=None) -> Predictor:
    """`normalization` (an edge_runtime InputNormalization): how pixels become the model's
    input; default pixel / 255, the convention of edgecls's own models."""
    from edgecls.edge_runtime.normalization import PIXEL_UNIT

    normalization = normalization or PIXEL_UNIT

    def predict(images: np.ndarray) -> np.ndarray:
        # predict() runs layers in inference mode: BatchNorm moving statistics, no dropout.
        x = normalization.apply(images)
        return np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float32)

    return predict


def tflite_predictor(classifier, tta: bool = False) -> Predictor:
    """The device's own path; `tta` averages over the four flips (TFLiteClassifier.predict)."""
    buffer = classifier.new_input_buffer()

    def predict(images: np.ndarray) -> np.ndarray:
        if tta:
            return np.stack([classifier.predict(image, buffer=buffer, tta=True).probabilities for image in images])
        return np.stack([classifier.scores(classifier.to_input(image, buffer)).copy() for image in images])

    return predict


def predict_dataset(predict: Predictor, dataset, keys: Sequence[str], size: tuple[int, int], chunk: int = 256,
                    progress: Callable[[int], None] | None = None) -> np.ndarray:  # fmt: skip
    """Probabilities for `keys`, loading images a chunk at a time (memory stays flat on big sets)."""
    keys = list(keys)
    outputs = []
    for start in range(0, len(keys), chunk):
        images = dataset.load_images(keys[start : start + chunk], size)
        outputs.append(predict(images))
        if progress:
            progress(len(images))
    if not outputs:
        raise EdgeclsError("nothing to evaluate: the chosen split has no images")
    return np.concatenate(outputs).astype(np.float32, copy=False)


def label_indices(dataset_labels: Sequence[str], model_labels: Sequence[str], y: np.ndarray) -> np.ndarray:
    """Map a dataset's label indices onto a model's label order, by name."""
    unknown = sorted(set(dataset_labels) - set(model_labels))
    if unknown:
        raise EdgeclsError(
            f"the dataset has classes the model does not know: {', '.join(unknown[:8])} "
            f"(model classes: {', '.join(model_labels)})"
        )
    lookup = np.array([list(model_labels).index(label) for label in dataset_labels])
    return lookup[np.asarray(y, dtype=np.int64)]

"""Run a .tflite file through MediaPipe Tasks' ImageClassifier (the C++ task Android, iOS, web
and Google's Raspberry Pi examples use) and compare it with edgecls on the same pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest


def require_mediapipe():
    """MediaPipe Tasks' Python modules, or a visible skip where no wheel installs."""
    try:
        import mediapipe as mp
        from mediapipe.tasks.python.core import base_options
        from mediapipe.tasks.python.vision import image_classifier
    except ImportError as exc:
        pytest.skip(f"mediapipe is not installed ({exc}); docs/getting-started.md (Install) says how to install it")
    return mp, base_options, image_classifier


@dataclass
class Agreement:
    images: int
    same_top1: int  # MediaPipe's top label is edgecls's
    ties: int  # not the same label, but both labels have the same top score (quantized outputs tie)
    label_names: set

    @property
    def rate(self) -> float:
        return (self.same_top1 + self.ties) / self.images


def compare_with_mediapipe(model_path, images: np.ndarray) -> Agreement:
    """Top-1 of MediaPipe Tasks and of edgecls's TFLiteClassifier on `images` (uint8, already at
    the model's input size, so both runtimes see the same pixels and no resizer differs)."""
    from edgecls.edge_runtime.classifier import TFLiteClassifier

    mp, base_options, image_classifier = require_mediapipe()
    options = image_classifier.ImageClassifierOptions(
        base_options=base_options.BaseOptions(model_asset_path=str(model_path)), max_results=3
    )
    ours = TFLiteClassifier(model_path, 1)
    same = ties = 0
    names = set()
    classifier = image_classifier.ImageClassifier.create_from_options(options)
    try:
        for image in images:
            result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)))
            top = result.classifications[0].categories[0]
            names.add(top.category_name)
            prediction = ours.predict(image)
            if top.category_name == prediction.label:
                same += 1
            elif top.category_name in ours.labels:
                scores = prediction.probabilities
                ties += bool(np.isclose(scores[ours.labels.index(top.category_name)], scores.max(), atol=1e-6))
    finally:
        classifier.close()
    return Agreement(len(images), same, ties, names)

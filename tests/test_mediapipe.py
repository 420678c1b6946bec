"""The built-in models load in MediaPipe Tasks with their label names and classify real images
as edgecls does. (Every file `edgecls convert` writes is checked the same way in test_convert.)"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_dataset
from mediapipe_tasks import compare_with_mediapipe, require_mediapipe

from edgecls.edge_runtime import load_image
from edgecls.edge_runtime.builtin import builtin_models

SHIPPED = {"ham10000": "ham10000", "ham10000-small": "ham10000", "all-blood": "blood", "all-blood-small": "blood"}
IMAGES = 400


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_builtin_model_runs_in_mediapipe_tasks_like_in_edgecls(name):
    require_mediapipe()
    if name not in builtin_models():
        pytest.skip(f"built-in model {name} is not in this checkout")
    path = builtin_models()[name]
    data = shared_dataset(SHIPPED[name])
    files = sorted(data.rglob("*.jpg"))
    files = [files[i] for i in np.linspace(0, len(files) - 1, IMAGES).astype(int)]  # every class folder
    images = np.stack([load_image(f, (94, 94)) for f in files])
    result = compare_with_mediapipe(path, images)
    from edgecls.edge_runtime.classifier import TFLiteClassifier

    labels = TFLiteClassifier(path).labels
    assert result.label_names <= set(labels) and len(result.label_names) >= 2, result.label_names
    assert result.rate >= 0.995, f"{name}: MediaPipe agrees on {result.same_top1} + {result.ties} ties of {result.images}"

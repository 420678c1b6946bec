"""The device half of edgecls: numpy, Pillow and a TFLite interpreter, never TensorFlow.

Everything here must import in a fraction of a second on a Raspberry Pi; a test runs
`import edgecls.edge_runtime` in a subprocess and fails if TensorFlow or Keras was loaded.
"""

from edgecls.edge_runtime.classifier import Prediction, TFLiteClassifier
from edgecls.edge_runtime.metadata import ModelMetadata, read_metadata, write_metadata
from edgecls.edge_runtime.preprocess import ImageError, load_image, prepare_image

__all__ = [
    "ImageError",
    "ModelMetadata",
    "Prediction",
    "TFLiteClassifier",
    "load_image",
    "prepare_image",
    "read_metadata",
    "write_metadata",
]

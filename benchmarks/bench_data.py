"""Models and images for the benchmarks, built once per session (TensorFlow is used here only).

Also runnable by hand, to get the same files for `edgecls bench`:

    python benchmarks/bench_data.py out/bench-data
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from PIL import Image

from edgecls.edge_runtime.metadata import ModelMetadata, write_metadata

INPUT_SIZE = (94, 94)
LABELS = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]  # HAM10000's seven classes
JPEG_SIZE = (600, 450)  # (width, height), the HAM10000 dermatoscope frame
JPEG_QUALITY = 90
JPEG_COUNT = 1000  # the end-to-end target is stated for 1,000 images ...
JPEG_UNIQUE = 200  # ... of which this many distinct pictures, then copies


def edge_cnn():
    """The realistic model: the project's `edge-cnn` when the registry exists, else a stand-in."""
    from edgecls.train.tf_env import import_tf

    _, keras = import_tf()
    keras.utils.set_random_seed(0)
    try:
        from edgecls.train.models import create_model
    except ImportError:
        create_model = None
    if create_model is not None:
        return create_model("edge-cnn", input_shape=(*INPUT_SIZE, 3), num_classes=len(LABELS))
    # TODO(issue 5): drop this stand-in once edgecls.train.models (edge-cnn) has landed.
    return _standin_edge_cnn(keras)


def _standin_edge_cnn(keras):
    """A MobileNet-style depthwise-separable CNN, 94x94x3 -> 7 classes, ~0.2 M parameters."""
    layers = keras.layers

    def conv_bn(x, filters, kernel, stride):
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU(6.0)(x)

    def separable(x, filters, stride):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU(6.0)(x)
        return conv_bn(x, filters, 1, 1)

    inputs = keras.Input((*INPUT_SIZE, 3))
    x = conv_bn(inputs, 32, 3, 2)
    for filters, stride in ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)):
        x = separable(x, filters, stride)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(len(LABELS), activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="edge_cnn_standin")


def convert(model, mode: str, samples: int = 32, seed: int = 0) -> bytes:
    """float32, or full int8 (int8 in and out) calibrated on random images (pixel / 255)."""
    from edgecls.train.tf_env import import_tf

    tf, _ = import_tf()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == "int8":
        rng = np.random.default_rng(seed)
        data = rng.integers(0, 256, (samples, *INPUT_SIZE, 3)).astype(np.float32) / 255.0
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x[None]] for x in data)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    raw = converter.convert()
    meta = ModelMetadata(
        labels=list(LABELS),
        input_size=INPUT_SIZE,
        name=getattr(model, "name", "edge-cnn"),
        dataset="random weights (benchmark)",
        quantization=mode,
        provenance={"made_by": "benchmarks/bench_data.py"},
    )
    return write_metadata(raw, meta)


def build_models(folder: Path) -> dict[str, Path]:
    """Write model_float32.tflite, model_int8.tflite and model.keras into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    model = edge_cnn()
    paths = {"keras": folder / "model.keras"}
    model.save(paths["keras"])
    for mode in ("float32", "int8"):
        paths[mode] = folder / f"model_{mode}.tflite"
        paths[mode].write_bytes(convert(model, mode))
    return paths


def synthetic_jpeg(rng: np.random.Generator, size=JPEG_SIZE) -> Image.Image:
    """A smooth, lesion-like picture with skin-like texture: what a dermatoscope JPEG looks like.

    A smooth colour field, a darker blob, correlated texture (sd 8) and mild pixel noise (sd 3):
    ~65 KB at quality 90. Per-pixel noise alone would make bigger files that decode slower;
    the downscaled HAM10000 photos upscaled back to 600x450 are smoother still (~23 KB).
    """
    width, height = size
    base = rng.integers(60, 230, (height // 50 + 2, width // 50 + 2, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(base).resize((width, height), Image.Resampling.BICUBIC), np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
    blob = np.exp(-(((yy - cy) / (0.25 * height)) ** 2 + ((xx - cx) / (0.25 * width)) ** 2))
    coarse = rng.normal(0, 8, (height // 4, width // 4)).astype(np.float32)
    texture = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))
    pixels = smooth - (70 * blob)[..., None] + texture[..., None] + rng.normal(0, 3, (height, width, 1))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_jpegs(folder: Path, count: int = JPEG_COUNT, unique: int = JPEG_UNIQUE, seed: int = 0) -> list[Path]:
    """`count` 600x450 JPEGs (quality 90) in `folder`: `unique` distinct pictures, then copies."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"img_{i:05d}.jpg"
        if i < unique:
            synthetic_jpeg(rng).save(path, quality=JPEG_QUALITY)
        else:
            shutil.copyfile(paths[i % unique], path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "out/bench-data")
    for name, path in build_models(out).items():
        print(f"{name:8} {path} ({path.stat().st_size / 1024:.1f} KB)" if path.is_file() else f"{name:8} {path}")
    make_jpegs(out / "jpegs", int(sys.argv[2]) if len(sys.argv) > 2 else JPEG_COUNT)
    print(f"jpegs    {out / 'jpegs'}")

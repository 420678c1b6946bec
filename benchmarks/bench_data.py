"""Models and images for the benchmarks, built once per session (TensorFlow is used here only).

Also runnable by hand, to get the same files for `edgecls bench`:

    python benchmarks/bench_data.py out/bench-data

Two kinds of 600x450 JPEG: light ones (~65 KB, smooth, quality 90: what a phone's or a
downscaler's export looks like) and heavy ones (200-300 KB, quality 100 with sensor-like noise:
what a dermatoscope export looks like, checked against the real HAM10000 originals in
../shared/data/ham10000_600x450 when they are there).
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

from edgecls.edge_runtime.metadata import ModelMetadata, builtin_code, pack_model, tflite_schema, write_metadata

INPUT_SIZE = (94, 94)
LABELS = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]  # HAM10000's seven classes
JPEG_SIZE = (600, 450)  # (width, height), the HAM10000 dermatoscope frame
JPEG_QUALITY = 90
JPEG_COUNT = 1000  # the end-to-end target is stated for 1,000 images ...
JPEG_UNIQUE = 200  # ... of which this many distinct pictures, then copies
HEAVY_QUALITY = 100  # the HAM10000 originals' quality (every quantization step 1), 4:2:0
HEAVY_UNIQUE = 40  # distinct heavy pictures, as many as real originals beside the repository
REAL_HEAVY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ham10000_600x450"


def edge_cnn():
    """The realistic model: the project's `edge-cnn` (random weights, seeded)."""
    from edgecls.core.tf_env import import_tf
    from edgecls.train.models import create_model

    _, keras = import_tf()
    keras.utils.set_random_seed(0)
    return create_model("edge-cnn", input_shape=(*INPUT_SIZE, 3), num_classes=len(LABELS))


def convert(model, mode: str, samples: int = 32, seed: int = 0) -> bytes:
    """float32, or full int8 (int8 in and out) calibrated on random images (pixel / 255);
    mode "qat": the model wrapped for quantization-aware training by tfmot (never trained: the
    speed of a QAT file does not depend on its weights), then converted the same way."""
    from edgecls.core.tf_env import import_tf

    tf, _ = import_tf()
    if mode == "qat":
        import tensorflow_model_optimization as tfmot

        model = tfmot.quantization.keras.quantize_model(model)
        # One training-mode pass sets tfmot's activation ranges from data, as a fine-tune would.
        model(np.random.default_rng(seed).integers(0, 256, (8, *INPUT_SIZE, 3)).astype(np.float32) / 255.0, training=True)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode in ("int8", "qat"):
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
    """Write model_float32.tflite, model_int8.tflite (post-training), model_qat.tflite and
    model.keras into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    model = edge_cnn()
    paths = {"keras": folder / "model.keras"}
    model.save(paths["keras"])
    for mode in ("float32", "int8", "qat"):
        paths[mode] = folder / f"model_{mode}.tflite"
        paths[mode].write_bytes(convert(model, mode))
    return paths


def float_twin(model_bytes: bytes) -> bytes:
    """The float32 model a full-integer .tflite stands for: every quantized constant dequantized
    ((q - zero_point) * scale, per channel where it is), every tensor float32, QUANTIZE and
    DEQUANTIZE ops dropped (identities in float). Same ops, same weights to int8 precision, same
    metadata: the float32 counterpart of a built-in model, whose float file is not shipped."""
    schema = tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    integer = {schema.TensorType.INT8: np.int8, schema.TensorType.UINT8: np.uint8, schema.TensorType.INT32: np.int32}
    codes = [builtin_code(c) for c in model.operatorCodes]
    identities = {schema.BuiltinOperator.QUANTIZE, schema.BuiltinOperator.DEQUANTIZE}
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            q = tensor.quantization
            if tensor.type not in integer or q is None or q.scale is None or not len(q.scale):
                continue
            buffer = model.buffers[tensor.buffer]
            if buffer.data is not None and len(buffer.data):
                raw = np.frombuffer(bytes(bytearray(buffer.data)), integer[tensor.type]).reshape(tensor.shape).astype(np.float64)
                shape = [1] * raw.ndim
                if len(q.scale) > 1:
                    shape[q.quantizedDimension] = -1
                scale = np.asarray(q.scale, np.float64).reshape(shape)
                zero = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0], np.float64).reshape(shape if len(q.scale) > 1 else [1] * raw.ndim)
                buffer.data = np.frombuffer(((raw - zero) * scale).astype("<f4").tobytes(), np.uint8)
            tensor.type = schema.TensorType.FLOAT32
            tensor.quantization = None
        alias: dict[int, int] = {}
        kept = []
        for op in graph.operators:
            if codes[op.opcodeIndex] in identities:
                alias[int(op.outputs[0])] = int(op.inputs[0])
            else:
                kept.append(op)

        def resolve(index: int) -> int:
            while index in alias:
                index = alias[index]
            return index

        for op in kept:
            op.inputs = [resolve(int(i)) if i >= 0 else int(i) for i in op.inputs]
        graph.operators = kept
        for index in graph.outputs:  # an output keeps its name (the metadata names the logits output)
            graph.tensors[resolve(int(index))].name = graph.tensors[int(index)].name
        graph.outputs = [resolve(int(i)) for i in graph.outputs]
    for signature in model.signatureDefs or []:
        for entry in signature.outputs or []:
            entry.tensorIndex = resolve(int(entry.tensorIndex))
    return pack_model(model, len(model_bytes) * 4)  # float weights are 4x the int8 ones


def synthetic_jpeg(rng: np.random.Generator, size=JPEG_SIZE) -> Image.Image:
    """A smooth, lesion-like picture with skin-like texture: what a dermatoscope JPEG looks like.

    A smooth colour field, a darker blob, correlated texture (sd 8) and mild pixel noise (sd 3):
    ~65 KB at quality 90. Per-pixel noise alone would make bigger files that decode slower;
    the downscaled HAM10000 photos upscaled back to 600x450 are smoother still (~23 KB).
    """
    width, height = size
    scene = _lesion_scene(rng, size, darkest=60)
    coarse = rng.normal(0, 8, (height // 4, width // 4)).astype(np.float32)
    texture = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))
    pixels = scene + texture[..., None] + rng.normal(0, 3, (height, width, 1))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_jpegs(folder: Path, count: int = JPEG_COUNT, unique: int = JPEG_UNIQUE, seed: int = 0, size=JPEG_SIZE) -> list[Path]:
    """`count` JPEGs (600x450, quality 90) in `folder`: `unique` distinct pictures, then copies."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"img_{i:05d}.jpg"
        if i < unique:
            synthetic_jpeg(rng, size).save(path, quality=JPEG_QUALITY)
        else:
            shutil.copyfile(paths[i % unique], path)
        paths.append(path)
    return paths


def _lesion_scene(rng: np.random.Generator, size, darkest: int) -> np.ndarray:
    """The scene both synthetic photo sets share: a smooth colour field (channel values from
    `darkest` to 230) with a darker round blob somewhere near the middle; float32 H x W x 3."""
    width, height = size
    base = rng.integers(darkest, 230, (height // 50 + 2, width // 50 + 2, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(base).resize((width, height), Image.Resampling.BICUBIC), np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
    blob = np.exp(-(((yy - cy) / (0.25 * height)) ** 2 + ((xx - cx) / (0.25 * width)) ** 2))
    return smooth - (70 * blob)[..., None]


def heavy_jpeg(rng: np.random.Generator, size=JPEG_SIZE) -> Image.Image:
    """A dermatoscope-like picture with the fine texture and sensor noise of a real export: saved
    at quality 100 it is 270-300 KB, where the same scene without noise is ~25 KB."""
    width, height = size
    scene = _lesion_scene(rng, size, darkest=90)
    coarse = rng.normal(0, 16, (height // 3, width // 3, 3)).astype(np.float32)
    texture = np.asarray(Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8)).resize((width, height), Image.Resampling.BICUBIC), np.float32)
    pixels = scene + (texture - 128) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_heavy_jpegs(folder: Path, unique: int = HEAVY_UNIQUE, seed: int = 1) -> list[Path]:
    """`unique` distinct heavy 600x450 JPEGs (quality 100, 4:2:0 like the originals)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(unique):
        path = folder / f"heavy_{i:03d}.jpg"
        heavy_jpeg(rng).save(path, quality=HEAVY_QUALITY, subsampling=2)
        paths.append(path)
    return paths


def real_heavy_jpegs() -> list[Path]:
    """The real HAM10000 600x450 originals beside the repository (empty where they are absent)."""
    return sorted(REAL_HEAVY.glob("*.jpg")) if REAL_HEAVY.is_dir() else []


def link_folder(folder: Path, sources: list[Path], count: int) -> Path:
    """A folder of `count` image files that cycle over `sources` (symbolic links, copies where
    links are refused): 40 originals become a 1,000-image folder without copying any image
    into the repository."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        link = folder / f"img_{i:05d}{sources[i % len(sources)].suffix}"
        try:
            link.symlink_to(sources[i % len(sources)].resolve())
        except OSError:
            shutil.copyfile(sources[i % len(sources)], link)
    return folder


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "out/bench-data")
    for name, path in build_models(out).items():
        print(f"{name:8} {path} ({path.stat().st_size / 1024:.1f} KB)" if path.is_file() else f"{name:8} {path}")
    make_jpegs(out / "jpegs", int(sys.argv[2]) if len(sys.argv) > 2 else JPEG_COUNT)
    print(f"jpegs    {out / 'jpegs'}")

"""The device runtime for the Python API: `Classifier`. numpy, Pillow and LiteRT; never TensorFlow.

    clf = edgecls.Classifier("ham10000")              # a built-in model, or any .tflite file
    clf.labels
    clf.classify("lesion.jpg")                        # -> Prediction(label, probability, top_k, ...)
    clf.classify(pil_image); clf.classify(array_600x450)   # any size: resized as the device does
    clf.classify(["a.jpg", "b.jpg", array])           # -> [Prediction, ...], in order
    clf.classify_files(["photos/"])                   # -> [ImageResult(path, prediction, error), ...]
    clf.benchmark(images="photos/")                   # latency, images/s, memory (a dict)

Every image goes through `edgecls.edge_runtime.preprocess` (Pillow decode with JPEG draft
scaling, EXIF orientation, any mode to RGB, bilinear resize to the model's input): the pixels
the model was trained, converted and measured on.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from edgecls.edge_runtime.builtin import builtin_models
from edgecls.edge_runtime.classifier import Prediction, TFLiteClassifier, default_threads
from edgecls.errors import EdgeclsError, first_line

__all__ = ["Classifier", "ImageStream", "Prediction", "builtin_models"]


class Classifier:
    """An image classifier in one `.tflite` file, run as `edgecls classify` runs it.

    `model`: a `.tflite` path, the name of a built-in model (`"ham10000"`, `"ham10000-small"`,
    `"all-blood"`, `"all-blood-small"`; `edgecls.builtin_models()` lists them), or the file's
    bytes. Labels, input size and normalisation come from the file's metadata (edgecls's
    own, or the standard TFLite Model Metadata that MediaPipe Model Maker writes). `threads`:
    interpreter threads (default: min(4, cores)). `allow_control_flow`: run a file that uses
    WHILE, IF or CALL_ONCE (refused by default: see docs/safety-device.md); its invokes are
    bounded in time only under `edgecls.edge_runtime.watchdog.bound_invokes`.
    """

    def __init__(self, model: str | os.PathLike | bytes = "ham10000", threads: int | None = None, *,
                 allow_control_flow: bool = False):  # fmt: skip
        if isinstance(model, (bytes, bytearray, memoryview)):
            self.runtime = TFLiteClassifier(bytes(model), num_threads=threads, allow_control_flow=allow_control_flow)
        elif isinstance(model, (str, os.PathLike)):
            from edgecls.edge_runtime.builtin import resolve_model

            self.runtime = TFLiteClassifier(resolve_model(os.fspath(model)), num_threads=threads, allow_control_flow=allow_control_flow)
        else:
            raise EdgeclsError(f"Classifier takes a .tflite path, a built-in model name or the file's bytes, not a {type(model).__name__}")
        self.threads = threads

    # -- the model ---------------------------------------------------------------------------
    @property
    def path(self) -> Path | None:
        """The model file (None for a model given as bytes)."""
        return self.runtime.path

    @property
    def labels(self) -> list[str]:
        """Class names, in the model's output order."""
        return list(self.runtime.labels)

    @property
    def input_size(self) -> tuple[int, int]:
        """The model's input (height, width); images of any size are resized to it."""
        return tuple(self.runtime.input_size)  # type: ignore[return-value]

    @property
    def metadata(self):
        """The file's `ModelMetadata`: labels, normalisation, quantization, provenance, metrics."""
        return self.runtime.metadata

    def describe(self) -> dict[str, Any]:
        """Tensors, types, quantization, metadata and file size: what `edgecls info` shows."""
        return self.runtime.describe()

    def __repr__(self) -> str:
        height, width = self.input_size
        where = os.fspath(self.path) if self.path else "<bytes>"
        kind = self.metadata.quantization or np.dtype(self.runtime.input_details["dtype"]).name
        return f"Classifier({where!r}: {len(self.labels)} classes, {height}x{width}, {kind})"

    # -- classifying -------------------------------------------------------------------------
    def classify(self, images, top_k: int = 3, *, tta: bool = False, min_confidence: float = 0.0) -> Prediction | list[Prediction]:
        """Classify one image, or a list of them (then a list of `Prediction`, in order).

        An image is a file path, a PIL image, or an array (H x W, or H x W x 1/3/4; uint8, or
        float in 0..1) of any size: it is oriented, converted to the model's colour mode and
        resized with the same preprocessing as on the device. A 4-D array is a batch.
        `top_k`: labels reported per image. `tta`: average over the image and its flips (4
        invokes). `min_confidence`: below this top probability the label is "uncertain".

        A `Prediction` has `label`, `probability`, `top_k` [(label, probability), ...], all
        `probabilities` (in `labels` order), `latency_ms`, and the file's class groups
        (`groups`, e.g. {"malignant": 0.31}) and operating-point `flag` when it has them.
        An image that cannot be read raises `ImageError` (an `EdgeclsError`).
        """
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        if isinstance(images, (list, tuple)):
            return self._classify_many(images, top_k, tta, min_confidence)
        return self._predict(self._pixels(images), top_k, tta, min_confidence)

    def classify_files(self, inputs: str | os.PathLike | Sequence[str | os.PathLike], top_k: int = 3, *, tta: bool = False,
                       min_confidence: float = 0.0, workers: int | None = None, stream: bool = False):  # fmt: skip
        """Classify image files and folders (walked recursively) as `edgecls classify` does:
        decoded in `workers` threads (this one among them, between batches of the model).

        Returns a list of `ImageResult` (`path`, `prediction`, `error`; `to_record()` gives the
        CLI's JSON record), one per image in path order; an unreadable image gets `error` set
        instead of stopping the run. `stream=True` returns an `ImageStream` instead: an iterator
        of the same results, made as they are consumed (for folders too large to hold every
        result in memory), whose `len()` is the number of images found. Inputs that do not
        exist, or folders with no images, raise `EdgeclsError` before anything is classified.
        """
        from edgecls.edge_runtime.batch import PredictionOptions, classify_paths, collect_images

        options = PredictionOptions(top_k, tta, min_confidence)
        if isinstance(inputs, (str, os.PathLike)):
            inputs = [inputs]
        paths = collect_images(inputs)
        results = classify_paths(self.runtime, paths, options, workers=workers, threads=self.threads)
        return ImageStream(results, len(paths)) if stream else list(results)

    def _classify_many(self, images: Sequence, top_k: int, tta: bool, min_confidence: float) -> list[Prediction]:
        predictions: list[Prediction | None] = [None] * len(images)
        files = [i for i, image in enumerate(images) if isinstance(image, (str, os.PathLike))]
        if len(files) > 1:  # the batched, threaded path of `edgecls classify`
            for i in files:
                self._check_file(images[i])
            results = self.classify_files([images[i] for i in files], top_k, tta=tta, min_confidence=min_confidence, stream=True)
            with contextlib.closing(results):  # a bad image stops the decode threads at once
                for i, result in zip(files, results):
                    if result.error:
                        from edgecls.edge_runtime.preprocess import ImageError

                        raise ImageError(result.error)
                    predictions[i] = result.prediction
        for i, image in enumerate(images):
            if predictions[i] is None:
                predictions[i] = self._predict(self._pixels(image), top_k, tta, min_confidence)
        return predictions  # type: ignore[return-value]

    def _predict(self, pixels: np.ndarray, top_k: int, tta: bool, min_confidence: float) -> Prediction:
        return self.runtime.predict(pixels, top_k, tta=tta, min_confidence=min_confidence)

    def _check_file(self, path) -> None:
        if Path(path).is_dir():
            raise EdgeclsError(f"{os.fspath(path)}: is a folder; classify_files() takes folders (classify() takes images)")

    def _pixels(self, image) -> np.ndarray:
        """Any accepted image -> uint8 at the model's input size, through the shared preprocessing."""
        from edgecls.edge_runtime.preprocess import load_image, prepare_image

        size, channels = self.runtime.input_size, self.runtime.channels
        if isinstance(image, (str, os.PathLike)):
            self._check_file(image)
            return load_image(image, size, channels)
        if isinstance(image, np.ndarray):
            ok_shape = image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4))
            if not ok_shape or image.size == 0 or not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
                raise EdgeclsError(f"an image array must be H x W or H x W x 1, 3 or 4 of numbers; got {image.dtype} {image.shape}")
            try:
                return prepare_image(image, size, channels)
            except (TypeError, ValueError) as exc:
                raise EdgeclsError(f"cannot use a {image.dtype} {image.shape} array as an image ({first_line(exc)})") from None
        if _is_pil_image(image):
            try:
                return prepare_image(image, size, channels)
            except (OSError, TypeError, ValueError) as exc:
                raise EdgeclsError(f"cannot use this {getattr(image, 'mode', '?')} PIL image ({first_line(exc)})") from None
        raise EdgeclsError(f"cannot classify a {type(image).__name__}: give a file path, a PIL image, a numpy array, or a list of them")

    # -- measuring ---------------------------------------------------------------------------
    def benchmark(self, images=None, *, runs: int | None = 100, seconds: float | None = None, warmup: int = 10,
                  threads: Sequence[int] | int | None = None, compare: Sequence[str | os.PathLike] = (),
                  workers: int | None = None, tta: bool = False,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:  # fmt: skip
        """Measure this model as `edgecls bench` does, and return its report (schema edgecls.bench/1).

        Per-image latency p50/p90/p99 and images/s on random inputs, for each of `threads`
        (default: 1 and min(4, cores)), `runs` timed invokes after `warmup` (or `seconds` per
        measurement instead); `images` (a folder, a file or a list) adds decode + resize +
        invoke end to end. `compare`: more models (paths or built-in names) measured in turn with
        this one; ratios are against this one. `tta`: also time flip-averaging (`classify(tta=True)`:
        4 invokes per image), and end to end with `images`. `progress`: called with a line as each
        measurement starts. The report's `models[i]["results"]` hold the numbers.
        """
        from edgecls.edge_runtime.batch import collect_images
        from edgecls.edge_runtime.bench import BenchSettings, run_bench
        from edgecls.edge_runtime.builtin import resolve_model

        if self.path is None:
            raise EdgeclsError("benchmark needs the model as a file: this Classifier was made from bytes")
        if isinstance(threads, int):
            threads = [threads]
        thread_counts = list(threads) if threads is not None else sorted({1, default_threads()})
        if isinstance(images, (str, os.PathLike)):
            images = [images]
        settings = BenchSettings(
            warmup=warmup,
            runs=None if seconds is not None else runs,
            seconds=seconds,
            threads=thread_counts,
            images=collect_images(images) if images else (),
            workers=workers,
            tta=tta,
            allow_control_flow=self.runtime.allow_control_flow,
        )
        return run_bench([self.path, *(resolve_model(os.fspath(m)) for m in compare)], settings, on_progress=progress)


class ImageStream:
    """The results of `Classifier.classify_files(..., stream=True)`, one `ImageResult` per image
    in path order, made as they are read; `len()` is the number of images. `close()` (or leaving
    a `with` block, or dropping it) stops the decode threads of a run ended early."""

    def __init__(self, results: Iterator, count: int):
        self._results = results
        self._count = count

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> "ImageStream":
        return self

    def __next__(self):
        return next(self._results)

    def close(self) -> None:
        self._results.close()

    def __enter__(self) -> "ImageStream":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _is_pil_image(value) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        return False
    return isinstance(value, Image.Image)

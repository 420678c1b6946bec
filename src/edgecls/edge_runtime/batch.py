"""Classify many images: the orchestration of a folder run over its parts, which live beside it:
`walk` (inputs -> image paths), `decoding` (threads decode while this one invokes),
`batch_interpreter` (several images per invoke) and `records` (one result, one record schema).
The names of those modules are re-exported here, where callers have always found them."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from edgecls.edge_runtime.batch_interpreter import DEFAULT_BATCH, BatchRunner
from edgecls.edge_runtime.classifier import TFLiteClassifier, flips
from edgecls.edge_runtime.decoding import available_cores, default_workers, iter_decoded
from edgecls.edge_runtime.preprocess import ImageError, shown_path
from edgecls.edge_runtime.records import ImageResult, PredictionOptions
from edgecls.edge_runtime.walk import SkippedPath, collect_images
from edgecls.errors import EdgeclsError

__all__ = [
    "DEFAULT_BATCH", "BatchRunner", "ImageResult", "PredictionOptions", "SkippedPath", "available_cores",
    "classify_paths", "collect_images", "default_workers", "iter_decoded",
]  # fmt: skip


def classify_paths(
    classifier: TFLiteClassifier,
    paths: Sequence[Path],
    options: PredictionOptions = PredictionOptions(),
    workers: int | None = None,
    *,
    batch_size: int | None = None,
    threads: int | None = None,
) -> Iterator[ImageResult]:
    """Yield one result per path, in order; a bad image gives a result with `error` set.
    `options`: top_k, tta and min_confidence (a PredictionOptions).

    Images are decoded in `workers` threads (default: one per core, up to 4), this one among them:
    it invokes the model and decodes whatever image it needs next that is not ready. A run of at
    least 2 * batch_size images (default 8) is invoked batch_size at a time on a second
    interpreter of `threads` threads (default 1: decoding photos keeps the cores busy, and more
    interpreter threads would only compete with it). Results are those of one
    `classifier.predict` per image: the first batch is checked against it, and the run falls back
    to one by one if they differ; `latency_ms` is then each image's share of its batch.
    `batch_size=1`, and shorter runs, classify one by one.
    """
    workers = workers or default_workers()
    views = 4 if options.tta else 1
    size = (batch_size or DEFAULT_BATCH) // views * views
    batches = size > 1 and len(paths) >= 2 * size
    decoded = iter_decoded(paths, classifier.input_size, classifier.channels, workers, ahead=4 * workers + size // views)
    runner = None
    if batches:
        # The decode threads start first (and take the first image), so building the batch
        # interpreter (~10 ms: XNNPACK packs the weights again) overlaps with decoding.
        decoded = itertools.chain([next(decoded)], decoded)
        try:
            runner = BatchRunner(classifier, size, threads or 1)
        except EdgeclsError:  # a model that cannot batch (a reshape to a batch of 1): one by one
            runner = None
    per_batch = size // views if runner else 1
    buffer = classifier.new_input_buffer()
    if runner is None:
        for item in decoded:
            yield from _one_by_one(classifier, [item], buffer, options)
        return
    waiting: list[tuple[Path, np.ndarray | ImageError]] = []  # in order: errors wait behind images
    images, checked = 0, False
    for item in decoded:
        if not waiting and isinstance(item[1], ImageError):
            yield from _one_by_one(classifier, [item], buffer, options)
            continue
        waiting.append(item)
        images += not isinstance(item[1], ImageError)
        if images < per_batch:
            continue
        start = time.perf_counter()
        rows = _fill_and_run(classifier, runner, [image for _, image in waiting if not isinstance(image, ImageError)], views)
        elapsed = time.perf_counter() - start
        if not checked:
            checked = True
            if not _rows_match_single(classifier, rows, waiting, views, buffer):
                for rest in (waiting, decoded):
                    for item in rest:
                        yield from _one_by_one(classifier, [item], buffer, options)
                return
        yield from _results(classifier, rows, waiting, views, options, elapsed)
        waiting, images = [], 0
    if images:
        start = time.perf_counter()
        rows = _fill_and_run(classifier, runner, [image for _, image in waiting if not isinstance(image, ImageError)], views)
        yield from _results(classifier, rows, waiting, views, options, time.perf_counter() - start)
    else:
        yield from _one_by_one(classifier, waiting, buffer, options)


def _results(classifier, rows: np.ndarray, items, views: int, options: PredictionOptions, elapsed: float) -> Iterator[ImageResult]:
    """Results in order; `latency_ms` is each image's share of the batch's to_input + invoke."""
    latency_ms = elapsed * 1000.0 / max(1, len(rows) // views)
    predictions = iter(classifier.to_predictions(_probabilities(classifier, rows, views), options.top_k, latency_ms,
                                                 min_confidence=options.min_confidence))  # fmt: skip
    for path, image in items:
        if isinstance(image, ImageError):
            yield ImageResult(shown_path(path), error=str(image))
        else:
            yield ImageResult(shown_path(path), next(predictions))


def _views(image: np.ndarray, views: int) -> tuple[np.ndarray, ...]:
    return (image,) if views == 1 else flips(image)


def _fill_and_run(classifier, runner: BatchRunner, images: list[np.ndarray], views: int) -> np.ndarray:
    slot = 0
    for image in images:
        for view in _views(image, views):
            classifier.to_input(view, runner.slot(slot))
            slot += 1
    return runner.run()[:slot].copy()


def _probabilities(classifier, rows: np.ndarray, views: int) -> np.ndarray:
    """A batch's raw output rows -> one row of probabilities per image (its views averaged)."""
    probabilities = classifier.output_to_probabilities(rows)
    if views == 1:
        return probabilities
    return probabilities.reshape(-1, views, probabilities.shape[-1]).mean(axis=1)


def _one_by_one(classifier, items, buffer: np.ndarray, options: PredictionOptions) -> Iterator[ImageResult]:
    for path, image in items:
        if isinstance(image, ImageError):
            yield ImageResult(shown_path(path), error=str(image))
        else:
            prediction = classifier.predict(image, options.top_k, buffer, tta=options.tta, min_confidence=options.min_confidence)
            yield ImageResult(shown_path(path), prediction)


def _rows_match_single(classifier, rows: np.ndarray, items, views: int, buffer: np.ndarray) -> bool:
    """Do a batch's rows give what one-by-one invokes on the classifier's interpreter give?"""
    images = [image for _, image in items if not isinstance(image, ImageError)]
    for image, probabilities in zip(images, _probabilities(classifier, rows, views)):
        single = [classifier.scores(classifier.to_input(view, buffer)) for view in _views(image, views)]
        expected = single[0] if views == 1 else np.mean(single, axis=0)
        if not np.allclose(probabilities, expected, rtol=0.0, atol=1e-6):
            return False
    return True

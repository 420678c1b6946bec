"""Classify many images: walk folders, decode in worker threads, invoke in batches meanwhile."""

from __future__ import annotations

import itertools
import os
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from edgecls.edge_runtime import watchdog as _watchdog
from edgecls.edge_runtime.classifier import Prediction, TFLiteClassifier, flips
from edgecls.edge_runtime.preprocess import IMAGE_SUFFIXES, UNSUPPORTED_IMAGE_SUFFIXES, ImageError, load_image, shown_path
from edgecls.errors import EdgeclsError, first_line


@dataclass
class ImageResult:
    path: str
    prediction: Prediction | None = None
    error: str | None = None

    def to_record(self) -> dict:
        if self.prediction is None:
            return {"path": self.path, "error": self.error}
        p = self.prediction
        record = {
            "path": self.path,
            "label": p.label,
            "probability": round(p.probability, 6),
            "top_k": [{"label": label, "probability": round(prob, 6)} for label, prob in p.top_k],
        }
        # A model with class groups (e.g. malignant): each group's probability, and the flag of
        # its operating point.
        record.update({f"{name}_probability": round(value, 6) for name, value in p.groups.items()})
        if p.flag is not None:
            record["flag"] = p.flag
        record["latency_ms"] = round(p.latency_ms, 3)
        return record


class SkippedPath(type(Path())):
    """A file a folder walk found but that is not decoded (an unsupported image format): it gets a
    result with `error` set, in path order, without being opened. `reason` says why."""

    reason = "unsupported format"


def collect_images(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (recursively, sorted) into image paths.

    A named file is kept whatever its suffix (the decoder will judge it); inside folders only
    image suffixes count, and files in image formats edgecls does not read (.heic, .avif...) are
    kept as `SkippedPath`s, so each gets a "skipped (unsupported format)" result instead of
    vanishing. Symlinked folders are not followed, so a link loop cannot hang a run. Special
    files (FIFOs, devices, links to them or to /proc) are refused by `load_image` before it
    opens anything.
    """
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            # Strings, not Path objects, until the end: a third of the time on a 1,000-photo folder.
            found = []
            for root, dirs, files in os.walk(path, onerror=_unreadable_folder):
                for name in files:
                    if name.startswith("."):
                        continue
                    suffix = os.path.splitext(name)[1].lower()
                    if suffix in IMAGE_SUFFIXES:
                        found.append(os.path.join(root, name))
                    elif suffix in UNSUPPORTED_IMAGE_SUFFIXES:
                        found.append(_Skipped(os.path.join(root, name)))
            if not any(type(f) is str for f in found):
                raise EdgeclsError(f"{shown_path(path)}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            found.sort(key=_path_parts)  # the order of sorted(Path, ...): part by part
            paths.extend(Path(f) if type(f) is str else SkippedPath(f) for f in found)
        elif path.exists() or path.is_symlink():
            paths.append(path)
        else:
            raise EdgeclsError(f"{shown_path(path)}: no such file or folder")
    return paths


class _Skipped(str):
    """A folder walk's path string for a SkippedPath (sorted with the others)."""


def _unreadable_folder(exc: OSError) -> None:
    # os.walk would skip it silently: the images in it would simply be missing from the results.
    folder = shown_path(Path(exc.filename or "?"))
    warnings.warn(f"{folder}: cannot read folder ({exc.strerror or exc}); its images are skipped", stacklevel=2)


def _path_parts(path: str) -> list[str]:
    return os.path.normcase(path).split(os.sep)  # as pathlib compares (case-blind on Windows)


# Images per invoke in folder runs: on the built-in models a batch of 8 takes ~5% less CPU per image
# than 8 invokes of 1 (XNNPACK's GEMMs get more rows; the Python around an invoke is paid once).
DEFAULT_BATCH = 8


def available_cores() -> int:
    """Cores this process may run on (a container's CPU set, not the host's count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_workers() -> int:
    """Decode threads, the invoking one among them: one per core (up to 4). Decoding a photo costs
    5-10x an invoke."""
    return min(4, available_cores())


def iter_decoded(
    paths: Sequence[Path], size: tuple[int, int], channels: int, workers: int, ahead: int | None = None
) -> Iterator[tuple[Path, np.ndarray | ImageError]]:
    """Decode images in `workers` threads, the calling one among them, and yield them in order,
    at most `ahead` (default 4*workers) ahead of the consumer, so memory stays flat however many
    paths there are.

    `workers - 1` helper threads decode without pause; the calling thread (which also invokes the
    model between images) decodes the next unclaimed image itself whenever the one it needs is not
    ready. So a run has exactly `workers` busy threads, not a pool of `workers` plus an invoking
    thread: on 2 cores that third thread was time-sliced against the decoders, refilling the
    caches of both (in-process ratio to the decode-only floor 0.85 -> 0.89, same files, same run).
    Pillow and libjpeg-turbo release the GIL while decoding and resizing. One image (the CLI's
    common case) or one worker: decoded inline, no thread.
    """
    if workers <= 1 or len(paths) <= 1:
        for path in paths:
            yield path, _decode(path, size, channels)
        return
    yield from _SharedDecoding(paths, size, channels, workers - 1, max(2, ahead or 4 * workers)).results()


class _SharedDecoding:
    """The state `iter_decoded` shares with its helper threads: which images are claimed, which
    are done, and how far the consumer has read. One lock; helpers wait for room in the window,
    the consumer for the image it needs."""

    def __init__(self, paths: Sequence[Path], size: tuple[int, int], channels: int, helpers: int, ahead: int):
        self.paths, self.size, self.channels, self.ahead = paths, size, channels, ahead
        lock = threading.Lock()
        self.ready = threading.Condition(lock)  # an image is done
        self.room = threading.Condition(lock)  # the consumer moved on, or the run is over
        self.claimed = 0  # images 0 .. claimed-1 are being decoded or done
        self.read = 0  # images the consumer has taken
        self.done: dict[int, object] = {}
        self.stopped = False
        self.helpers = [threading.Thread(target=self._help, name=f"edgecls-decode-{i}", daemon=True) for i in range(helpers)]

    def _claim(self, limit: int) -> int | None:
        if self.claimed < min(len(self.paths), limit):
            self.claimed += 1
            return self.claimed - 1
        return None

    def _help(self) -> None:
        while True:
            with self.room:
                while not self.stopped and (index := self._claim(self.read + self.ahead)) is None:
                    if self.claimed >= len(self.paths):
                        return
                    self.room.wait()
                if self.stopped:
                    return
            try:
                value = _decode(self.paths[index], self.size, self.channels)
            except BaseException as exc:  # noqa: BLE001 - a bug or MemoryError: the consumer re-raises it
                value = _HelperFailure(exc)
            with self.ready:
                self.done[index] = value
                self.ready.notify()

    def results(self) -> Iterator[tuple[Path, np.ndarray | ImageError]]:
        for helper in self.helpers:
            helper.start()
        try:
            for wanted, path in enumerate(self.paths):
                yield path, self._take(wanted)
        finally:  # the end, an error, or a consumer that stopped early: helpers finish their image and go
            with self.room:
                self.stopped = True
                self.room.notify_all()
            for helper in self.helpers:
                helper.join()

    def _take(self, wanted: int) -> np.ndarray | ImageError:
        while True:
            with self.ready:
                if wanted in self.done:
                    value = self.done.pop(wanted)
                    self.read = wanted + 1
                    self.room.notify_all()
                    break
                index = self._claim(wanted + self.ahead)
                if index is None:
                    self.ready.wait()
                    continue
            value = _decode(self.paths[index], self.size, self.channels)  # not ready: decode one here
            with self.ready:
                if index == wanted:
                    self.read = wanted + 1
                    self.room.notify_all()
                    break
                self.done[index] = value
        if isinstance(value, _HelperFailure):
            raise value.error
        return value


@dataclass
class _HelperFailure:
    error: BaseException


def _decode(path: Path, size: tuple[int, int], channels: int) -> np.ndarray | ImageError:
    if type(path) is SkippedPath:
        return ImageError(f"{shown_path(path)}: {path.reason} ({path.suffix.lower()}), not read")
    try:
        return load_image(path, size, channels)
    except ImageError as exc:
        return exc


class BatchRunner:
    """A second interpreter for the classifier's model, with a batch dimension: one invoke
    classifies up to `size` images (or size / 4 with test-time flips).

    Built from the model the classifier loaded, so it computes exactly what `classifier.scores`
    does; `classify_paths` still checks that on its first batch before trusting it.
    """

    def __init__(self, classifier: TFLiteClassifier, size: int, num_threads: int = 1):
        from edgecls.edge_runtime.interpreter import make_interpreter

        model = getattr(classifier.interpreter, "_model_content", None)
        if model is None and classifier.path is not None:
            model = classifier.path.read_bytes()
        if not model:
            raise EdgeclsError("the model's bytes are not at hand")
        self.size = size
        self.interpreter, _ = make_interpreter(bytes(model), num_threads, classifier.allow_control_flow)
        self.input_index = classifier.input_details["index"]
        try:
            self.interpreter.resize_tensor_input(self.input_index, [size, *classifier.input_shape[1:]])
            self.interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as exc:  # e.g. a reshape to a fixed batch of 1
            raise EdgeclsError(f"the model does not take a batch of {size} ({exc})") from None
        # The output the classifier reads (the logits, when the file has them as a second output).
        output = next(o for o in self.interpreter.get_output_details() if o["name"] == classifier.output_details["name"])
        if tuple(int(d) for d in output["shape"]) != (size, classifier.num_classes):
            raise EdgeclsError(f"the model gives {list(output['shape'])} for a batch of {size}")
        self.output_index = output["index"]
        self.buffer = np.zeros((size, *classifier.input_shape[1:]), dtype=classifier.new_input_buffer().dtype)

    def slot(self, index: int) -> np.ndarray:
        """The input slot `index`, shaped like `classifier.new_input_buffer()` (for `to_input`)."""
        return self.buffer[index : index + 1]

    def run(self) -> np.ndarray:
        """Invoke on the whole buffer; the raw output rows (slots beyond those filled are stale)."""
        watchdog = _watchdog.active  # the CLI's time bound on each invoke, if any
        try:
            self.interpreter.set_tensor(self.input_index, self.buffer)
            if watchdog is not None:
                watchdog.arm(f"a batch of {self.size}")
            self.interpreter.invoke()
            return self.interpreter.get_tensor(self.output_index)
        except (RuntimeError, ValueError) as exc:
            raise EdgeclsError(f"the interpreter cannot run this model ({first_line(exc)})") from None
        finally:
            if watchdog is not None:
                watchdog.disarm()


def classify_paths(
    classifier: TFLiteClassifier,
    paths: Sequence[Path],
    top_k: int = 3,
    workers: int | None = None,
    *,
    batch_size: int | None = None,
    threads: int | None = None,
    tta: bool = False,
    min_confidence: float = 0.0,
) -> Iterator[ImageResult]:
    """Yield one result per path, in order; a bad image gives a result with `error` set.

    Images are decoded in `workers` threads (default: one per core, up to 4), this one among them:
    it invokes the model and decodes whatever image it needs next that is not ready. A run of at least 2 * batch_size images (default 8) is invoked batch_size
    at a time on a second interpreter of `threads` threads (default 1: decoding photos keeps the
    cores busy, and more interpreter threads would only compete with it). Results are those of one
    `classifier.predict` per image: the first batch is checked against it, and the run falls back
    to one by one if they differ; `latency_ms` is then each image's share of its batch.
    `batch_size=1`, and shorter runs, classify one by one.
    """
    workers = workers or default_workers()
    options = {"tta": tta, "min_confidence": min_confidence} if tta or min_confidence else {}
    views = 4 if tta else 1
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
            yield from _one_by_one(classifier, [item], top_k, buffer, options)
        return
    waiting: list[tuple[Path, np.ndarray | ImageError]] = []  # in order: errors wait behind images
    images, checked = 0, False
    for item in decoded:
        if not waiting and isinstance(item[1], ImageError):
            yield from _one_by_one(classifier, [item], top_k, buffer, options)
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
                        yield from _one_by_one(classifier, [item], top_k, buffer, options)
                return
        yield from _results(classifier, rows, waiting, views, top_k, options, elapsed)
        waiting, images = [], 0
    if images:
        start = time.perf_counter()
        rows = _fill_and_run(classifier, runner, [image for _, image in waiting if not isinstance(image, ImageError)], views)
        yield from _results(classifier, rows, waiting, views, top_k, options, time.perf_counter() - start)
    else:
        yield from _one_by_one(classifier, waiting, top_k, buffer, options)


def _results(classifier, rows: np.ndarray, items, views: int, top_k: int, options: dict, elapsed: float) -> Iterator[ImageResult]:
    """Results in order; `latency_ms` is each image's share of the batch's to_input + invoke."""
    latency_ms = elapsed * 1000.0 / max(1, len(rows) // views)
    predictions = iter(classifier.to_predictions(_probabilities(classifier, rows, views), top_k, latency_ms,
                                                 min_confidence=options.get("min_confidence", 0.0)))  # fmt: skip
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


def _one_by_one(classifier, items, top_k: int, buffer: np.ndarray, options: dict) -> Iterator[ImageResult]:
    for path, image in items:
        if isinstance(image, ImageError):
            yield ImageResult(shown_path(path), error=str(image))
        else:
            yield ImageResult(shown_path(path), classifier.predict(image, top_k, buffer, **options))


def _rows_match_single(classifier, rows: np.ndarray, items, views: int, buffer: np.ndarray) -> bool:
    """Do a batch's rows give what one-by-one invokes on the classifier's interpreter give?"""
    images = [image for _, image in items if not isinstance(image, ImageError)]
    for image, probabilities in zip(images, _probabilities(classifier, rows, views)):
        single = [classifier.scores(classifier.to_input(view, buffer)) for view in _views(image, views)]
        expected = single[0] if views == 1 else np.mean(single, axis=0)
        if not np.allclose(probabilities, expected, rtol=0.0, atol=1e-6):
            return False
    return True

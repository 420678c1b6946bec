"""Classify many images: walk folders, decode in worker threads while the interpreter runs."""

from __future__ import annotations

import os
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from edgecls.edge_runtime.classifier import Prediction, TFLiteClassifier
from edgecls.edge_runtime.preprocess import ImageError, is_image_file, load_image
from edgecls.errors import EdgeclsError


@dataclass
class ImageResult:
    path: str
    prediction: Prediction | None = None
    error: str | None = None

    def to_record(self) -> dict:
        if self.prediction is None:
            return {"path": self.path, "error": self.error}
        p = self.prediction
        return {
            "path": self.path,
            "label": p.label,
            "probability": round(p.probability, 6),
            "top_k": [{"label": label, "probability": round(prob, 6)} for label, prob in p.top_k],
            "latency_ms": round(p.latency_ms, 3),
        }


def collect_images(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (recursively, sorted) into image paths.

    A named file is kept whatever its suffix (the decoder will judge it); inside folders only
    image suffixes count. Symlinked folders are not followed, so a link loop cannot hang a run.
    """
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = [
                Path(root) / name
                for root, dirs, files in os.walk(path, onerror=_unreadable_folder)
                for name in files
                if is_image_file(Path(name)) and not name.startswith(".")
            ]
            if not found:
                raise EdgeclsError(f"{path}: folder holds no images ({', '.join(sorted(_suffixes()))})")
            paths.extend(sorted(found))
        elif path.exists() or path.is_symlink():
            paths.append(path)
        else:
            raise EdgeclsError(f"{path}: no such file or folder")
    return paths


def _unreadable_folder(exc: OSError) -> None:
    # os.walk would skip it silently: the images in it would simply be missing from the results.
    folder = _display(Path(exc.filename or "?"))
    warnings.warn(f"{folder}: cannot read folder ({exc.strerror or exc}); its images are skipped", stacklevel=2)


def _suffixes() -> set[str]:
    from edgecls.edge_runtime.preprocess import IMAGE_SUFFIXES

    return set(IMAGE_SUFFIXES)


def iter_decoded(
    paths: list[Path], size: tuple[int, int], channels: int, workers: int
) -> Iterator[tuple[Path, np.ndarray | ImageError]]:
    """Decode images in `workers` threads, in order, at most 4*workers ahead of the consumer.

    Pillow releases the GIL while decoding and resizing, so decode overlaps with invoke.
    One image (the CLI's common case) is decoded inline: a pool would only add start-up time.
    """
    if workers <= 1 or len(paths) <= 1:
        for path in paths:
            yield path, _decode(path, size, channels)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edgecls-decode") as pool:
        pending: deque[tuple[Path, Future]] = deque()
        todo = iter(paths)
        for path in todo:
            pending.append((path, pool.submit(_decode, path, size, channels)))
            if len(pending) >= 4 * workers:
                break
        while pending:
            path, future = pending.popleft()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(_decode, nxt, size, channels)))
            yield path, future.result()


def _decode(path: Path, size: tuple[int, int], channels: int) -> np.ndarray | ImageError:
    try:
        return load_image(path, size, channels)
    except ImageError as exc:
        return exc


def classify_paths(
    classifier: TFLiteClassifier, paths: list[Path], top_k: int = 3, workers: int | None = None
) -> Iterator[ImageResult]:
    """Yield one result per path, in order; a bad image gives a result with `error` set."""
    if workers is None:
        workers = max(1, min(4, (os.cpu_count() or 1)))
    buffer = classifier.new_input_buffer()
    for path, decoded in iter_decoded(paths, classifier.input_size, classifier.channels, workers):
        if isinstance(decoded, ImageError):
            yield ImageResult(_display(path), error=str(decoded))
        else:
            yield ImageResult(_display(path), classifier.predict(decoded, top_k, buffer))


_CONTROL_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}


def _display(path: Path) -> str:
    # Non-UTF-8 file names still print: undecodable bytes become escapes, not a crash.
    # Control characters (a newline in a file name) are escaped too: one report stays one line.
    text = os.fsdecode(path).encode("utf-8", "backslashreplace").decode("utf-8")
    return text.translate(_CONTROL_ESCAPES) if not text.isprintable() else text

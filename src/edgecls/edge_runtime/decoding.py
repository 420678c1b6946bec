"""Decoding a folder run's images in threads, the consuming (invoking) one among them, in order."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from edgecls.edge_runtime.preprocess import ImageError, load_image, shown_path
from edgecls.edge_runtime.walk import SkippedPath


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
    thread: on 2 cores such a third thread is time-sliced against the decoders, and every switch
    makes both refill their caches (docs/guides/speed.md).
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

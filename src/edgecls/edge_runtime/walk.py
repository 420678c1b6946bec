"""Walking the inputs of a folder run: files and folders -> the image paths to classify, in order."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable

from edgecls.edge_runtime.preprocess import IMAGE_SUFFIXES, UNSUPPORTED_IMAGE_SUFFIXES, shown_path
from edgecls.errors import EdgeclsError


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

"""Image files on disk for `edgecls.data.datasets`: finding, checking, hashing, and the two
file-based layouts (HAM10000 metadata CSV, one folder per class).

The rules every layout shares live here once: which files count (image suffixes; hidden
files and macOS/Windows litter ignored; symlinked folders never followed), what makes an
image unusable, and the content hash that puts byte-identical copies in one group.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from edgecls.edge_runtime.preprocess import is_image_file
from edgecls.errors import EdgeclsError, first_line

# Litter that unzipping or browsing a dataset leaves behind; never data.
IGNORED_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
EXAMPLES_PER_REASON = 5

# Skip reasons, shared by every layout so summaries read the same.
MISSING_FILE = "missing file"
EMPTY_FILE = "empty file"
UNREADABLE_FILE = "unreadable file"
NOT_AN_IMAGE = "not an image Pillow can read"
CORRUPT_IMAGE = "corrupt or truncated image"
TOO_LARGE = "image too large to decode safely"


def is_ignored(name: str) -> bool:
    return name.startswith(".") or name in IGNORED_NAMES


def walk_files(folder: Path) -> Iterator[Path]:
    """Every visible file below `folder`, in a stable order.

    os.walk does not descend into symlinked folders (followlinks=False), so a link back up
    the tree cannot loop; symlinked *files* are still returned, they are just files.
    """
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not is_ignored(d))
        for name in sorted(filenames):
            if not is_ignored(name):
                yield Path(dirpath, name)


def visible_entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return sorted((e for e in entries if not is_ignored(e.name)), key=lambda e: e.name)
    except OSError as exc:
        raise EdgeclsError(f"cannot read folder {folder}: {exc.strerror or exc}") from None


@dataclass
class SkipLog:
    """Images left out of a dataset, counted by reason, with a few example names each."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    by_label: Counter = field(default_factory=Counter)

    def add(self, reason: str, example: str, label: str | None = None) -> None:
        self.counts[reason] += 1
        names = self.examples.setdefault(reason, [])
        if len(names) < EXAMPLES_PER_REASON:
            names.append(example)
        if label is not None:
            self.by_label[label] += 1

    def describe(self) -> str:
        return ", ".join(f"{reason}: {n}" for reason, n in sorted(self.counts.items())) or "none"


@dataclass(frozen=True)
class FileCheck:
    digest: str | None  # blake2b of the file's bytes; None when they could not be read
    problem: str | None  # a skip reason, or None for a usable image


def check_image_file(path: Path) -> FileCheck:
    """Hash a file and make sure Pillow can decode it.

    JPEGs (nearly every dataset) are decoded at 1/8 DCT scale: the decoder still walks the
    whole entropy-coded stream, so truncation and corruption surface, at a fraction of the
    cost of a full decode. Other formats get Pillow's verify() (PNG: chunk CRCs), which
    reads no pixels; anything that still fails later is reported by load_image.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return FileCheck(None, MISSING_FILE)
    except OSError:
        return FileCheck(None, UNREADABLE_FILE)
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    if not data:
        return FileCheck(digest, EMPTY_FILE)
    try:
        with warnings.catch_warnings():
            # As in load_image: a likely decompression bomb is an error, not a warning.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.format == "JPEG":
                    img.draft(img.mode, (max(1, img.width // 8), max(1, img.height // 8)))
                    img.load()
                else:
                    img.verify()
    except Image.UnidentifiedImageError:
        return FileCheck(digest, NOT_AN_IMAGE)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return FileCheck(digest, TOO_LARGE)
    except (OSError, SyntaxError, ValueError, TypeError, EOFError, MemoryError, IndexError):
        return FileCheck(digest, CORRUPT_IMAGE)
    return FileCheck(digest, None)


def check_image_files(paths: Sequence[Path], workers: int | None = None) -> list[FileCheck]:
    """check_image_file over many files; reading, hashing and decoding release the GIL."""
    if not paths:
        return []
    workers = workers or min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(check_image_file, paths, chunksize=64))


def index_images_by_stem(root: Path) -> dict[str, str]:
    """Map lower-cased file stem -> key (path relative to root) for every image below root.

    The first file in walk order wins, so a download unpacked twice (Kaggle ships both
    `HAM10000_images_part_1/` and `ham10000_images_part_1/`) resolves deterministically.
    """
    index: dict[str, str] = {}
    for path in walk_files(root):
        if is_image_file(path):
            index.setdefault(path.stem.lower(), path.relative_to(root).as_posix())
    return index


# --- the two file-based layouts ----------------------------------------------------------

HAM10000_DX = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
HAM10000_CSV = "ham10000_metadata.csv"  # compared lower-cased
SPLIT_FOLDER_NAMES = frozenset({"train", "training", "test", "testing", "val", "valid", "validation"})

NO_IMAGE_ID = "CSV row without image_id"
DUPLICATE_ROW = "CSV row repeating an image_id"
NOT_IMAGE_SUFFIX = "not an image file (by suffix)"
OUTSIDE_CLASS = "image outside any class folder"


@dataclass
class Found:
    """What a format reader found, before labels are checked and duplicate groups merged."""

    root: Path  # keys are relative to it
    source: Path  # the CSV or folder actually read
    rows: pd.DataFrame  # key, label, group (the format's own grouping), digest, extra columns
    skips: SkipLog
    declared_labels: list[str]  # every class the source names, also those left with no images
    notes: list[str] = field(default_factory=list)
    pixels: np.ndarray | None = None  # HMNIST only: uint8 (N, h, w, c), aligned with rows


def read_csv(path: Path, **kwargs) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise EdgeclsError(f"{path}: cannot read CSV ({first_line(exc)})") from None
    except OSError as exc:
        raise EdgeclsError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    return table


def keep_readable(rows: pd.DataFrame, root: Path, skips: SkipLog) -> pd.DataFrame:
    """Hash and check every row's file; log and drop the unusable ones; add a `digest` column."""
    checks = check_image_files([root / key for key in rows["key"]])
    problems = [c.problem for c in checks]
    for key, label, problem in zip(rows["key"], rows["label"], problems):
        if problem:
            skips.add(problem, key, label)
    rows = rows.assign(digest=[c.digest for c in checks])
    usable = np.array([p is None for p in problems], dtype=bool)  # an empty list would select columns
    return rows.loc[usable].reset_index(drop=True)


def read_ham10000(path: Path) -> Found:
    """HAM10000: the metadata CSV names images `<image_id>.jpg` found anywhere below its folder."""
    csv_path = path if path.is_file() else find_ham10000_csv(path)
    root = csv_path.parent
    table = read_csv(csv_path, dtype=str, keep_default_na=False)
    missing = [c for c in ("image_id", "dx") if c not in table.columns]
    if missing:
        raise EdgeclsError(
            f"{csv_path}: no {' or '.join(missing)} column; a HAM10000 metadata CSV has "
            f"lesion_id,image_id,dx,... (found: {', '.join(table.columns[:8]) or 'no columns'})"
        )
    image_id = table["image_id"].str.strip()
    dx = table["dx"].str.strip().str.lower()
    no_lesions = pd.Series("", index=table.index)
    lesion_id = table["lesion_id"].str.strip() if "lesion_id" in table.columns else no_lesions
    _check_dx(csv_path, image_id, dx)

    skips = SkipLog()
    usable = pd.Series(True, index=table.index)
    for row in table.index[image_id == ""]:
        skips.add(NO_IMAGE_ID, f"line {row + 2}", dx[row])  # +2: header line, 1-based
    usable &= image_id != ""
    repeated = usable & image_id.duplicated()
    for row in table.index[repeated]:
        skips.add(DUPLICATE_ROW, image_id[row], dx[row])
    usable &= ~repeated

    keys = image_id.str.lower().map(index_images_by_stem(root))
    for row in table.index[usable & keys.isna()]:
        skips.add(MISSING_FILE, f"{image_id[row]}.jpg", dx[row])
    usable &= keys.notna()

    rows = pd.DataFrame(
        {
            "key": keys[usable],
            "label": dx[usable],
            # An image without a lesion_id is its own lesion.
            "group": lesion_id[usable].where(lesion_id[usable] != "", keys[usable]),
            "lesion_id": lesion_id[usable],
            "image_id": image_id[usable],
        }
    ).reset_index(drop=True)
    rows = keep_readable(rows, root, skips)
    return Found(root, csv_path, rows, skips, declared_labels=sorted(set(dx)))


def find_ham10000_csv(folder: Path) -> Path:
    csvs = [Path(e.path) for e in visible_entries(folder) if e.is_file() and e.name.lower().endswith(".csv")]
    for csv in csvs:
        if csv.name.lower() == HAM10000_CSV:
            return csv
    for csv in csvs:  # a renamed metadata file still has the columns
        if {"image_id", "dx"} <= set(read_csv(csv, nrows=0).columns):
            return csv
    raise EdgeclsError(f"{folder}: no HAM10000_metadata.csv (or other CSV with image_id and dx columns)")


def _check_dx(csv_path: Path, image_id: pd.Series, dx: pd.Series) -> None:
    empty = dx == ""
    if empty.any():
        examples = ", ".join(image_id[empty].head(3))
        raise EdgeclsError(f"{csv_path}: {int(empty.sum())} rows have an empty dx label (e.g. {examples})")
    unknown = dx[~dx.isin(HAM10000_DX)].value_counts()
    if len(unknown):
        found = ", ".join(f"{label!r} ({n} rows)" for label, n in unknown.items())
        raise EdgeclsError(
            f"{csv_path}: unknown dx label(s) {found}; HAM10000 uses {', '.join(HAM10000_DX)}. "
            "For other classes, use one folder per class"
        )


def read_folders(root: Path) -> Found:
    """One subfolder per class; images may sit at any depth inside their class folder."""
    skips = SkipLog()
    notes: list[str] = []
    class_names: list[str] = []
    for entry in visible_entries(root):
        if entry.is_dir(follow_symlinks=False):
            class_names.append(entry.name)
        elif entry.is_symlink() and entry.is_dir():
            notes.append(f"ignored {entry.name}/: symlinked folders are not followed")
        elif is_image_file(Path(entry.name)):
            skips.add(OUTSIDE_CLASS, entry.name)
    if not class_names:
        raise EdgeclsError(
            f"{root}: no class folders; expected one subfolder per class "
            "(or a HAM10000_metadata.csv, or an hmnist_*.csv)"
        )
    if all(name.lower() in SPLIT_FOLDER_NAMES for name in class_names):
        raise EdgeclsError(
            f"{root}: holds {', '.join(n + '/' for n in class_names)}, which look like an existing "
            "train/test split, not classes; point at one of them (edgecls makes its own split)"
        )

    keys: list[str] = []
    labels: list[str] = []
    for name in class_names:
        for path in walk_files(root / name):
            key = path.relative_to(root).as_posix()
            if is_image_file(path):
                keys.append(key)
                labels.append(name)
            else:
                skips.add(NOT_IMAGE_SUFFIX, key, name)
    rows = pd.DataFrame({"key": keys, "label": labels, "group": keys}, dtype=object)
    rows = keep_readable(rows, root, skips)
    return Found(root, root, rows, skips, declared_labels=class_names, notes=notes)

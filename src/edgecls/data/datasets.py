"""Load a labelled image dataset as downloaded: HAM10000, one folder per class, or HMNIST CSVs.

`load_dataset(path)` returns a `Dataset`: one row per usable image in `dataset.items`
(key, label, label_index, group), what was left out and why in `dataset.skipped`, and the
pixels on demand through `load_images` / `image_source`, which use the one preprocessing
function of `edgecls.edge_runtime.preprocess`.

`group` is what a split must keep together: HAM10000's lesion_id, merged (transitively)
with every byte-identical copy of an image, in every format. Without it, validation
scores are inflated by near-duplicates of training images.

No TensorFlow here: datasets load, and splits are made, without it.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from edgecls.data.dataset_files import (
    HAM10000_CSV,
    Found,
    SkipLog,
    read_csv,
    read_folders,
    read_ham10000,
    visible_entries,
)
from edgecls.edge_runtime.preprocess import load_image, prepare_image
from edgecls.errors import EdgeclsError

FORMATS = ("auto", "ham10000", "folders", "hmnist")
# A class needs one image to learn from and one to be measured on.
MIN_IMAGES_PER_CLASS = 2

# HMNIST's integer labels (Kaggle "skin-cancer-mnist-ham10000"): the index order used by the
# community for these files, consistent with their class counts (label 4 = nv, 6705 rows).
HMNIST_DX = ("akiec", "bcc", "bkl", "df", "nv", "vasc", "mel")
HMNIST_NAME = re.compile(r"hmnist_(\d+)_(\d+)_(rgb|l)\.csv", re.IGNORECASE)
HMNIST_PREFERENCE = ("hmnist_28_28_rgb.csv", "hmnist_28_28_l.csv", "hmnist_8_8_rgb.csv", "hmnist_8_8_l.csv")
INVALID_PIXELS = "row with missing or out-of-range pixel values"


@dataclass
class Dataset:
    """A labelled image dataset; see docs/DESIGN.md ("Datasets") for the contract."""

    name: str
    root: Path  # item keys are paths relative to it (or `row:<n>` for HMNIST)
    format: str  # "ham10000" | "folders" | "hmnist"
    labels: list[str]  # sorted class names; label_index indexes this list
    items: pd.DataFrame  # key, label, label_index, group, digest (+ lesion_id, image_id for HAM10000)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> number of images left out
    skipped_examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> a few keys
    notes: list[str] = field(default_factory=list)  # warnings and choices made while loading
    duplicate_sets: int = 0  # sets of byte-identical images (each set shares one group)
    source: Path | None = None  # the CSV or folder read
    pixels: np.ndarray | None = field(default=None, repr=False)  # HMNIST: uint8 (N,h,w,c) by row

    def __len__(self) -> int:
        return len(self.items)

    def class_counts(self) -> pd.Series:
        """Images per class, in label order."""
        return self.items["label"].value_counts().reindex(self.labels, fill_value=0)

    def image_source(self, key: str) -> str | np.ndarray:
        """What to hand `load_image` (a file path) or `prepare_image` (an HMNIST uint8 array)."""
        position = int(self._positions([key])[0])
        if self.pixels is not None:
            return self.pixels[position]
        return os.fspath(self.root / key)

    def load_images(self, keys_or_rows, size: tuple[int, int], workers: int | None = None) -> np.ndarray:
        """Images as uint8 (N, h, w, 3) through the shared preprocessing.

        `keys_or_rows`: item keys, integer positions in `items`, or a slice of `items`
        itself (its `key` column is used). `size` is (height, width). Raises ImageError if a
        file fails to decode (load_dataset has already left out the ones it could detect).
        """
        positions = self._positions(keys_or_rows)
        height, width = size
        out = np.empty((len(positions), height, width, 3), dtype=np.uint8)
        if self.pixels is not None:
            for i, position in enumerate(positions):
                out[i] = prepare_image(self.pixels[position], (height, width), 3)
            return out
        paths = [self.root / key for key in self.items["key"].to_numpy()[positions]]

        def load(i: int) -> None:
            out[i] = load_image(paths[i], (height, width), 3)

        # Pillow releases the GIL while decoding and resizing, so threads scale.
        with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
            list(pool.map(load, range(len(paths))))
        return out

    def summary(self) -> str:
        """A few lines for the terminal: classes with counts, duplicates, what was skipped."""
        counts = self.class_counts()
        total = max(len(self), 1)
        lines = [
            f"{self.name} ({self.format}, {self.root}): {len(self)} images, {len(self.labels)} classes, "
            f"{self.items['group'].nunique()} groups"
        ]
        width = max(len(label) for label in self.labels) if self.labels else 0
        lines += [f"  {label:<{width}}  {n:>7}  {n / total:6.1%}" for label, n in counts.items()]
        if self.duplicate_sets:
            lines.append(f"  byte-identical duplicates: {self.duplicate_sets} sets, each kept in one group")
        if self.skipped:
            lines.append(f"  skipped {sum(self.skipped.values())} images:")
            for reason, n in sorted(self.skipped.items()):
                examples = ", ".join(self.skipped_examples.get(reason, [])[:3])
                lines.append(f"    {reason}: {n}" + (f" (e.g. {examples})" if examples else ""))
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def _key_index(self) -> pd.Index:
        # Built once per items table: rebuilding it per lookup made 8.5k single-key calls take 46 s.
        cached = self.__dict__.get("_key_index_cache")
        if cached is None or cached[0] is not self.items:
            cached = (self.items, pd.Index(self.items["key"]))
            self.__dict__["_key_index_cache"] = cached
        return cached[1]

    def _positions(self, keys_or_rows) -> np.ndarray:
        if isinstance(keys_or_rows, pd.DataFrame):
            keys_or_rows = keys_or_rows["key"]
        elif isinstance(keys_or_rows, (str, int, np.integer)):
            keys_or_rows = [keys_or_rows]
        array_like = isinstance(keys_or_rows, (np.ndarray, pd.Series, pd.Index))
        values = np.asarray(keys_or_rows if array_like else list(keys_or_rows))
        if values.size and np.issubdtype(values.dtype, np.integer):
            bad = values[(values < 0) | (values >= len(self.items))]
            if bad.size:
                last = len(self.items) - 1
                raise EdgeclsError(f"{self.name}: row positions out of range 0..{last}: {bad[:5].tolist()}")
            return values.astype(np.intp)
        positions = self._key_index().get_indexer(values.astype(str))
        unknown = values[positions < 0]
        if unknown.size:
            examples = ", ".join(map(str, unknown[:3]))
            raise EdgeclsError(f"{self.name}: {unknown.size} keys not in the dataset (e.g. {examples})")
        return positions


def load_dataset(path: str | os.PathLike, fmt: str = "auto") -> Dataset:
    """Load a dataset laid out as downloaded.

    `fmt` (auto|ham10000|folders|hmnist), with "auto" deciding from what is there:
    - a folder holding HAM10000_metadata.csv (HAM10000 wins over the HMNIST CSVs shipped
      beside it), or that CSV itself: images `<image_id>.jpg` anywhere below its folder;
    - a folder holding hmnist_*.csv (28x28 RGB preferred), or one such CSV;
    - otherwise a folder with one subfolder per class.
    A folder whose only content is one folder (a download's wrapper) is looked through.
    Unusable images are left out and counted in `skipped`; problems a user must fix (no
    such folder, missing columns, empty or unknown labels, too few images) raise EdgeclsError.
    """
    fmt = str(fmt).strip().lower()
    if fmt not in FORMATS:
        raise EdgeclsError(f"unknown dataset format {fmt!r}; choose one of {', '.join(FORMATS)}")
    # Absolute (symlinks kept as named) so image_source paths survive a change of directory.
    requested = Path(os.path.abspath(Path(path).expanduser()))
    if not requested.exists():
        raise EdgeclsError(f"dataset not found: {requested}")
    notes: list[str] = []
    if requested.is_file():
        if fmt == "folders":
            raise EdgeclsError(
                f"{requested} is a file; the folders format needs a folder with one subfolder per class"
            )
        target = requested
        fmt = _csv_format(requested) if fmt == "auto" else fmt
    else:
        target = _look_through_wrappers(requested, notes)
        fmt = _folder_format(target) if fmt == "auto" else fmt
    found = {"ham10000": read_ham10000, "folders": read_folders, "hmnist": read_hmnist}[fmt](target)
    found.notes[:0] = notes
    name = found.source.stem if fmt == "hmnist" else found.root.name
    return _assemble(found, name, fmt)


def _csv_format(path: Path) -> str:
    if path.suffix.lower() != ".csv":
        raise EdgeclsError(f"{path}: not a dataset; give a folder, a HAM10000 metadata CSV or an HMNIST CSV")
    columns = set(read_csv(path, nrows=0).columns)
    if {"image_id", "dx"} <= columns:
        return "ham10000"
    if "label" in columns and any(c.startswith("pixel") for c in columns):
        return "hmnist"
    raise EdgeclsError(
        f"{path}: neither a HAM10000 metadata CSV (image_id, dx columns) nor an HMNIST CSV (pixel0000..., label)"
    )


def _folder_format(folder: Path) -> str:
    names = [e.name.lower() for e in visible_entries(folder) if e.is_file()]
    if HAM10000_CSV in names:
        return "ham10000"
    if any(HMNIST_NAME.fullmatch(name) for name in names):
        return "hmnist"
    return "folders"


def _look_through_wrappers(folder: Path, notes: list[str]) -> Path:
    """Step into `folder/only_subfolder` while that is all there is and it holds a dataset."""
    start = folder
    while True:
        entries = visible_entries(folder)
        if not entries:
            raise EdgeclsError(
                f"{folder} is empty: expected class folders, a HAM10000_metadata.csv or an hmnist_*.csv"
            )
        if len(entries) != 1 or not entries[0].is_dir(follow_symlinks=False):
            break
        inner = visible_entries(Path(entries[0].path))
        # A lone class folder is not a wrapper: it holds images, not folders or CSVs.
        if not any(e.is_dir(follow_symlinks=False) or e.name.lower().endswith(".csv") for e in inner):
            break
        folder = Path(entries[0].path)
    if folder != start:
        notes.append(f"reading {folder} (the only folder inside {start})")
    return folder


def read_hmnist(path: Path) -> Found:
    """HMNIST: one image per row, `pixel0000`... then `label`; pixels kept in memory as uint8."""
    notes: list[str] = []
    csv_path = path if path.is_file() else _find_hmnist_csv(path, notes)
    try:
        # float32 parses missing cells as NaN instead of failing; rows are checked below.
        table = read_csv(csv_path, dtype=np.float32)
    except EdgeclsError as exc:
        raise EdgeclsError(f"{exc} (an HMNIST CSV holds only numbers)") from None
    if "label" not in table.columns:
        raise EdgeclsError(f"{csv_path}: no label column; an HMNIST CSV has pixel0000, pixel0001, ..., label")
    pixel_columns = [c for c in table.columns if c != "label"]
    if not pixel_columns or not all(c.startswith("pixel") for c in pixel_columns):
        odd = [c for c in pixel_columns if not c.startswith("pixel")][:3] or ["none"]
        raise EdgeclsError(f"{csv_path}: expected only pixel columns besides label, found {', '.join(odd)}")
    shape = _hmnist_shape(csv_path, len(pixel_columns))
    labels = _hmnist_labels(csv_path, table["label"].to_numpy())

    values = table[pixel_columns].to_numpy()
    valid = (np.isfinite(values) & (values >= 0) & (values <= 255) & (values == np.round(values))).all(axis=1)
    skips = SkipLog()
    for row in np.flatnonzero(~valid):
        skips.add(INVALID_PIXELS, f"row:{row}", labels[row])
    rows_kept = np.flatnonzero(valid)
    pixels = values[valid].astype(np.uint8).reshape(-1, *shape)
    pixels.flags.writeable = False  # image_source hands out views; nobody may edit the dataset through them
    keys = [f"row:{row}" for row in rows_kept]
    rows = pd.DataFrame(
        {
            "key": keys,
            "label": labels[valid],
            "group": keys,
            "digest": [hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest() for image in pixels],
        },
        dtype=object,
    )
    return Found(csv_path.parent, csv_path, rows, skips, sorted(set(labels)), notes, pixels=pixels)


def _find_hmnist_csv(folder: Path, notes: list[str]) -> Path:
    by_name = {e.name.lower(): Path(e.path) for e in visible_entries(folder) if HMNIST_NAME.fullmatch(e.name)}
    if not by_name:
        raise EdgeclsError(f"{folder}: no hmnist_*.csv (e.g. hmnist_28_28_RGB.csv)")
    ranked = sorted(by_name, key=lambda n: (HMNIST_PREFERENCE.index(n) if n in HMNIST_PREFERENCE else 99, n))
    if len(ranked) > 1:
        others = ", ".join(by_name[n].name for n in ranked[1:])
        notes.append(f"using {by_name[ranked[0]].name} (also there: {others}; name a CSV to choose)")
    return by_name[ranked[0]]


def _hmnist_shape(csv_path: Path, n_pixels: int) -> tuple[int, int, int]:
    named = HMNIST_NAME.fullmatch(csv_path.name)
    if named:
        shape = (int(named[1]), int(named[2]), 3 if named[3].lower() == "rgb" else 1)
        if shape[0] * shape[1] * shape[2] != n_pixels:
            named_shape = "x".join(map(str, shape))
            raise EdgeclsError(f"{csv_path}: {n_pixels} pixel columns, but the name says {named_shape}")
        return shape
    for channels in (1, 3):  # n = s*s and n = 3*t*t cannot both hold, so this is unambiguous
        side = int(round((n_pixels / channels) ** 0.5))
        if side * side * channels == n_pixels:
            return side, side, channels
    raise EdgeclsError(f"{csv_path}: {n_pixels} pixel columns is neither s*s (gray) nor 3*s*s (RGB)")


def _hmnist_labels(csv_path: Path, raw: np.ndarray) -> np.ndarray:
    empty = np.isnan(raw)
    if empty.any():
        first = int(np.argmax(empty))
        raise EdgeclsError(f"{csv_path}: {int(empty.sum())} rows have an empty label (e.g. row:{first})")
    if not (raw == np.round(raw)).all():
        raise EdgeclsError(f"{csv_path}: labels must be integers; found {raw[raw != np.round(raw)][:3].tolist()}")
    codes = raw.astype(np.int64)
    if not HMNIST_NAME.fullmatch(csv_path.name):
        return codes.astype(str).astype(object)  # no known mapping: classes are named by number
    unknown = sorted(set(codes.tolist()) - set(range(len(HMNIST_DX))))
    if unknown:
        raise EdgeclsError(f"{csv_path}: unknown label values {unknown[:10]}; HMNIST labels are 0..6")
    return np.asarray(HMNIST_DX, dtype=object)[codes]


def _assemble(found: Found, name: str, fmt: str) -> Dataset:
    """Check classes, number labels, merge duplicate groups: the rules every format shares."""
    rows, skips = found.rows, found.skips
    counts = rows["label"].value_counts()
    for label in found.declared_labels:
        if counts.get(label, 0) == 0:
            left_out = skips.by_label.get(label, 0)
            why = f"all {left_out} of its images were skipped" if left_out else "it has no images"
            found.notes.append(f"class {label!r} left out: {why}")
            warnings.warn(f"{name}: class {label!r} left out: {why}", stacklevel=3)
    if rows.empty:
        raise EdgeclsError(f"{found.source}: no usable images (skipped: {skips.describe()})")
    too_few = counts[counts < MIN_IMAGES_PER_CLASS]
    if len(too_few):
        listed = ", ".join(f"{label!r}: {n}" for label, n in too_few.items())
        raise EdgeclsError(
            f"{found.source}: classes need at least {MIN_IMAGES_PER_CLASS} usable images each; {listed}. "
            "Add images or remove the class"
        )
    if len(counts) < 2:
        raise EdgeclsError(
            f"{found.source}: need at least 2 classes, found only {counts.index[0]!r} ({counts.iloc[0]} images)"
        )

    labels = sorted(counts.index)
    rows = rows.assign(
        label_index=rows["label"].map({label: i for i, label in enumerate(labels)}).astype(np.int64),
        group=merge_duplicate_groups(rows["group"], rows["digest"]),
    )
    duplicated = rows[rows["digest"].duplicated(keep=False)]
    mixed = duplicated.groupby("digest")["label"].nunique()
    if (mixed > 1).any():
        example = duplicated[duplicated["digest"] == mixed[mixed > 1].index[0]]["key"].head(2)
        message = (
            f"{int((mixed > 1).sum())} sets of byte-identical images carry different labels "
            f"(e.g. {', '.join(example)})"
        )
        found.notes.append(message)
        warnings.warn(f"{name}: {message}", stacklevel=3)
    extra = [c for c in rows.columns if c not in ("key", "label", "label_index", "group", "digest")]
    items = rows[["key", "label", "label_index", "group", "digest", *extra]].reset_index(drop=True)
    return Dataset(
        name=name,
        root=found.root,
        format=fmt,
        labels=labels,
        items=items,
        skipped=dict(skips.counts),
        skipped_examples=dict(skips.examples),
        notes=found.notes,
        duplicate_sets=int(duplicated["digest"].nunique()),
        source=found.source,
        pixels=found.pixels,
    )


def merge_duplicate_groups(groups: pd.Series, digests: pd.Series) -> pd.Series:
    """Union of groups that share any content digest (transitively); named by their smallest member.

    A bipartite graph (group nodes, digest nodes, one edge per image) whose connected
    components are the merged groups.
    """
    # sort=True numbers group names in sorted order, so the smallest code is the smallest name.
    group_codes, group_names = pd.factorize(groups, sort=True)
    digest_codes, digest_names = pd.factorize(digests)
    n_nodes = len(group_names) + len(digest_names)
    edges = coo_matrix(
        (np.ones(len(groups)), (group_codes, len(group_names) + digest_codes)), shape=(n_nodes, n_nodes)
    )
    _, component = connected_components(edges, directed=False)
    item_component = component[group_codes]
    smallest = np.full(component.max() + 1, len(group_names))
    np.minimum.at(smallest, item_component, group_codes)
    return pd.Series(np.asarray(group_names, dtype=object)[smallest[item_component]], index=groups.index)

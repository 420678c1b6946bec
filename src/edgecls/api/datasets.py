"""Datasets for the Python API: `load_dataset` and `split_dataset`.

    data = edgecls.load_dataset("HAM10000/")         # HAM10000, one folder per class, or HMNIST
    data.labels, len(data), data.class_counts()
    print(data.summary())
    parts = edgecls.split_dataset(data)              # the split `edgecls.train_classifier` makes
    parts.table                                      # images per class and side (pandas)
    parts.test.load_images(parts.test.items, (94, 94))

No TensorFlow here (pandas and scipy, for the duplicate grouping).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd

from edgecls.core.defaults import SEED, TEST_FRACTION, VAL_FRACTION
from edgecls.data.datasets import Dataset
from edgecls.data.datasets import load_dataset as _load_dataset
from edgecls.log import get_logger

__all__ = ["Dataset", "DatasetSplit", "load_dataset", "split_dataset"]

logger = get_logger("data")

# Set on the Datasets split_dataset returns: `train_classifier()` reads a dataset from its path, so it must
# not be handed one side of a split (it would silently train on the whole dataset).
_PART_OF = "_edgecls_part_of"


def load_dataset(path: str | os.PathLike, format: str = "auto") -> Dataset:
    """Load a labelled image dataset laid out as it was downloaded.

    `path`: a HAM10000 folder (with `HAM10000_metadata.csv`) or that CSV; a folder with one
    subfolder per class (the ALL blood smears); or an HMNIST CSV or its folder.
    `format`: `auto` (detect), `ham10000`, `folders` or `hmnist`.

    Returns a `Dataset`: `labels` (sorted class names), `items` (a DataFrame, one row per
    usable image: key, label, label_index, group), `skipped` (what was left out and why),
    `summary()`, `class_counts()` and `load_images(keys, (h, w))` (uint8 pixels through the
    one preprocessing function the device uses). Unreadable images are skipped and counted;
    problems to fix (no such folder, unknown labels) raise `EdgeclsError`.
    """
    dataset = _load_dataset(path, format)
    logger.info("dataset: %s", dataset.summary())
    return dataset


@dataclass
class DatasetSplit:
    """A dataset split into train, validation and test, each side a `Dataset` of its own.

    `split` is the side of every item of `dataset` ("train", "val" or "test"), as `split.csv`
    of a run holds it. Each side is for looking at and for your own experiments;
    `train_classifier()` takes the whole `dataset` and makes this same split itself (from the
    same fractions and seed).
    """

    dataset: Dataset
    split: pd.Series
    train: Dataset
    val: Dataset
    test: Dataset

    @property
    def table(self) -> pd.DataFrame:
        """Images per class (rows) on each side (columns train, val, test), with totals."""
        table = pd.crosstab(self.dataset.items["label"], self.split.to_numpy())
        table = table.reindex(index=self.dataset.labels, columns=["train", "val", "test"], fill_value=0)
        table.loc["total"] = table.sum()
        table.index.name, table.columns.name = "label", None
        return table

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name} {len(getattr(self, name))}" for name in ("train", "val", "test"))
        return f"DatasetSplit({self.dataset.name!r}: {sizes} images)"


def split_dataset(dataset: Dataset, val_fraction: float = VAL_FRACTION, test_fraction: float = TEST_FRACTION, seed: int = SEED) -> DatasetSplit:
    """Split `dataset` the way `edgecls train` does: stratified by class and grouped, so that
    all images of one HAM10000 lesion, and every set of byte-identical files, land on one side.

    The defaults are `TrainOptions`' defaults, so this is the split `train_classifier(dataset)` will use.
    """
    from edgecls.data.split import make_split, restrict_dataset

    check_whole_dataset(dataset, "split_dataset")
    split = make_split(dataset, val_fraction, test_fraction, seed)
    parts = {}
    for name in ("train", "val", "test"):
        part = restrict_dataset(dataset, (split == name).to_numpy())
        part.__dict__[_PART_OF] = name
        parts[name] = part
    result = DatasetSplit(dataset, split, **parts)
    logger.info("%r", result)
    return result


def check_whole_dataset(dataset, what: str) -> None:
    """Refuse the train, val or test side of a split where a whole dataset is needed; `what`
    names the caller in the error."""
    from edgecls.errors import EdgeclsError

    part = getattr(dataset, _PART_OF, None)
    if part is not None:
        raise EdgeclsError(
            f"{what} takes a whole dataset, not the {part} side of a split (pass DatasetSplit.dataset; "
            "edgecls makes the split itself, grouped and stratified)"
        )


def dataset_location(dataset: Dataset, what: str = "train_classifier") -> tuple[str, str]:
    """(path, format) that `load_dataset` reads `dataset` back from: the file it came from
    (the HAM10000 or HMNIST CSV) or its folder. `what` names the caller in errors."""
    check_whole_dataset(dataset, what)
    source = dataset.source if dataset.source is not None and dataset.format != "folders" else dataset.root
    return os.fspath(source), dataset.format


"""The images a conversion uses, taken from a dataset and its split.

Train split: QAT fine-tuning and int8 calibration. Validation split: picking the best QAT
epoch. Test split: the parity report, the only numbers a user should trust. Labels are always
indices into the *model's* label order, mapped by name from the dataset's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from edgecls.edge_runtime.normalization import PIXEL_UNIT, InputNormalization
from edgecls.errors import EdgeclsError


@dataclass
class LabelledImages:
    images: np.ndarray  # uint8 (N, h, w, 3), through the shared preprocessing
    labels: np.ndarray  # int64 indices into the model's labels
    keys: list[str]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class ConversionData:
    dataset: object  # edgecls.data.datasets.Dataset (duck-typed: items, labels, load_images)
    split: pd.Series  # "train" / "val" / "test", aligned with dataset.items
    labels: list[str]  # the model's output order
    image_size: tuple[int, int]
    normalization: InputNormalization = PIXEL_UNIT  # how pixels become the model's input

    def __post_init__(self) -> None:
        if not self.split.index.equals(self.dataset.items.index):
            raise EdgeclsError("the split does not match the dataset (its index differs from dataset.items)")
        unknown = sorted(set(self.dataset.labels) - set(self.labels))
        if unknown:
            raise EdgeclsError(
                f"the dataset has classes the model does not know: {', '.join(unknown[:8])} "
                f"(model labels: {', '.join(self.labels)})"
            )

    def items(self, part: str) -> pd.DataFrame:
        return self.dataset.items[(self.split == part).to_numpy()]

    def model_labels(self, items: pd.DataFrame) -> np.ndarray:
        lookup = np.array([self.labels.index(label) for label in self.dataset.labels], dtype=np.int64)
        return lookup[items["label_index"].to_numpy(dtype=np.int64)]

    def load(self, part: str, positions: np.ndarray | None = None) -> LabelledImages:
        """Images of one split (all of them, or the rows at `positions` within it)."""
        items = self.items(part)
        if positions is not None:
            items = items.iloc[np.asarray(positions, dtype=np.intp)]
        keys = items["key"].astype(str).tolist()
        images = self.dataset.load_images(keys, self.image_size) if keys else np.zeros((0, *self.image_size, 3), np.uint8)
        return LabelledImages(images, self.model_labels(items), keys)

    def test(self) -> LabelledImages:
        test = self.load("test")
        if not len(test):
            raise EdgeclsError("the split has no test images: the parity report needs a held-out test split")
        return test

    def calibration(self, size: int, seed: int) -> LabelledImages:
        """A class-balanced sample of the training split: rare classes set int8 ranges too."""
        train = self.items("train")
        if not len(train):
            raise EdgeclsError("the split has no training images to calibrate int8 ranges on")
        return self.load("train", class_balanced_sample(self.model_labels(train), size, seed))


def class_balanced_sample(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Positions of up to `size` items, taking classes in turn (one of each, then the next of
    each...) so every class gets an equal share until it runs out; shuffled within classes."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    rank = np.empty(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rank[rng.permutation(members)] = np.arange(len(members))
    tiebreak = rng.random(len(labels))  # which class goes first within a round
    order = np.lexsort((tiebreak, rank))
    return np.sort(order[: min(size, len(labels))])

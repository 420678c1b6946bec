"""Defaults that several layers share, written once: the data split that training makes, that
`split_dataset` reproduces, and that conversion makes for a model file it has no split for.

Light on purpose (no numpy): the options dataclasses and the CLI's help text read it.
"""

from __future__ import annotations

VAL_FRACTION = 0.15  # share of the images, by group, in the validation split
TEST_FRACTION = 0.15  # share of the images, by group, in the test split
SEED = 1234  # the split's seed (and training's and conversion's shuffling and sampling)

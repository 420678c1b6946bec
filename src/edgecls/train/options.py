"""`TrainOptions` and its choices, defined in `edgecls.core.train_options` (below `train` and
`convert`, since a run folder records them) and importable from here too."""

from __future__ import annotations

from edgecls.core.train_options import (
    AUGMENT_CHOICES,
    BATCHNORM_CHOICES,
    DEFAULT_EPOCHS,
    FORMAT_CHOICES,
    HEAD_EPOCHS_WITH_WEIGHTS,
    IMBALANCE_CHOICES,
    MIXED_PRECISION_CHOICES,
    MONITOR_CHOICES,
    OPTIMIZER_CHOICES,
    SCHEDULE_CHOICES,
    STRATEGY_CHOICES,
    TrainOptions,
)

__all__ = [
    "AUGMENT_CHOICES", "BATCHNORM_CHOICES", "DEFAULT_EPOCHS", "FORMAT_CHOICES", "HEAD_EPOCHS_WITH_WEIGHTS",
    "IMBALANCE_CHOICES", "MIXED_PRECISION_CHOICES", "MONITOR_CHOICES", "OPTIMIZER_CHOICES", "SCHEDULE_CHOICES",
    "STRATEGY_CHOICES", "TrainOptions",
]  # fmt: skip

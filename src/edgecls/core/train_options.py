"""Hyperparameters and run controls for `edgecls train`, as one dataclass (no TensorFlow here).

In `core`, below `train` and `convert`: a run folder's config.json records these options
(`core.runs`), and conversion fine-tunes (QAT) with the recipe a run was trained with. Training
owns the model registry, which `TrainOptions.validate()` consults when it is called.
`edgecls.train.options` re-exports all of this.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from edgecls.core.defaults import SEED, TEST_FRACTION, VAL_FRACTION
from edgecls.errors import EdgeclsError

IMBALANCE_CHOICES = ("class-weights", "balanced-sampling", "none")
# val_acc_balacc_mean: the mean of val_accuracy and val_balanced_accuracy (one number that
# neither lets the majority class nor the rare classes alone pick the epoch).
MONITOR_CHOICES = ("val_balanced_accuracy", "val_auc", "val_accuracy", "val_loss", "val_acc_balacc_mean")
SCHEDULE_CHOICES = ("cosine", "plateau", "one-cycle")
OPTIMIZER_CHOICES = ("adam", "adamw")
# none; standard: flips, quarter turns, +-18 degree rotations, mild colour jitter (the
# default); strong: flips, any rotation, scale 0.8-1.25, +-10% shifts (reflected
# borders), brightness/contrast/saturation +-20% (pipeline.StrongAugmenter).
AUGMENT_CHOICES = ("none", "standard", "strong")
STRATEGY_CHOICES = ("default", "mirrored", "multi-worker")
MIXED_PRECISION_CHOICES = ("auto", "on", "off")
FORMAT_CHOICES = ("auto", "ham10000", "folders", "hmnist")
# BatchNorm while fine-tuning pretrained weights. frozen: the pretrained statistics and scales
# stay (the layers run in inference mode, never recomputed); train: they learn like any layer.
# auto: frozen with --weights, train without.
BATCHNORM_CHOICES = ("auto", "frozen", "train")
HEAD_EPOCHS_WITH_WEIGHTS = 3  # head warm-up epochs when --weights is given and --head-epochs is not

# Run controls: how this invocation behaves, not what the model is; kept out of config.json.
DEFAULT_EPOCHS = 30  # a new run's most epochs when `epochs` is None

_RUN_CONTROLS = ("resume", "force", "verbose", "worker_timeout")


@dataclass
class TrainOptions:
    """How `train_classifier` (and `edgecls train`, whose flags these are) trains a model.

    The model: `model` (a name from the model registry, `edgecls.train.models.list_models()`:
    edge-cnn, edge-cnn-small, mobilenetv2, ...), `image_size` (square input side in pixels, default 94),
    `weights` ("imagenet" for models that offer it, or a weights file to start from).

    The recipe: `epochs` (most epochs; early stopping may end sooner; None: DEFAULT_EPOCHS for a
    new run, the run's own when resuming), `batch_size` (images
    per step, across devices), `learning_rate` (the peak), `optimizer` ("adam" or "adamw") with
    `weight_decay` (AdamW only), `lr_schedule` ("cosine": cosine decay after `warmup_epochs` of
    linear warm-up; "one-cycle": warm-up over `warmup_fraction` of all steps, then cosine to
    ~0; "plateau": halve when `monitor` stalls), `label_smoothing` (0: plain cross-entropy),
    `imbalance` ("class-weights": balanced weights raised to `class_weight_power`;
    "balanced-sampling"; "none"), `augment` ("standard", "strong" or "none"), `monitor` (the
    validation metric, in inference mode, that picks the best epoch: val_balanced_accuracy,
    val_auc, val_accuracy, val_loss, val_acc_balacc_mean) and `patience` (epochs without
    improvement before stopping), `seed` (split, shuffling, augmentation, initial weights).

    Fine-tuning (docs/transfer-learning.md): `head_epochs` epochs train the classifier alone on
    the frozen backbone at `learning_rate` (None: HEAD_EPOCHS_WITH_WEIGHTS with `weights`, 0
    without), then the whole network trains at `learning_rate * finetune_lr_scale` (with
    `weights`; 1 without) on the usual schedule; `batchnorm` ("auto", "frozen", "train") says
    whether BatchNorm keeps the pretrained statistics and scales in the second phase.

    The data: `val_fraction` and `test_fraction` (shares of the images, by group, for the
    validation and test splits), `data_format` ("auto", "ham10000", "folders", "hmnist"),
    `limit` (a stratified subset of about this many images, for quick trials), `cache_file`
    (cache decoded images on disk instead of in memory).

    The machine: `strategy` ("default"; "mirrored" over all local GPUs; "multi-worker": several
    machines, the cluster read from TF_CONFIG, docs/multi-machine.md), `mixed_precision`
    ("auto": float16 compute when a GPU is present, "on", "off"), `tensorboard` (write logs/).

    This invocation only (not saved in config.json): `resume` (continue the run in the output
    folder), `force` (replace it), `verbose` (Keras' fit output: 0 none, 1 a progress bar, 2 one
    line per epoch), `worker_timeout` (multi-worker: seconds to wait for the other workers to join,
    and for any one exchange with them, before failing).
    """

    model: str = "edge-cnn"
    image_size: int = 94  # square side in pixels; DESIGN.md default
    epochs: int | None = None  # None: DEFAULT_EPOCHS, or the resumed run's own
    batch_size: int = 32
    learning_rate: float = 2e-3  # the peak learning rate
    optimizer: str = "adam"  # adam, or adamw (decoupled weight decay, `weight_decay`)
    weight_decay: float = 0.02  # AdamW only: each step multiplies weights by 1 - lr * weight_decay
    # cosine: cosine decay after a linear warmup of `warmup_epochs`; plateau: ReduceLROnPlateau;
    # one-cycle: linear warm-up over `warmup_fraction` of all steps, then cosine to ~0 (recipe.OneCycle).
    lr_schedule: str = "cosine"
    warmup_epochs: int = 1
    warmup_fraction: float = 0.05  # one-cycle only
    label_smoothing: float = 0.0  # targets (1 - e) * one-hot + e / classes; 0: plain cross-entropy
    # class-weights: loss weights from sklearn's "balanced" weights raised to class_weight_power
    # (0.5 softens them: full inverse frequency trades too much overall accuracy on HAM10000).
    # Balanced weights are n / (k * count) = (max count / count) * n / (k * max count), so these are
    # the "(max count / count) ** power" weights up to one constant factor (which Adam and AdamW
    # are insensitive to): one way to weight classes, not two.
    imbalance: str = "class-weights"
    class_weight_power: float = 0.5
    augment: str = "standard"  # AUGMENT_CHOICES; True/False (older configs) mean standard/none
    patience: int = 8  # epochs without improvement of `monitor` before stopping
    monitor: str = "val_balanced_accuracy"  # computed in inference mode on the validation split
    seed: int = SEED
    val_fraction: float = VAL_FRACTION
    test_fraction: float = TEST_FRACTION
    data_format: str = "auto"
    limit: Optional[int] = None  # stratified subset of this many images, for quick trials
    strategy: str = "default"
    mixed_precision: str = "auto"  # auto: on when a GPU is present
    weights: Optional[str] = None  # "imagenet" (models that offer it) or a weights file
    head_epochs: Optional[int] = None  # None: HEAD_EPOCHS_WITH_WEIGHTS with weights, else 0
    finetune_lr_scale: float = 0.1  # with weights: the whole network's peak LR is learning_rate * this
    batchnorm: str = "auto"  # BATCHNORM_CHOICES
    cache_file: Optional[str] = None  # tf.data cache on disk instead of in memory
    tensorboard: bool = True
    resume: bool = False
    force: bool = False
    verbose: int = 2  # Keras fit verbosity: 1 progress bar, 2 one line per epoch
    worker_timeout: float = 300.0  # multi-worker: the longest wait for the other workers

    def __post_init__(self) -> None:
        if isinstance(self.augment, bool):  # a config.json or caller that gives augment as on/off
            self.augment = "standard" if self.augment else "none"

    @property
    def size(self) -> tuple[int, int]:
        return (self.image_size, self.image_size)

    @property
    def warmup_head_epochs(self) -> int:
        """Epochs of head-only training before the whole network trains (never all of them
        unless `epochs` is that small)."""
        head = self.head_epochs if self.head_epochs is not None else (HEAD_EPOCHS_WITH_WEIGHTS if self.weights else 0)
        return min(int(head), int(self.epochs or DEFAULT_EPOCHS))

    @property
    def frozen_batchnorm(self) -> bool:
        return self.batchnorm == "frozen" or (self.batchnorm == "auto" and bool(self.weights))

    @property
    def finetune_learning_rate(self) -> float:
        """The whole network's peak learning rate: lower when it starts from pretrained weights."""
        return self.learning_rate * (self.finetune_lr_scale if self.weights else 1.0)

    def validate(self) -> "TrainOptions":
        from edgecls.train.models import model_spec  # the registry is training's; imported only here

        model_spec(self.model)  # unknown names fail here, listing the registry
        _choice("imbalance", self.imbalance, IMBALANCE_CHOICES)
        _choice("monitor", self.monitor, MONITOR_CHOICES)
        _choice("lr_schedule", self.lr_schedule, SCHEDULE_CHOICES)
        _choice("optimizer", self.optimizer, OPTIMIZER_CHOICES)
        _choice("augment", self.augment, AUGMENT_CHOICES)
        _choice("strategy", self.strategy, STRATEGY_CHOICES)
        _choice("mixed_precision", self.mixed_precision, MIXED_PRECISION_CHOICES)
        _choice("data_format", self.data_format, FORMAT_CHOICES)
        _choice("batchnorm", self.batchnorm, BATCHNORM_CHOICES)
        if self.head_epochs is not None and int(self.head_epochs) < 0:
            raise EdgeclsError(f"`head_epochs` must be at least 0, got {self.head_epochs}", fields="head_epochs")
        if not 0 < self.finetune_lr_scale <= 1:
            raise EdgeclsError(f"`finetune_lr_scale` must be in (0, 1], got {self.finetune_lr_scale}", fields="finetune_lr_scale")
        for field, value, low in (("epochs", self.epochs, 1), ("batch_size", self.batch_size, 1),
                                  ("image_size", self.image_size, 16), ("patience", self.patience, 1)):  # fmt: skip
            if value is not None and int(value) < low:
                raise EdgeclsError(f"`{field}` must be at least {low}, got {value}", fields=field)
        if not self.learning_rate > 0:
            raise EdgeclsError(f"`learning_rate` must be positive, got {self.learning_rate}", fields="learning_rate")
        if not 0 <= self.weight_decay < 1:
            raise EdgeclsError(f"`weight_decay` must be in [0, 1), got {self.weight_decay}", fields="weight_decay")
        if not 0 <= self.warmup_fraction < 1:
            raise EdgeclsError(f"`warmup_fraction` must be in [0, 1), got {self.warmup_fraction}", fields="warmup_fraction")
        if not 0 <= self.class_weight_power <= 4:
            raise EdgeclsError(f"`class_weight_power` must be in [0, 4], got {self.class_weight_power}", fields="class_weight_power")
        if not 0 <= self.label_smoothing < 1:
            raise EdgeclsError(f"`label_smoothing` must be in [0, 1), got {self.label_smoothing}", fields="label_smoothing")
        if not (0 < self.val_fraction < 1 and 0 <= self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1):
            raise EdgeclsError(
                f"split fractions must leave images to train on: `val_fraction` {self.val_fraction}, `test_fraction` {self.test_fraction}",
                fields=("val_fraction", "test_fraction"),
            )
        if self.limit is not None and self.limit < 10:
            raise EdgeclsError(f"`limit` must be at least 10 images, got {self.limit}", fields="limit")
        if not self.worker_timeout > 0:
            raise EdgeclsError(f"`worker_timeout` must be positive, got {self.worker_timeout}", fields="worker_timeout")
        if self.resume and self.force:
            raise EdgeclsError("`resume` continues a run and `force` replaces it: pass one of them", fields=("resume", "force"))
        return self

    def to_config(self) -> dict[str, Any]:
        """The options that define the run, for config.json."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in _RUN_CONTROLS}

    @classmethod
    def from_config(cls, config: dict[str, Any], **overrides: Any) -> "TrainOptions":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in config.items() if k in known}  # tolerate older/newer configs
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _choice(field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise EdgeclsError(f"`{field}` must be one of {', '.join(choices)}; got {value!r}", fields=field)

"""`edgecls train` and `edgecls evaluate`, over `edgecls.train_classifier` and
`edgecls.evaluate_classifier`. TensorFlow is imported inside the commands only, so registering
them keeps `edgecls --help` light (the model names come from a TF-free registry)."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from edgecls.cli.support import cli_message, exit_code, fail
from edgecls.errors import EdgeclsError, Interrupted
from edgecls.train.models import list_models
from edgecls.train.options import (
    AUGMENT_CHOICES,
    BATCHNORM_CHOICES,
    HEAD_EPOCHS_WITH_WEIGHTS,
    DEFAULT_EPOCHS,
    FORMAT_CHOICES,
    IMBALANCE_CHOICES,
    MIXED_PRECISION_CHOICES,
    MONITOR_CHOICES,
    OPTIMIZER_CHOICES,
    SCHEDULE_CHOICES,
    STRATEGY_CHOICES,
    TrainOptions,
)

_DEFAULTS = TrainOptions()


def _choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A Typer choice type from the values TrainOptions accepts (one list, in core/train_options.py)."""
    return Enum(name, {value.replace("-", "_"): value for value in values}, type=str)


Imbalance = _choices("Imbalance", IMBALANCE_CHOICES)
DataFormat = _choices("DataFormat", FORMAT_CHOICES)
Strategy = _choices("Strategy", STRATEGY_CHOICES)
MixedPrecision = _choices("MixedPrecision", MIXED_PRECISION_CHOICES)
Monitor = _choices("Monitor", MONITOR_CHOICES)
Schedule = _choices("Schedule", SCHEDULE_CHOICES)
Optimizer = _choices("Optimizer", OPTIMIZER_CHOICES)
Augment = _choices("Augment", AUGMENT_CHOICES)
BatchNorm = _choices("BatchNorm", BATCHNORM_CHOICES)
SplitName = _choices("SplitName", ("test", "val", "train", "all"))


def train(
    data: Path = typer.Argument(..., help="Dataset: a HAM10000 folder (or its metadata CSV), a folder with one subfolder per class, or an HMNIST CSV.", show_default=False),
    output: Path = typer.Option(..., "--output", "-o", help="Run folder to write: model.keras, config, split, history, metrics, report.", show_default=False),
    model: str = typer.Option(_DEFAULTS.model, "--model", "-m", help=f"Architecture: {', '.join(list_models())}."),
    epochs: Optional[int] = typer.Option(_DEFAULTS.epochs, "--epochs", "-e", min=1, help=f"Most epochs to train (early stopping may end sooner) (default: {DEFAULT_EPOCHS}; with --resume, the run's)."),
    image_size: int = typer.Option(_DEFAULTS.image_size, "--image-size", min=16, help="Square input size in pixels."),
    batch_size: int = typer.Option(_DEFAULTS.batch_size, "--batch-size", "-b", min=1, help="Images per step (global, across devices)."),
    lr: float = typer.Option(_DEFAULTS.learning_rate, "--lr", help="Peak learning rate."),
    optimizer: Optimizer = typer.Option(_DEFAULTS.optimizer, "--optimizer", help="adam, or adamw: Adam with decoupled weight decay (--weight-decay)."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help=f"AdamW's weight decay (with --optimizer adamw only) [default: {_DEFAULTS.weight_decay}]."),
    lr_schedule: Schedule = typer.Option(_DEFAULTS.lr_schedule, "--lr-schedule", help="cosine: 1-epoch warmup then cosine decay; one-cycle: linear warm-up over --warmup-fraction of all steps, then cosine to ~0; plateau: halve when --monitor stalls."),
    warmup_fraction: Optional[float] = typer.Option(None, "--warmup-fraction", help=f"Share of all steps the one-cycle schedule warms up over (with --lr-schedule one-cycle only) [default: {_DEFAULTS.warmup_fraction}]."),
    label_smoothing: float = typer.Option(_DEFAULTS.label_smoothing, "--label-smoothing", help="Cross-entropy targets (1 - e) * one-hot + e / classes; 0 = none."),
    imbalance: Imbalance = typer.Option(_DEFAULTS.imbalance, "--imbalance", help="Class imbalance: softened class weights in the loss, balanced sampling, or none."),
    class_weight_power: float = typer.Option(_DEFAULTS.class_weight_power, "--class-weight-power", min=0, help="With --imbalance class-weights: the balanced (inverse-frequency) weights raised to this power; 1 = fully balanced, 0.5 = softened, 0 = none."),
    augment: Augment = typer.Option(_DEFAULTS.augment, "--augment", help="Training augmentation. standard: flips, quarter turns, +-18 degree rotations, mild colour jitter; strong: flips, any rotation, scale 0.8-1.25, +-10% shifts (reflected borders), brightness/contrast/saturation +-20%; none."),
    no_augment: bool = typer.Option(False, "--no-augment", help="Same as --augment none (kept for older scripts)."),
    data_format: DataFormat = typer.Option(DataFormat(_DEFAULTS.data_format), "--format", help="Dataset layout; auto detects it."),
    monitor: Monitor = typer.Option(_DEFAULTS.monitor, "--monitor", help="Validation metric (inference mode) that picks the best epoch and stops early."),
    patience: int = typer.Option(_DEFAULTS.patience, "--patience", min=1, help="Epochs without improvement before stopping."),
    val_fraction: float = typer.Option(_DEFAULTS.val_fraction, "--val-fraction", help="Share of images (by lesion/duplicate group) for validation."),
    test_fraction: float = typer.Option(_DEFAULTS.test_fraction, "--test-fraction", help="Share of images held out for the final test."),
    limit: Optional[int] = typer.Option(_DEFAULTS.limit, "--limit", min=10, help="Use a stratified subset of about this many images (quick trials)."),
    weights: Optional[str] = typer.Option(_DEFAULTS.weights, "--weights", help="Start from 'imagenet' (efficientnet-lite0: offline, from the train extra; mobilenetv2*: downloaded) or a weights file of the same architecture (.weights.h5)."),
    head_epochs: Optional[int] = typer.Option(_DEFAULTS.head_epochs, "--head-epochs", min=0, help=f"Epochs training only the classifier head on the frozen backbone first [default: {HEAD_EPOCHS_WITH_WEIGHTS} with --weights, else 0]."),
    finetune_lr_scale: float = typer.Option(_DEFAULTS.finetune_lr_scale, "--finetune-lr-scale", help="With --weights: after the head warm-up the whole network trains at --lr times this."),
    batchnorm: BatchNorm = typer.Option(_DEFAULTS.batchnorm, "--batchnorm", help="BatchNorm while fine-tuning: frozen keeps the pretrained statistics and scales, train updates them; auto = frozen with --weights."),
    seed: int = typer.Option(_DEFAULTS.seed, "--seed", help="Seed for the split, shuffling, augmentation and initial weights."),
    strategy: Strategy = typer.Option(_DEFAULTS.strategy, "--strategy", help="mirrored: data-parallel over all local GPUs; multi-worker: over several machines, the cluster from TF_CONFIG (docs/multi-machine.md)."),
    worker_timeout: float = typer.Option(_DEFAULTS.worker_timeout, "--worker-timeout", min=1, help="multi-worker: seconds to wait for the other workers (joining, and each exchange) before failing."),
    mixed_precision: MixedPrecision = typer.Option(_DEFAULTS.mixed_precision, "--mixed-precision", help="float16 compute; auto = on when a GPU is present."),
    resume: bool = typer.Option(_DEFAULTS.resume, "--resume", help="Continue an interrupted (or finished, with more --epochs) run in OUTPUT."),
    force: bool = typer.Option(_DEFAULTS.force, "--force", help="Replace the run already in OUTPUT."),
) -> None:
    """Train a classifier: split the dataset, train, keep the best epoch, evaluate on val and test."""
    from edgecls import train_classifier
    from edgecls.train.cluster import read_tf_config

    if no_augment and augment != Augment(_DEFAULTS.augment):
        raise EdgeclsError(f"--no-augment and --augment {augment.value} disagree: pass one of them")
    if weight_decay is not None and optimizer != Optimizer.adamw:
        raise EdgeclsError("--weight-decay applies to --optimizer adamw only (Adam has no decoupled weight decay)")
    if warmup_fraction is not None and lr_schedule != Schedule.one_cycle:
        raise EdgeclsError("--warmup-fraction applies to --lr-schedule one-cycle only (cosine warms up for one epoch)")
    options = TrainOptions(
        model=model, image_size=image_size, epochs=epochs, batch_size=batch_size,
        learning_rate=lr, optimizer=optimizer.value, lr_schedule=lr_schedule.value,
        label_smoothing=label_smoothing, imbalance=imbalance.value, class_weight_power=class_weight_power, augment="none" if no_augment else augment.value,
        data_format=data_format.value, monitor=monitor.value, patience=patience, val_fraction=val_fraction,
        test_fraction=test_fraction, limit=limit, weights=weights, head_epochs=head_epochs,
        finetune_lr_scale=finetune_lr_scale, batchnorm=batchnorm.value, seed=seed, strategy=strategy.value,
        mixed_precision=mixed_precision.value, resume=resume, force=force, worker_timeout=worker_timeout,
        verbose=1 if sys.stdout.isatty() else 2,
        **({} if weight_decay is None else {"weight_decay": weight_decay}),
        **({} if warmup_fraction is None else {"warmup_fraction": warmup_fraction}),
    )  # fmt: skip
    # TF_CONFIG first: a missing or malformed one is refused before anything else happens.
    worker = read_tf_config() if strategy == Strategy.multi_worker else None
    try:
        if worker is not None:
            _train_quietly(train_classifier, data, options, output)
        else:
            train_classifier(data, options, output)
    except KeyboardInterrupt:
        if strategy == Strategy.multi_worker:
            raise Interrupted("interrupted; start every worker again with the same command to continue") from None
        raise Interrupted(f"interrupted; continue with: edgecls train {data} --output {output} --resume") from None
    if worker is not None and not worker.is_chief:
        typer.echo(f"done; the chief writes the run folder {output}")
        return
    _list_files(output)


def _train_quietly(train_classifier, data, options, output) -> None:
    """A multi-worker run with TensorFlow's distributed runtime kept off stderr: when a peer is
    lost it writes pages of C++ lines, during training and again while the process ends, and
    edgecls says what happened in one line."""
    from edgecls.core.native_stderr import quiet_native_stderr
    from edgecls.log import enable_logging
    from edgecls.train import cluster

    try:
        with quiet_native_stderr():
            enable_logging("INFO")  # onto the stderr that quiet_native_stderr keeps for Python
            train_classifier(data, options, output)
    except EdgeclsError as exc:
        enable_logging("INFO")
        if not cluster.runtime_started():
            raise
        # The one line first, then nothing more from the runtime's shutdown on this stderr.
        done = fail(cli_message(exc), exit_code(exc))
        try:
            sys.stderr.flush()
            os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
        except (OSError, ValueError):
            pass
        raise done from None
    finally:
        enable_logging("INFO")


def evaluate(
    model: Path = typer.Argument(..., help="A .keras or .tflite model, or a run folder (its model.keras).", show_default=False),
    data: Optional[Path] = typer.Argument(None, help="Dataset to evaluate on (default: the run's dataset).", show_default=False),
    run: Optional[Path] = typer.Option(None, "--run", help="Run folder whose split.csv defines --split (a run folder MODEL is its own run)."),
    split: Optional[SplitName] = typer.Option(None, "--split", help="Which images: test, val, train or all (default: test with a run, else all)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Report folder (default: RUN/evaluate/<model>-<split>)."),
    data_format: DataFormat = typer.Option(DataFormat.auto, "--format", help="Dataset layout; auto detects it."),
    force: bool = typer.Option(False, "--force", help="Replace an earlier report in the output folder."),
    tta: bool = typer.Option(False, "--tta", help="A .tflite model averaged over flips, as `classify --tta` runs it (4x the invokes)."),
    custom_objects: Optional[Path] = typer.Option(
        None, "--custom-objects", help="A .py file defining a .keras model's custom layers. This runs that code: pass only your own, or code you trust.",
        show_default=False,
    ),
) -> None:
    """Evaluate a Keras or TFLite model on a dataset: metrics.json (with calibration error, accuracy
    against coverage, malignant-vs-benign sensitivity and specificity), plots, report.md."""
    from edgecls import evaluate_classifier

    result = evaluate_classifier(model, data, run=run, split=split.value if split else None, output=output,
                                 data_format=data_format.value, force=force, tta=tta, custom_objects=custom_objects)  # fmt: skip
    typer.echo(f"wrote {len(result.files)} files to {result.output_dir}: " + ", ".join(p.name for p in result.files))


def _list_files(run_dir: Path) -> None:
    typer.echo(f"run folder {run_dir}:")
    for path in sorted(Path(run_dir).iterdir()):
        if path.is_dir():
            count = sum(1 for p in path.rglob("*") if p.is_file())
            typer.echo(f"  {path.name}/  ({count} files)")
        else:
            typer.echo(f"  {path.name}  {path.stat().st_size / 1024:.1f} KB")

"""Train a registry model on a dataset into a run folder: `train_model(options, data, run_dir)`.

The Python API behind `edgecls train`, also used by `edgecls demo`. Steps: load the dataset,
split it (grouped, stratified; reused on --resume), stream it through tf.data, fit with Adam
or AdamW and a cosine or one-cycle schedule, keep the best epoch by a validation metric
measured in inference mode, save it as model.keras, then evaluate it on the validation and
test splits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from edgecls.core import runs
from edgecls.core.pipeline import class_weights
from edgecls.errors import EdgeclsError, first_line
from edgecls.files import atomic_path
from edgecls.log import get_logger
from edgecls.train.options import DEFAULT_EPOCHS, TrainOptions
from edgecls.train.run import prepare_run_dir, run_config, write_run_config

logger = get_logger("train")


def train_model(
    options: TrainOptions,
    data_path: str | Path,
    run_dir: str | Path,
    extra_callbacks: Iterable = (),
) -> runs.Run:
    """Train, save and evaluate; return the finished `Run`.

    With options.resume and a run already in `run_dir`, the saved options and split are used
    (only `epochs` and `verbose` come from `options`), and fitting continues from the last
    completed epoch. `extra_callbacks` are Keras callbacks added to fit (tests, notebooks).
    Progress goes to the `edgecls.train` logger; Keras prints its own epoch lines (`options.verbose`).
    """
    from edgecls.data.datasets import load_dataset
    from edgecls.data.split import load_split, make_split, save_split, stratified_subset
    from edgecls.train.evaluate import evaluate_run

    options.validate()
    run_dir = Path(run_dir)
    if options.strategy == "multi-worker":
        return _train_multi_worker(options, data_path, run_dir, list(extra_callbacks))
    # Check the data before --force clears an existing run: bad data must not cost the old run.
    dataset = None if options.resume else load_dataset(data_path, options.data_format)
    resuming = prepare_run_dir(run_dir, force=options.force, resume=options.resume)
    if resuming:
        saved = runs.load_run(run_dir).options
        if saved.strategy == "multi-worker":
            raise EdgeclsError(
                f"{run_dir} was trained on several workers: start its workers again with the same command "
                "(TF_CONFIG, `strategy` multi-worker) to continue it, rather than `resume` on one machine",
                fields=("strategy", "resume"),
            )
        options = TrainOptions.from_config(saved.to_config(), epochs=options.epochs, verbose=options.verbose, resume=True)
        logger.info(f"resuming {run_dir}: {options.model}, {options.image_size}px, up to epoch {options.epochs}")
    elif options.resume:
        logger.info(f"nothing to resume in {run_dir}: starting a new run")
    if options.epochs is None:  # a new run (a resumed one took its own above)
        options = dataclasses.replace(options, epochs=DEFAULT_EPOCHS)

    if dataset is None:
        dataset = load_dataset(data_path, options.data_format)
    logger.info(f"dataset: {dataset.summary()}")
    if options.limit:
        dataset = stratified_subset(dataset, options.limit, options.seed)
        logger.info(f"using a stratified subset of {len(dataset)} images (--limit {options.limit})")
    if resuming:
        split = load_split(run_dir, dataset)
    else:
        split = make_split(dataset, options.val_fraction, options.test_fraction, options.seed)
        save_split(run_dir, dataset, split)
    write_run_config(run_dir, data_path, dataset, options)
    logger.info(split_summary(dataset, split))

    model = fit_model(options, dataset, split, run_dir, list(extra_callbacks))
    run = runs.load_run(run_dir, data_override=str(data_path))
    run.__dict__.update(dataset=dataset, model=model)  # both in memory already: skip reloading them
    evaluate_run(run, ("val", "test"), run_dir)
    return run


def _train_multi_worker(options: TrainOptions, data_path, run_dir: Path, extra_callbacks: list) -> runs.Run:
    """`train_model` on one worker of several (TF_CONFIG). Every worker runs this with the same
    command; they agree on the dataset, the options and whether an unfinished run is continued
    before training, and only the chief writes the run folder: the others write into a temporary
    folder that is removed at the end."""
    import shutil
    import tempfile

    from edgecls.core.tf_env import import_tf
    from edgecls.data.datasets import load_dataset
    from edgecls.data.split import load_split, make_split, save_split, stratified_subset
    from edgecls.train import cluster
    from edgecls.train.evaluate import evaluate_run
    from edgecls.train.run import prepare_multi_worker_run_dir

    if options.resume:
        raise EdgeclsError(
            "`resume` continues a run on one machine; a multi-worker job continues by itself when all its "
            "workers are started again with the same command",
            fields="resume",
        )
    worker = cluster.read_tf_config()
    if options.epochs is None:
        options = dataclasses.replace(options, epochs=DEFAULT_EPOCHS)
    if options.batch_size % worker.count:
        raise EdgeclsError(
            f"`batch_size` {options.batch_size} (images per step over all workers) does not split evenly "
            f"over {worker.count} workers",
            fields="batch_size",
        )
    dataset = load_dataset(data_path, options.data_format)
    logger.info(f"dataset: {dataset.summary()}")
    if options.limit:
        dataset = stratified_subset(dataset, options.limit, options.seed)
        logger.info(f"using a stratified subset of {len(dataset)} images (--limit {options.limit})")
    tf, _ = import_tf()
    strategy = cluster.connect(tf, worker, options.worker_timeout)
    if options.batch_size % strategy.num_replicas_in_sync:  # a worker's GPUs are replicas too
        raise EdgeclsError(
            f"`batch_size` {options.batch_size} does not split evenly over {strategy.num_replicas_in_sync} replicas "
            f"({worker.count} workers and their GPUs)",
            fields="batch_size",
        )

    # The chief checks the run folder; every worker then learns what the others found.
    problem, continuing = "", False
    if worker.is_chief:
        try:
            continuing = prepare_multi_worker_run_dir(run_dir, options)
        except EdgeclsError as exc:
            problem = str(exc)
    items = dataset.items
    data_print = cluster.fingerprint(list(dataset.labels), items["key"].tolist(), items["label"].tolist())
    options_print = cluster.fingerprint(options.to_config())
    rows = cluster.gather_rows(tf, strategy, [0 if problem else 1, int(continuing), data_print, options_print, len(items)])
    if problem:
        raise EdgeclsError(problem)
    if not rows[:, 0].all():
        raise EdgeclsError("the chief stopped before training (its output says why); nothing was trained")
    if len(set(rows[:, 2])) > 1:
        counts = ", ".join(f"worker {rank}: {int(n)} images" for rank, n in enumerate(rows[:, 4]))
        raise EdgeclsError(
            f"the dataset differs between workers ({counts}; file lists differ): every worker needs the same "
            f"dataset, on shared storage or an identical copy (this worker reads {os.path.abspath(data_path)})"
        )
    if len(set(rows[:, 3])) > 1:
        raise EdgeclsError("the training options differ between workers: start every worker with the same command")
    continuing = bool(rows[0, 1])

    split = make_split(dataset, options.val_fraction, options.test_fraction, options.seed)
    work_dir = run_dir
    if worker.is_chief:
        if continuing:
            split = load_split(run_dir, dataset)
            logger.info(f"continuing the unfinished multi-worker run in {run_dir}")
        else:
            save_split(run_dir, dataset, split)
        config = write_run_config(run_dir, data_path, dataset, options)
        logger.info(split_summary(dataset, split))
    else:
        config = run_config(data_path, dataset, options)
        # Named after the run folder, so a restart after a crash (SIGKILL runs no cleanup)
        # removes what the lost process left.
        work_dir = Path(tempfile.gettempdir()) / f"edgecls-{worker.task_type}{worker.task_index}-{cluster.fingerprint(str(run_dir.resolve())):x}"
        shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True)
    try:
        history = read_history(run_dir) if continuing else None
        model = fit_model(options, dataset, split, work_dir, extra_callbacks, strategy=strategy,
                          history=history, backup_dir=run_dir / runs.BACKUP_DIR, worker=worker)  # fmt: skip
    finally:
        if work_dir != run_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    if not worker.is_chief:
        logger.info(f"{worker.name} done; the chief writes the run folder {run_dir}")
        return runs.Run(run_dir, config, str(data_path))
    run = runs.load_run(run_dir, data_override=str(data_path))
    run.__dict__.update(dataset=dataset, model=model)
    evaluate_run(run, ("val", "test"), run_dir)
    return run


def read_history(run_dir: Path) -> pd.DataFrame | None:
    path = run_dir / runs.HISTORY_FILE
    return pd.read_csv(path) if path.is_file() else None


def split_summary(dataset, split: pd.Series) -> str:
    table = pd.crosstab(dataset.items["label"], split.to_numpy()).reindex(columns=["train", "val", "test"], fill_value=0)
    sizes = ", ".join(f"{name} {int(table[name].sum())}" for name in table.columns)
    lines = [f"split: {sizes} images (grouped by {'lesion' if dataset.format == 'ham10000' else 'duplicate set'})"]
    width = max(len(str(label)) for label in table.index)
    lines.append(f"  {'':<{width}}  {'train':>7} {'val':>7} {'test':>7}")
    lines += [f"  {label:<{width}}  " + " ".join(f"{int(n):>7}" for n in row) for label, row in table.iterrows()]
    return "\n".join(lines)


def _have_tensorboard() -> bool:
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        logger.info("note: TensorBoard is not installed (pip install tensorboard): no logs/ written")
        return False
    return True


@contextlib.contextmanager
def precision_policy(keras, tf, setting: str):
    """mixed_float16 on a GPU ("auto") or when asked ("on"); always float32 again afterwards."""
    use = setting == "on" or (setting == "auto" and bool(tf.config.list_physical_devices("GPU")))
    keras.mixed_precision.set_global_policy("mixed_float16" if use else "float32")
    try:
        yield use
    finally:
        keras.mixed_precision.set_global_policy("float32")


def fit_model(options: TrainOptions, dataset, split: pd.Series, run_dir: Path, extra_callbacks: list, *,
              strategy=None, history: pd.DataFrame | None = None, backup_dir: Path | None = None, worker=None):  # fmt: skip
    """Fit, then save the best epoch's weights as model.keras (float32); return that model.

    Multi-worker (`strategy` and `worker` from `cluster.connect`): `run_dir` is where this worker
    writes (the chief's run folder, or another worker's temporary folder), `backup_dir` the run
    folder's shared backup, `history` the run's epochs so far when continuing."""
    from edgecls.core.pipeline import evaluation_dataset, image_sources, training_dataset
    from edgecls.core.tf_env import import_tf
    from edgecls.train import callbacks as cb
    from edgecls.train.models import create_model

    tf, keras = import_tf()
    keras.utils.set_random_seed(options.seed)
    labels = list(dataset.labels)
    items = dataset.items
    sources = {name: image_sources(dataset, items["key"][split == name], options.size) for name in ("train", "val")}
    targets = {name: items["label_index"][split == name].to_numpy() for name in ("train", "val")}
    if not len(targets["val"]):
        raise EdgeclsError("the validation split is empty: training needs it to pick the best epoch (`val_fraction`)", fields="val_fraction")
    cache = "" if options.cache_file is None else options.cache_file
    if worker is None:
        train_data, steps = training_dataset(
            tf, sources["train"], targets["train"], options.size, options.batch_size, len(labels), options.seed,
            augment=options.augment, balanced=options.imbalance == "balanced-sampling",
            cache=cache + ".train" if cache else cache,
        )  # fmt: skip
    val_data = evaluation_dataset(tf, sources["val"], targets["val"], options.size, options.batch_size,
                                  cache=cache + ".val" if cache else cache)  # fmt: skip
    weights = None
    if options.imbalance == "class-weights":
        weights = class_weights(targets["train"], len(labels), options.class_weight_power)
    if weights:
        logger.info("class weights: " + ", ".join(f"{labels[c]} {w:.2f}" for c, w in weights.items()))
    fit_weights = weights
    if worker is not None:
        from edgecls.train.cluster import sharded_training_data

        train_data, steps = sharded_training_data(keras, options, sources["train"], targets["train"], len(labels),
                                                  weights, cache)  # fmt: skip
        fit_weights = None  # in the shards' (image, label, weight) already: fit cannot map a per-worker dataset

    if strategy is None:
        strategy = tf.distribute.MirroredStrategy() if options.strategy == "mirrored" else tf.distribute.get_strategy()
        history = runs.load_run(run_dir).history if options.resume else None
    best, best_epoch = cb.best_so_far(history, options.monitor)
    best_path = run_dir / runs.BEST_WEIGHTS
    head_epochs = options.warmup_head_epochs
    done = 0 if history is None or history.empty else int(history["epoch"].max()) + 1
    warmup_path = run_dir / runs.HEAD_WARMUP_WEIGHTS
    with precision_policy(keras, tf, options.mixed_precision) as mixed:
        with strategy.scope():
            model = create_model(options.model, (*options.size, 3), len(labels), weights=options.weights)
        extras = (", mixed precision" if mixed else "") + (
            f", {strategy.num_replicas_in_sync} replicas" if options.strategy != "default" else "")  # fmt: skip
        logger.info(f"model: {options.model}, {model.count_params():,} parameters, "
             f"input {options.image_size}x{options.image_size}x3{extras}")  # fmt: skip
        saver = cb.BestWeights(best_path, options.monitor, best, best_epoch)
        callbacks = _callbacks(tf, keras, options, sources["train"], targets["train"], val_data, targets["val"], labels,
                               saver, history, run_dir) + list(extra_callbacks)  # fmt: skip
        if worker is not None:
            callbacks.insert(0, cb.WorkersAgree(strategy, worker, history, options.monitor))
        started = time.perf_counter()
        if head_epochs and done < head_epochs:
            # Phase 1: the new head learns on the frozen pretrained features, so its first, random
            # gradients do not wreck them. An interrupted warm-up is run again from its start.
            trainable = freeze_backbone(model)
            logger.info(f"head warm-up: {head_epochs} epoch(s), {trainable:,} trainable parameters (backbone frozen)")
            with strategy.scope():
                model.compile(optimizer=make_optimizer(keras, options, options.learning_rate),
                              loss=make_loss(keras, options), metrics=["accuracy"])  # fmt: skip
            warmup_callbacks = [c for c in callbacks if not isinstance(c, (keras.callbacks.EarlyStopping, keras.callbacks.ReduceLROnPlateau))]
            _fit(tf, model, train_data, head_epochs, 0, steps, fit_weights, warmup_callbacks, options, worker)
            with atomic_path(warmup_path, suffix=".weights.h5") as tmp:
                model.save_weights(tmp)
        elif head_epochs and warmup_path.is_file():
            model.load_weights(warmup_path)  # resuming after the warm-up (a backup, if any, overrides it)
        if options.epochs > head_epochs:
            # Phase 2 (the only one without pretrained weights): the whole network, at a lower peak
            # learning rate when it starts from pretrained weights; BatchNorm as options say.
            frozen_bn = unfreeze(model, keep_batchnorm_frozen=options.frozen_batchnorm)
            if options.weights:
                logger.info(f"fine-tuning the whole network at peak learning rate {options.finetune_learning_rate:g}"
                            + (f", {frozen_bn} BatchNorm layers frozen" if frozen_bn else ", BatchNorm trained"))  # fmt: skip
            remaining = dataclasses.replace(options, epochs=options.epochs - head_epochs, learning_rate=options.finetune_learning_rate)
            with strategy.scope():
                model.compile(optimizer=make_optimizer(keras, options, learning_rate_schedule(keras, remaining, steps)),
                              loss=make_loss(keras, options), metrics=["accuracy"])  # fmt: skip
            # Last, so a backup is only taken once the epoch's history and best weights are on disk.
            # Every worker reads the chief's backup; the others write theirs into a folder Keras removes.
            backup_path = backup_dir if backup_dir is not None else run_dir / runs.BACKUP_DIR
            backup = keras.callbacks.BackupAndRestore(str(backup_path), delete_checkpoint=False)
            _fit(tf, model, train_data, options.epochs, head_epochs, steps, fit_weights, callbacks + [backup], options, worker)
        logger.info(f"training took {time.perf_counter() - started:.0f} s")
    # Saved as a float32 model without optimizer or distribution strategy: what convert wants.
    final = create_model(options.model, (*options.size, 3), len(labels))
    if best_path.is_file():
        final.load_weights(best_path)
        if saver.best is not None:
            logger.info(f"best epoch: {saver.best_epoch + 1} ({options.monitor} {saver.best:.4f})")
    else:
        final.set_weights(model.get_weights())
        logger.info(f"no epoch had a finite {options.monitor}; saving the last weights")
    runs.save_keras_model(final, run_dir / runs.MODEL_FILE)
    return final


def _fit(tf, model, data, epochs: int, initial_epoch: int, steps: int, class_weight, callbacks, options, worker=None) -> None:
    try:
        model.fit(data, epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=steps, class_weight=class_weight,
                  callbacks=callbacks, verbose=options.verbose)  # fmt: skip
    except tf.errors.OpError as exc:
        if worker is not None:
            from edgecls.train.cluster import lost_worker_error

            raise lost_worker_error(tf, exc, worker) from None
        raise EdgeclsError(f"training failed: {first_line(exc, 300)}") from None


# The classifier head every registry model ends with (models._classifier_head).
HEAD_LAYERS = ("head_dropout", "classifier", "probabilities")


def freeze_backbone(model) -> int:
    """Freeze every layer but the classifier head; return the trainable parameter count."""
    for layer in model.layers:
        layer.trainable = layer.name in HEAD_LAYERS
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def unfreeze(model, keep_batchnorm_frozen: bool) -> int:
    """Make every layer trainable, BatchNorm too unless `keep_batchnorm_frozen`: a frozen
    tf_keras BatchNorm runs in inference mode (its moving statistics, never batch ones) and
    keeps its scale and offset. Return how many BatchNorm layers stay frozen."""
    from edgecls.core.tf_env import import_tf

    _, keras = import_tf()
    frozen = 0
    for layer in model.layers:
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = not (is_bn and keep_batchnorm_frozen)
        frozen += is_bn and keep_batchnorm_frozen
    return frozen


def _callbacks(tf, keras, options, train_sources, y_train, val_data, y_val, labels, saver, history,
               run_dir: Path) -> list:  # fmt: skip
    """In this order: inference-mode statistics and metrics first, so that everything after them
    (LR plateau, best checkpoint, early stopping, history, TensorBoard) sees the val_* values."""
    from edgecls.core.pipeline import evaluation_dataset
    from edgecls.train import callbacks as cb

    # A fixed random sample of training images, unaugmented, for the BatchNorm statistics.
    sample = np.random.default_rng(options.seed).permutation(len(y_train))[: 16 * options.batch_size]
    stats_sources = [train_sources[i] for i in sample]
    stats_data = evaluation_dataset(tf, stats_sources, y_train[sample], options.size, options.batch_size)
    callbacks = [cb.PreciseBatchNorm(stats_data), cb.ValidationMetrics(val_data, y_val, labels)]
    mode = "min" if options.monitor.endswith("loss") else "max"
    if options.lr_schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            options.monitor, mode=mode, factor=0.5, patience=max(1, options.patience // 3),
            min_lr=options.learning_rate / 100))  # fmt: skip
    callbacks += [saver, cb.ResumableEarlyStopping(options.monitor, mode=mode, patience=options.patience, verbose=1, history=history),
                  cb.HistoryWriter(run_dir / runs.HISTORY_FILE, history)]  # fmt: skip
    if options.tensorboard and _have_tensorboard():
        callbacks.append(keras.callbacks.TensorBoard(run_dir / runs.LOGS_DIR, write_graph=False, profile_batch=0))
    return callbacks


def make_optimizer(keras, options: TrainOptions, learning_rate):
    """Adam, or AdamW with decoupled weight decay on every weight (as PyTorch's AdamW does)."""
    if options.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=options.weight_decay)
    return keras.optimizers.Adam(learning_rate)


def make_loss(keras, options: TrainOptions):
    """Cross-entropy on integer labels; label-smoothed when asked (works with class weights)."""
    if options.label_smoothing > 0:
        from edgecls.train.recipe import SmoothedSparseCrossentropy

        return SmoothedSparseCrossentropy(options.label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy()


def learning_rate_schedule(keras, options: TrainOptions, steps_per_epoch: int):
    """cosine: cosine decay to 1% after a linear warmup (helps Adam and BatchNorm settle);
    one-cycle: warm-up over a fraction of all steps, then cosine to ~0; plateau: constant."""
    if options.lr_schedule == "plateau":
        return options.learning_rate
    if options.lr_schedule == "one-cycle":
        from edgecls.train.recipe import OneCycle

        total = options.epochs * steps_per_epoch
        return OneCycle(options.learning_rate, total, round(options.warmup_fraction * total))
    total = options.epochs * steps_per_epoch
    warmup = min(options.warmup_epochs * steps_per_epoch, total // 2)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=options.learning_rate / 10 if warmup else options.learning_rate,
        decay_steps=max(1, total - warmup), alpha=0.01,
        warmup_target=options.learning_rate if warmup else None, warmup_steps=warmup,
    )  # fmt: skip


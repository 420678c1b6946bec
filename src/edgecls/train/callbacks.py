"""Keras callbacks for `edgecls train`. Imports TensorFlow: import this module inside functions only.

Validation is measured by `ValidationMetrics` (model.predict: inference mode, BatchNorm moving
statistics) rather than by fit's validation_data, so the checkpoint and early stopping judge
the model that will be deployed, with balanced accuracy and macro AUC, in one pass.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from edgecls.core.metrics import validation_logs
from edgecls.core.tf_env import import_tf
from edgecls.files import atomic_path, write_text_atomic

tf, keras = import_tf()


def current_learning_rate(optimizer) -> float:
    rate = optimizer.learning_rate
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        rate = rate(optimizer.iterations)
    return float(keras.backend.get_value(rate))


class PreciseBatchNorm(keras.callbacks.Callback):
    """Recompute BatchNorm moving statistics exactly at the end of every epoch ("precise BN",
    Wu & Johnson 2021).

    Moving averages lag the weights: early on they still hold their initial variance of 1 while
    a depthwise layer's true variance is ~0.005, so a model at 1.0 training accuracy predicted one
    class for everything in inference mode. Training uses batch statistics, so replacing the
    moving ones changes only inference. Cost: a forward pass over `batches` unaugmented batches.
    """

    def __init__(self, data, batches: int = 16):
        super().__init__()
        self.data, self.batches = data, batches
        self.layers, self.moments = [], None

    def on_train_begin(self, logs=None):
        # A frozen BatchNorm keeps its (pretrained) statistics: only trainable ones are recomputed.
        self.layers = [l for l in self.model.layers if isinstance(l, keras.layers.BatchNormalization) and l.trainable]
        if not self.layers:
            return
        probe = keras.Model(self.model.inputs, [layer.input for layer in self.layers])

        @tf.function
        def moments(images):
            features = probe(images, training=True)  # upstream BN on batch statistics, as in training
            features = features if isinstance(features, (list, tuple)) else [features]
            out = []
            for f in features:
                mean, var = tf.nn.moments(tf.cast(f, tf.float32), axes=list(range(len(f.shape) - 1)))
                out.append((mean, var))
            return out

        self.moments = moments

    def on_epoch_end(self, epoch, logs=None):
        if not self.layers:
            return
        saved = [layer.get_weights() for layer in self.layers]
        means, variances = [[] for _ in self.layers], [[] for _ in self.layers]
        for images, _ in self.data.take(self.batches):
            for i, (mean, var) in enumerate(self.moments(images)):
                means[i].append(mean.numpy())
                variances[i].append(var.numpy())
        for layer, weights, m, v in zip(self.layers, saved, means, variances):
            m, v = np.stack(m), np.stack(v)
            # Population variance = mean within-batch variance + variance of the batch means.
            gamma_beta = weights[:-2]
            layer.set_weights([*gamma_beta, m.mean(axis=0), v.mean(axis=0) + m.var(axis=0)])


class ValidationMetrics(keras.callbacks.Callback):
    """Adds val_loss, val_accuracy, val_balanced_accuracy, val_auc and learning_rate to the logs.

    Listed first, so every later callback (checkpoint, early stopping, CSV, TensorBoard) sees them.
    """

    def __init__(self, val_data, y_val: np.ndarray, labels: list[str]):
        super().__init__()
        self.val_data, self.y_val, self.labels = val_data, np.asarray(y_val), labels

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs.update(validation_logs(self.y_val, self.model.predict(self.val_data, verbose=0), self.labels))
        logs["learning_rate"] = current_learning_rate(self.model.optimizer)


class BestWeights(keras.callbacks.Callback):
    """Keep the weights of the best epoch by `monitor`, written atomically (checkpoints/best.weights.h5)."""

    def __init__(self, path: Path, monitor: str, best: float | None = None, best_epoch: int | None = None):
        super().__init__()
        self.path, self.monitor = Path(path), monitor
        self.sign = -1.0 if monitor.endswith("loss") else 1.0  # compare as "higher is better"
        self.best, self.best_epoch = best, best_epoch

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not np.isfinite(value):
            return
        if self.best is None or self.sign * value > self.sign * self.best:
            self.best, self.best_epoch = float(value), epoch
            with atomic_path(self.path, suffix=".weights.h5") as tmp:
                self.model.save_weights(tmp)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping that, on --resume, counts patience from the best epoch of the run so far,
    as the uninterrupted run would have, rather than starting the count again at zero."""

    def __init__(self, *args, history: pd.DataFrame | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.history_so_far = history
        self.first_epoch = True

    def on_epoch_begin(self, epoch, logs=None):
        if self.first_epoch and self.history_so_far is not None:
            done = self.history_so_far[self.history_so_far["epoch"] < epoch]  # a replayed epoch does not count
            best, best_epoch = best_so_far(done, self.monitor)
            if best is not None:
                self.best, self.best_epoch = best, best_epoch
                self.wait = epoch - 1 - best_epoch  # epochs since the best, none of them better
        self.first_epoch = False


class HistoryWriter(keras.callbacks.Callback):
    """history.csv rewritten atomically after every epoch (CSVLogger appends in place, so an
    interrupted run could leave a torn last line); on resume the earlier epochs are kept."""

    def __init__(self, path: Path, previous: pd.DataFrame | None = None):
        super().__init__()
        self.path = Path(path)
        self.rows = [] if previous is None else previous.to_dict("records")
        self.started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.rows = [row for row in self.rows if row.get("epoch", -1) < epoch]  # a replayed epoch replaces its row
        seconds = round(time.perf_counter() - self.started, 2)
        # "lr" (ReduceLROnPlateau's) repeats ValidationMetrics' learning_rate.
        values = {k: float(v) for k, v in (logs or {}).items() if k != "lr"}
        self.rows.append({"epoch": epoch, **values, "seconds": seconds})
        write_text_atomic(self.path, pd.DataFrame(self.rows).to_csv(index=False, lineterminator="\n"))


def best_so_far(history: pd.DataFrame | None, monitor: str) -> tuple[float | None, int | None]:
    """The best value of `monitor` in an earlier part of a resumed run, and its epoch."""
    if history is None or monitor not in history or history[monitor].dropna().empty:
        return None, None
    values = history[monitor].astype(float)
    row = values.idxmin() if monitor.endswith("loss") else values.idxmax()
    return float(values[row]), int(history["epoch"][row])


class WorkersAgree(keras.callbacks.Callback):
    """Multi-worker: before the first epoch of this start, every worker must have restored the same
    epoch and hold the same history, or their epoch-end decisions (best epoch, early stopping)
    would differ and one would wait for the others forever. The chief then says where training
    continues from. Listed first."""

    def __init__(self, strategy, worker, history: pd.DataFrame | None, monitor: str):
        super().__init__()
        self.strategy, self.worker, self.history, self.monitor = strategy, worker, history, monitor
        self.checked = False

    def on_epoch_begin(self, epoch, logs=None):
        if self.checked:
            return
        self.checked = True
        from edgecls.errors import EdgeclsError
        from edgecls.log import get_logger
        from edgecls.train.cluster import gather_rows

        done = 0 if self.history is None else int((self.history["epoch"] < epoch).sum())
        best, _ = best_so_far(None if self.history is None else self.history[self.history["epoch"] < epoch], self.monitor)
        rows = gather_rows(tf, self.strategy, [epoch, done, -1.0 if best is None else best])
        if len({tuple(row) for row in rows.tolist()}) > 1:
            starts = ", ".join(f"worker {rank}: epoch {int(row[0])}" for rank, row in enumerate(rows))
            raise EdgeclsError(
                f"the workers restored different states ({starts}): the run folder (--output) must be on storage "
                "every worker shares"
            )
        if epoch and self.worker.is_chief:
            get_logger("train").info(f"resuming from epoch {epoch}: {epoch} completed epoch(s) restored from the backup")

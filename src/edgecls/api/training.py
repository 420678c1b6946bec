"""Training for the Python API: `train_classifier(data, options, output)` -> `TrainedRun`.

    run = edgecls.train_classifier("HAM10000/", edgecls.TrainOptions(model="edge-cnn", epochs=30), output="runs/ham")
    run.metrics_table       # accuracy, balanced accuracy, macro AUC and F1 on val and test (pandas)
    run.history             # per-epoch metrics (pandas)
    run.model               # the best epoch's Keras model (tf_keras)
    run = edgecls.load_run("runs/ham")   # a run trained earlier, by the API or `edgecls train`

`edgecls train` calls `train_classifier` (which calls `edgecls.train.trainer.train_model`), so a run
trained here is the run the command line would have written (same split, recipe, files).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from edgecls.api.options import with_overrides
from edgecls.core import runs
from edgecls.errors import EdgeclsError
from edgecls.log import get_logger
from edgecls.train.options import TrainOptions

__all__ = ["TrainOptions", "TrainedRun", "load_run", "train_classifier"]

logger = get_logger("train")

# The scalar metrics of a split in metrics.json, in the order the table shows them.
METRIC_COLUMNS = ("images", "accuracy", "balanced_accuracy", "macro_auc", "macro_f1", "loss")


class TrainedRun:
    """A trained run folder: its metrics, history, split and Keras model, loaded on first use.

    Returned by `train_classifier` and `load_run`. The folder is what `edgecls train` writes (docs/DESIGN.md,
    "Run folder"): model.keras, config.json, labels.json, split.csv, history.csv, metrics.json,
    report.md and plots/; `convert_classifier(run)` reads it.
    """

    def __init__(self, run: runs.Run):
        self._run = run

    @property
    def path(self) -> Path:
        """The run folder."""
        return Path(self._run.path)

    @property
    def labels(self) -> list[str]:
        """Class names, in the model's output order."""
        return self._run.labels

    @property
    def image_size(self) -> tuple[int, int]:
        """The model's input (height, width)."""
        return self._run.image_size

    @property
    def options(self) -> TrainOptions:
        """The `TrainOptions` the run was trained with (from its config.json)."""
        return self._run.options

    @property
    def model(self):
        """The best epoch's Keras model (tf_keras; loaded from model.keras in safe mode on first use)."""
        return self._run.model

    @property
    def model_path(self) -> Path:
        """The run's model.keras."""
        return self._run.model_path

    @property
    def metrics(self) -> dict[str, Any]:
        """metrics.json as a dict: `val` and `test` each hold accuracy, balanced_accuracy,
        macro_auc, macro_f1, loss, per_class, confusion_matrix, calibration, coverage."""
        return self._run.metrics or {}

    @property
    def metrics_table(self) -> pd.DataFrame:
        """One row per evaluated split (val, test), one column per scalar metric."""
        metrics = self.metrics
        rows = {name: {column: metrics[name].get(column) for column in METRIC_COLUMNS}
                for name in ("val", "test") if isinstance(metrics.get(name), dict)}  # fmt: skip
        table = pd.DataFrame.from_dict(rows, orient="index", columns=list(METRIC_COLUMNS))
        table.index.name = "split"
        return table

    def _split_metrics(self, split: str) -> dict:
        part = self.metrics.get(split)
        if not isinstance(part, dict):
            raise EdgeclsError(f"{self.path}: no metrics for split {split!r} (evaluated: {', '.join(self._evaluated()) or 'none'})")
        return part

    def per_class(self, split: str = "test") -> pd.DataFrame:
        """Precision, recall, F1, support and AUC per class on `split` ("val" or "test")."""
        part = self._split_metrics(split)
        table = pd.DataFrame.from_dict(part.get("per_class", {}), orient="index")
        table.index.name = "label"
        return table

    def confusion_matrix(self, split: str = "test") -> pd.DataFrame:
        """Counts of true class (rows) by predicted class (columns) on `split`."""
        part = self._split_metrics(split)
        labels = self.metrics.get("labels", self.labels)
        return pd.DataFrame(part["confusion_matrix"], index=pd.Index(labels, name="true"), columns=pd.Index(labels, name="predicted"))

    @property
    def history(self) -> pd.DataFrame | None:
        """history.csv: one row per epoch (loss, accuracy, val_* metrics, learning rate)."""
        return self._run.history

    @property
    def dataset(self):
        """The `Dataset` the run was trained on (reloaded from the path in config.json)."""
        return self._run.dataset

    @property
    def split(self) -> pd.Series:
        """The side ("train", "val", "test") of every item of `dataset`, from split.csv."""
        return self._run.split

    @property
    def files(self) -> dict[str, Path]:
        """The run's main files that exist: model, config, labels, split, history, metrics, report, plots."""
        names = {"model": runs.MODEL_FILE, "config": runs.CONFIG_FILE, "labels": runs.LABELS_FILE, "split": runs.SPLIT_FILE,
                 "history": runs.HISTORY_FILE, "metrics": runs.METRICS_FILE, "report": runs.REPORT_FILE, "plots": runs.PLOTS_DIR}  # fmt: skip
        return {key: self.path / name for key, name in names.items() if (self.path / name).exists()}

    def _evaluated(self) -> list[str]:
        return [name for name in ("val", "test") if isinstance(self.metrics.get(name), dict)]

    def __repr__(self) -> str:
        height, width = self.image_size
        text = f"TrainedRun({os.fspath(self.path)!r}: {self._run.model_name}, {len(self.labels)} classes, {height}x{width}"
        test = self.metrics.get("test") or self.metrics.get("val")
        if isinstance(test, dict) and test.get("accuracy") is not None:
            which = "test" if self.metrics.get("test") else "val"
            text += f"; {which} accuracy {test['accuracy']:.3f}, balanced {test['balanced_accuracy']:.3f}"
        return text + ")"

    def _repr_html_(self) -> str:  # notebooks: the summary line and the metrics table
        import html

        return f"<p><code>{html.escape(repr(self))}</code></p>" + self.metrics_table.to_html(float_format=lambda v: f"{v:.4f}")


def train_classifier(
    data,
    options: TrainOptions | None = None,
    output: str | os.PathLike | None = None,
    *,
    progress: bool = True,
    callbacks: Iterable = (),
    **option_overrides: Any,
) -> TrainedRun:
    """Train a model on `data` into the run folder `output`; return the finished `TrainedRun`.

    `data`: a `Dataset` from `load_dataset`, or a dataset path (anything `load_dataset` reads).
    `options`: a `TrainOptions` (default: the built-in recipe); keyword arguments override its
    fields: `train_classifier(data, epochs=5, model="edge-cnn-small")`. `output`: the run folder (default
    `runs/<dataset name>`); a folder that holds a run already needs `force=True` (replace it) or
    `resume=True` (continue it). `progress`: Keras' per-epoch lines (`options.verbose`: 2 one
    line per epoch, 1 a progress bar); the other messages go to the `edgecls` logger
    (`edgecls.enable_logging()` shows them). `callbacks`: extra Keras callbacks for `fit`.

    The same function as `edgecls train`: grouped, stratified split (saved as split.csv), the
    training recipe, best epoch by validation balanced accuracy, evaluation on val and test.
    """
    from edgecls.api.datasets import dataset_location
    from edgecls.data.datasets import Dataset
    from edgecls.train.trainer import train_model

    options = with_overrides(options, option_overrides, TrainOptions, "train_classifier")
    if isinstance(data, Dataset):
        data_path, data_format = dataset_location(data)
        if options.data_format not in ("auto", data_format):
            raise EdgeclsError(f"the dataset was loaded as {data_format} but options.data_format is {options.data_format}")
        options = dataclasses.replace(options, data_format=data_format)
        name = data.name
    elif isinstance(data, (str, os.PathLike)):
        data_path, name = os.fspath(data), Path(os.fspath(data)).stem or "run"
    else:
        raise EdgeclsError(f"train_classifier takes a Dataset or a dataset path, not a {type(data).__name__}")
    if not progress:
        options = dataclasses.replace(options, verbose=0)
    run_dir = Path(output) if output is not None else Path("runs") / name
    try:
        run = train_model(options, data_path, run_dir, extra_callbacks=list(callbacks))
    except KeyboardInterrupt:
        # Still a KeyboardInterrupt (a notebook's stop button must stop), carrying how to go on; the
        # command line replaces it with its own one-line `--resume` hint.
        raise KeyboardInterrupt(
            f"interrupted; continue with edgecls.train_classifier({data_path!r}, output={os.fspath(run_dir)!r}, resume=True)"
        ) from None
    return TrainedRun(run)


def load_run(path: str | os.PathLike, data: str | os.PathLike | None = None) -> TrainedRun:
    """Open a run folder written by `train_classifier` or `edgecls train`. `data`: where its dataset is now,
    when it has moved since training (config.json keeps the path it was trained from)."""
    return TrainedRun(runs.load_run(path, None if data is None else os.fspath(data)))

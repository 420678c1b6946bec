"""The run folder (docs/DESIGN.md "Run folder"): its file names, and reading it back.

`edgecls.train` writes run folders; `load_run(run_dir)` is how `evaluate`, `convert`, the
Python API and `demo` get a trained model, its labels, image size, dataset and split, without
knowing how training laid the folder out.
"""

from __future__ import annotations

import dataclasses
import json
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from edgecls.core.keras_graph import check_layer_graph
from edgecls.data.split import SPLIT_FILE
from edgecls.errors import EdgeclsError, first_line
from edgecls.files import atomic_path

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
LABELS_FILE = "labels.json"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
PLOTS_DIR = "plots"
CHECKPOINTS_DIR = "checkpoints"
LOGS_DIR = "logs"
CONVERT_DIR = "convert"
EVALUATE_DIR = "evaluate"
BEST_WEIGHTS = f"{CHECKPOINTS_DIR}/best.weights.h5"
BACKUP_DIR = f"{CHECKPOINTS_DIR}/backup"
HEAD_WARMUP_WEIGHTS = f"{CHECKPOINTS_DIR}/head_warmup.weights.h5"  # the model after its head warm-up

# What a run writes. --force removes exactly these (never the whole folder, which may be a
# user's folder with other things in it); convert/ and evaluate/ go too: they describe the old model.
RUN_FILES = (MODEL_FILE, CONFIG_FILE, LABELS_FILE, SPLIT_FILE, HISTORY_FILE, METRICS_FILE, REPORT_FILE)
RUN_DIRS = (PLOTS_DIR, CHECKPOINTS_DIR, LOGS_DIR, CONVERT_DIR, EVALUATE_DIR)


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EdgeclsError(f"{path}: no {what} (is this a run folder written by `edgecls train`?)") from None
    except (OSError, ValueError) as exc:
        raise EdgeclsError(f"{path}: cannot read {what} ({exc})") from None


def load_keras_model(path: str | Path, custom_objects=None):
    """A saved `.keras` model, uncompiled, for inference/convert: its config checked against
    edgecls' allow-list (`edgecls.core.model_safety`) before Keras reads it, then loaded in safe
    mode. `custom_objects`: the user's code for custom layers (a `.py` file, which is imported
    and so runs, or a mapping of name -> class); without it custom layers are refused by name."""
    from edgecls.core.model_safety import check_keras_config, load_custom_objects, read_keras_archive
    from edgecls.core.tf_env import import_tf

    path = Path(path)
    if not path.is_file():
        raise EdgeclsError(f"{path}: no such model file")
    custom = load_custom_objects(custom_objects)
    config, _ = read_keras_archive(path)
    if not isinstance(config, dict):
        raise EdgeclsError(f"{path}: cannot load Keras model (no config.json: not a whole saved model)")
    check_keras_config(config, path, custom)
    check_layer_graph(config, path)
    _, keras = import_tf()
    try:
        return keras.models.load_model(path, custom_objects=custom or None, compile=False, safe_mode=True)
    except MemoryError:
        raise EdgeclsError(f"{path}: cannot load Keras model (out of memory)") from None
    except Exception as exc:  # zip, JSON, h5 and deserialisation errors all mean "not a usable model"
        raise EdgeclsError(f"{path}: cannot load Keras model ({first_line(exc)})") from None


def save_keras_model(model, path: str | Path) -> Path:
    """Save atomically: a crash mid-write leaves the previous file, never half a zip."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
    return Path(path)


@dataclasses.dataclass
class Run:
    """A trained run folder. Model, dataset and split load on first use."""

    path: Path
    config: dict[str, Any]
    data_override: str | None = None

    @property
    def labels(self) -> list[str]:
        return list(self.config["labels"])

    @property
    def image_size(self) -> tuple[int, int]:
        height, width = self.config["image_size"]
        return int(height), int(width)

    @property
    def model_name(self) -> str:
        return self.config["model"]

    @property
    def options(self):
        """The run's `TrainOptions` (config.json "options": the run folder's schema is train's options)."""
        from edgecls.core.train_options import TrainOptions

        return TrainOptions.from_config(self.config.get("options", {}))

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @cached_property
    def model(self):
        return load_keras_model(self.model_path)

    @cached_property
    def dataset(self):
        from edgecls.data.datasets import load_dataset
        from edgecls.data.split import restrict_dataset

        source = self.config["dataset"]
        dataset = load_dataset(self.data_override or source["path"], source.get("format", "auto"))
        if list(dataset.labels) != self.labels:
            missing = sorted(set(self.labels) - set(dataset.labels)) or sorted(set(dataset.labels) - set(self.labels))
            raise EdgeclsError(
                f"{dataset.root}: classes differ from the run's ({', '.join(missing[:5])}); is this the dataset it was trained on?"
            )
        # A --limit run trained on a subset; split.csv lists exactly that subset.
        if self.options.limit and (self.path / SPLIT_FILE).is_file():
            keys = pd.read_csv(self.path / SPLIT_FILE, dtype=str, keep_default_na=False)["key"]
            dataset = restrict_dataset(dataset, dataset.items["key"].isin(keys).to_numpy())
        return dataset

    @cached_property
    def split(self) -> pd.Series:
        from edgecls.data.split import load_split

        return load_split(self.path / SPLIT_FILE, self.dataset)

    def split_items(self, name: str) -> pd.DataFrame:
        """The dataset rows of one split ("train", "val", "test") or of all of them ("all")."""
        if name == "all":
            return self.dataset.items
        return self.dataset.items[(self.split == name).to_numpy()]

    @property
    def history(self) -> pd.DataFrame | None:
        path = self.path / HISTORY_FILE
        return pd.read_csv(path) if path.is_file() else None

    @property
    def metrics(self) -> dict[str, Any] | None:
        path = self.path / METRICS_FILE
        return read_json(path, "metrics") if path.is_file() else None


def load_run(run_dir: str | Path, data_override: str | None = None) -> Run:
    """Open a run folder written by `edgecls train`; `data_override` points at the dataset when
    it has moved since training (the config keeps the path it was trained from)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EdgeclsError(f"run folder not found: {run_dir}")
    config = read_json(run_dir / CONFIG_FILE, "config.json")
    for key in ("labels", "image_size", "model", "dataset"):
        if key not in config:
            raise EdgeclsError(f"{run_dir / CONFIG_FILE}: no {key!r} entry; not a config written by `edgecls train`")
    return Run(run_dir, config, None if data_override is None else str(data_override))


def read_labels(path: str | Path) -> list[str]:
    """Labels in the model's output order: a JSON list (labels.json) or one label per line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EdgeclsError(f"{path}: cannot read labels ({exc.strerror or exc})") from None
    try:
        labels = json.loads(text)
    except ValueError:
        labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(label, str) and label for label in labels):
        raise EdgeclsError(f"{path}: expected a JSON list of at least 2 label names, or one label per line")
    if len(set(labels)) != len(labels):
        raise EdgeclsError(f"{path}: labels repeat")
    return labels


def is_run_dir(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / CONFIG_FILE).is_file()

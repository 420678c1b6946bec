"""Evaluation for the Python API: `evaluate_classifier(model, data)` -> `EvaluationResult`.

    result = edgecls.evaluate_classifier("runs/ham")                                   # a run's model on its test split
    result = edgecls.evaluate_classifier("runs/ham/convert/model_int8.tflite", run="runs/ham", tta=True)
    result = edgecls.evaluate_classifier("m.keras", data="smears/", output="eval/m")   # any dataset, all of it
    result.metrics["accuracy"], result.metrics["calibration"]["ece"]
    result.files             # metrics.json, predictions.csv, report.md, plots/*.png

The function behind `edgecls evaluate` (`edgecls.train.evaluate.evaluate_model_file`): a Keras
model runs in inference mode on pixel / 255, a `.tflite` file through the device runtime.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from edgecls.errors import EdgeclsError

__all__ = ["EvaluationResult", "evaluate_classifier"]


class EvaluationResult:
    """What an evaluation wrote, and its metrics.

    `files`: every file written (metrics.json first, then predictions.csv, the plots and
    report.md); `output_dir`: their folder; `metrics`: the evaluated split's metrics from
    metrics.json (accuracy, balanced_accuracy, macro_auc, macro_f1, loss, per_class,
    confusion_matrix, calibration, coverage and, for models with a class group, groups).
    """

    def __init__(self, files: list[Path]):
        self.files = [Path(path) for path in files]

    @property
    def output_dir(self) -> Path:
        """The report folder."""
        return self.files[0].parent

    @functools.cached_property
    def report(self) -> dict[str, Any]:
        """metrics.json as a dict: the facts (model, dataset, split, image size, run), labels and the split's metrics."""
        return json.loads((self.output_dir / "metrics.json").read_text(encoding="utf-8"))

    @property
    def split(self) -> str:
        """Which images were evaluated: "test", "val", "train" or "all"."""
        return self.report["split"]

    @property
    def metrics(self) -> dict[str, Any]:
        """The evaluated split's metrics (see the class docstring)."""
        return self.report[self.split]

    def __repr__(self) -> str:
        m = self.metrics
        return (f"EvaluationResult({os.fspath(self.output_dir)!r}: {self.split}, {m['images']} images, "
                f"accuracy {m['accuracy']:.3f}, balanced {m['balanced_accuracy']:.3f})")  # fmt: skip


def evaluate_classifier(
    model,
    data: str | os.PathLike | None = None,
    *,
    run=None,
    split: str | None = None,
    output: str | os.PathLike | None = None,
    data_format: str = "auto",
    force: bool = False,
    tta: bool = False,
    custom_objects=None,
) -> EvaluationResult:
    """Evaluate a `.keras` or `.tflite` model (or a run folder or `TrainedRun`: its model.keras)
    on a dataset and write metrics.json, predictions.csv, plots and report.md; return what was written.

    `data`: the dataset path (default: the run's). `run`: a run folder or `TrainedRun` whose
    split.csv defines `split` (a run given as `model` is its own run). `split`: "test", "val", "train" or "all"
    (default: "test" with a run, else "all"). `output`: the report folder (default
    RUN/evaluate/<model>-<split>); one that holds an evaluation already needs `force=True`.
    `data_format`: the dataset's layout (`auto`, `ham10000`, `folders`, `hmnist`). `tta`: a
    `.tflite` model averaged over the image's four flips, as `Classifier.classify(tta=True)` runs it.
    `custom_objects`: a Keras model's custom layers, a `.py` file or a mapping of name -> class;
    this runs that code (without it a model with custom layers is refused, naming them).
    Progress goes to the `edgecls.evaluate` logger. Bad input raises `EdgeclsError`.
    """
    from edgecls.api.training import TrainedRun
    from edgecls.train.evaluate import evaluate_model_file

    model, run = (value.path if isinstance(value, TrainedRun) else value for value in (model, run))
    if not isinstance(model, (str, os.PathLike)):
        raise EdgeclsError(f"evaluate_classifier takes a model file, a run folder or a TrainedRun, not a {type(model).__name__}")
    files = evaluate_model_file(Path(model), data=data, run_dir=run, split=split, output=output, data_format=data_format,
                                force=force, tta=tta, custom_objects=custom_objects)  # fmt: skip
    return EvaluationResult(files)

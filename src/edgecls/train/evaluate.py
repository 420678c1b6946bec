"""Whole evaluations: a run's val and test splits after training, or any .keras or .tflite
model on any dataset (`edgecls evaluate`); each writes metrics.json, predictions, plots and report.md.

The metrics are `edgecls.core.metrics`, the predictions `edgecls.core.predict`; progress goes
to the `edgecls.evaluate` logger.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from edgecls.core import runs
from edgecls.core.clinical_metrics import default_groups, ece_sampling_floor, group_metrics
from edgecls.core.metrics import SplitResult, compute_metrics, summary_line
from edgecls.core.predict import Predictor, keras_predictor, label_indices, predict_dataset, tflite_predictor
from edgecls.errors import EdgeclsError
from edgecls.log import get_logger
from edgecls.train.report import write_report

logger = get_logger("evaluate")


def evaluate_split(name: str, predict: Predictor, dataset, items: pd.DataFrame, model_labels: Sequence[str],
                   size: tuple[int, int], progress: Callable[[int], None] | None = None, groups: dict | None = None,
                   operating_point: dict | None = None) -> SplitResult:  # fmt: skip
    """Metrics of one split; `groups` (default: the dataset's malignant group, if edgecls knows
    it) adds each group's sensitivity and specificity at `operating_point` (the model's own)."""
    keys = items["key"].tolist()
    probabilities = predict_dataset(predict, dataset, keys, size, progress=progress)
    if probabilities.shape[1] != len(model_labels):
        raise EdgeclsError(f"the model outputs {probabilities.shape[1]} classes but has {len(model_labels)} labels")
    y_true = label_indices(dataset.labels, model_labels, items["label_index"].to_numpy())
    metrics = compute_metrics(y_true, probabilities, model_labels)
    metrics["calibration"]["ece_sampling_floor"] = ece_sampling_floor(probabilities)
    groups = default_groups(list(model_labels)) if groups is None else groups
    if groups:
        metrics["groups"] = group_metrics(y_true, probabilities, list(model_labels), groups, operating_point)
    return SplitResult(name, keys, y_true, probabilities, list(model_labels), metrics)


# -- whole evaluations: a run's splits, or any model file on any dataset ------------------------


def evaluate_run(run, splits: Sequence[str] = ("val", "test"), output_dir=None) -> list:
    """Evaluate a run's model.keras on its own splits; write the report into `output_dir` (the run)."""
    results = []
    for name in splits:
        items = run.split_items(name)
        if items.empty:
            logger.info(f"{name}: no images, skipped")
            continue
        results.append(evaluate_split(name, keras_predictor(run.model), run.dataset, items, run.labels, run.image_size))
        logger.info(summary_line(results[-1]))
    if not results:
        raise EdgeclsError(f"nothing to evaluate: splits {', '.join(splits)} are empty")
    facts = {"model": f"{run.model_name} ({run.model_path})", "dataset": f"{run.dataset.name} ({run.dataset.root})",
             "image_size": "x".join(map(str, run.image_size)), "run": str(run.path)}  # fmt: skip
    written = write_report(Path(output_dir or run.path), results, f"{run.model_name} on {run.dataset.name}", facts,
                           history=run.history, keras_model=run.model, dataset=run.dataset, image_size=run.image_size)  # fmt: skip
    return written


def evaluate_model_file(model, data=None, run_dir=None, split: str | None = None, output=None, data_format: str = "auto",
                        force: bool = False, tta: bool = False, custom_objects=None) -> list:  # fmt: skip
    """`edgecls evaluate`: a .keras or .tflite model (or a run folder) on a dataset's split or all of it.
    `tta`: a .tflite model averaged over flips, as `edgecls classify --tta` runs it. `custom_objects`:
    a .keras model's custom layers, a `.py` file (imported: it runs) or a mapping of name -> class."""
    model = Path(model)
    if runs.is_run_dir(model):
        run_dir, model = model, model / runs.MODEL_FILE
    # Model problems first: they are quicker to find than reading a whole dataset.
    if not model.is_file():
        raise EdgeclsError(f"{model}: no such model file")
    if model.suffix.lower() not in (".keras", ".tflite"):
        raise EdgeclsError(f"{model}: expected a .keras or .tflite model, or a run folder")
    run = runs.load_run(run_dir, data_override=data) if run_dir else None
    split = split or ("test" if run else "all")
    if split not in ("train", "val", "test", "all"):
        raise EdgeclsError(f"`split` must be one of test, val, train, all; got {split!r}", fields="split")
    if split != "all" and run is None:
        raise EdgeclsError(f"`split` {split} needs the run whose split.csv defines it: pass `run` RUN_DIR (or use `split` all)",
                          fields=("split", "run"))
    if output is None and run is None:
        raise EdgeclsError("pass `output` FOLDER for the report", fields="output")
    output = Path(output or run.path / runs.EVALUATE_DIR / f"{model.stem}-{split}{'-tta' if tta else ''}")
    if (output / "metrics.json").exists() and not force:
        raise EdgeclsError(f"{output} already holds an evaluation (metrics.json); pass `force` to replace it, or `output` elsewhere",
                          fields=("force", "output"))
    if run is not None:
        dataset = run.dataset
    elif data is None:
        raise EdgeclsError("no dataset: give DATA, or `run` RUN_DIR to use the run's dataset", fields="run")
    else:
        from edgecls.data.datasets import load_dataset

        dataset = load_dataset(data, data_format)
    logger.info(f"dataset: {dataset.summary()}")

    keras_model = None
    if model.suffix.lower() == ".tflite":
        from edgecls.edge_runtime.classifier import TFLiteClassifier

        classifier = TFLiteClassifier(model)
        if classifier.channels != 3:
            raise EdgeclsError(f"{model}: takes {classifier.channels}-channel images; edgecls datasets are RGB")
        predict, labels, size, kind = tflite_predictor(classifier, tta), classifier.labels, classifier.input_size, "TFLite"
        kind += f" ({np.dtype(classifier.input_details['dtype']).name} input{', flip-averaged' if tta else ''})"
        groups, operating_point = classifier.metadata.groups or None, classifier.metadata.operating_point
    else:
        if tta:
            raise EdgeclsError("`tta` evaluates a .tflite file as the device runs it; convert the Keras model first", fields="tta")
        groups, operating_point = None, None
        keras_model = runs.load_keras_model(model, custom_objects)
        labels = _keras_labels(model, run, dataset, keras_model.output_shape[-1])
        size, kind, predict = tuple(keras_model.input_shape[1:3]), "Keras", keras_predictor(keras_model)

    items = dataset.items if split == "all" else run.split_items(split)
    logger.info(f"evaluating {model.name} ({kind}, {size[0]}x{size[1]}) on {len(items)} images ({split})")
    result = evaluate_split(split, predict, dataset, items, labels, size, groups=groups, operating_point=operating_point)
    logger.info(summary_line(result))
    facts = {"model": f"{model} ({kind})", "dataset": f"{dataset.name} ({dataset.root})", "split": split,
             "image_size": f"{size[0]}x{size[1]}", "run": str(run.path) if run else None}  # fmt: skip
    # The run's learning curves belong in the report of the very model that run trained.
    history = run.history if run is not None and model.resolve() == (run.path / runs.MODEL_FILE).resolve() else None
    return write_report(output, [result], f"{model.name} on {dataset.name}", facts, history=history,
                        keras_model=keras_model, dataset=dataset, image_size=size)  # fmt: skip


def _keras_labels(model_path: Path, run, dataset, num_outputs: int) -> list[str]:
    """A Keras file has no labels inside: take them from its run, a labels.json beside it, or the dataset."""
    if run is not None:
        return run.labels
    beside = model_path.parent / runs.LABELS_FILE
    if beside.is_file():
        return runs.read_labels(beside)
    if len(dataset.labels) != num_outputs:
        raise EdgeclsError(
            f"{model_path}: no labels.json beside it and the dataset has {len(dataset.labels)} classes for its "
            f"{num_outputs} outputs; pass `run` RUN_DIR",
            fields="run",
        )
    logger.info(f"note: no labels.json beside {model_path.name}; assuming the dataset's classes in sorted order")
    return list(dataset.labels)

"""Predictions and metrics on a held split, for Keras (inference mode) and TFLite models alike.

Both kinds of model see the same uint8 images from `Dataset.load_images` (the shared
preprocessing); a Keras model gets pixel/255 and runs with training=False, a TFLite model gets
its own input mapping from `TFLiteClassifier`. Metrics come from scikit-learn.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from edgecls.errors import EdgeclsError

Predictor = Callable[[np.ndarray], np.ndarray]  # uint8 (N,h,w,3) -> probabilities (N,classes)


@dataclass
class SplitResult:
    """Everything measured on one split: inputs for metrics.json, plots and the report."""

    name: str
    keys: list[str]
    y_true: np.ndarray  # indices into `labels`
    probabilities: np.ndarray  # (N, len(labels)) float32
    labels: list[str]
    metrics: dict

    @property
    def y_pred(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    def predictions_table(self) -> pd.DataFrame:
        table = pd.DataFrame({"split": self.name, "key": self.keys, "label": np.asarray(self.labels)[self.y_true],
                              "predicted": np.asarray(self.labels)[self.y_pred]})  # fmt: skip
        for i, label in enumerate(self.labels):
            table[f"p_{label}"] = np.round(self.probabilities[:, i], 6)
        return table


def keras_predictor(model, batch_size: int = 64, normalization=None) -> Predictor:
    """`normalization` (an edge_runtime InputNormalization): how pixels become the model's
    input; default pixel / 255, the convention of edgecls's own models."""
    from edgecls.edge_runtime.normalization import PIXEL_UNIT

    normalization = normalization or PIXEL_UNIT

    def predict(images: np.ndarray) -> np.ndarray:
        # predict() runs layers in inference mode: BatchNorm moving statistics, no dropout.
        x = normalization.apply(images)
        return np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float32)

    return predict


def tflite_predictor(classifier, tta: bool = False) -> Predictor:
    """The device's own path; `tta` averages over the four flips (TFLiteClassifier.predict)."""
    buffer = classifier.new_input_buffer()

    def predict(images: np.ndarray) -> np.ndarray:
        if tta:
            return np.stack([classifier.predict(image, buffer=buffer, tta=True).probabilities for image in images])
        return np.stack([classifier.scores(classifier.to_input(image, buffer)).copy() for image in images])

    return predict


def predict_dataset(predict: Predictor, dataset, keys: Sequence[str], size: tuple[int, int], chunk: int = 256,
                    progress: Callable[[int], None] | None = None) -> np.ndarray:  # fmt: skip
    """Probabilities for `keys`, loading images a chunk at a time (memory stays flat on big sets)."""
    keys = list(keys)
    outputs = []
    for start in range(0, len(keys), chunk):
        images = dataset.load_images(keys[start : start + chunk], size)
        outputs.append(predict(images))
        if progress:
            progress(len(images))
    if not outputs:
        raise EdgeclsError("nothing to evaluate: the chosen split has no images")
    return np.concatenate(outputs).astype(np.float32, copy=False)


def label_indices(dataset_labels: Sequence[str], model_labels: Sequence[str], y: np.ndarray) -> np.ndarray:
    """Map a dataset's label indices onto a model's label order, by name."""
    unknown = sorted(set(dataset_labels) - set(model_labels))
    if unknown:
        raise EdgeclsError(
            f"the dataset has classes the model does not know: {', '.join(unknown[:8])} "
            f"(model classes: {', '.join(model_labels)})"
        )
    lookup = np.array([list(model_labels).index(label) for label in dataset_labels])
    return lookup[np.asarray(y, dtype=np.int64)]


def compute_metrics(y_true: np.ndarray, probabilities: np.ndarray, labels: Sequence[str]) -> dict:
    """Accuracy, balanced accuracy, macro one-vs-rest ROC AUC, per-class report, confusion matrix.

    Classes absent from `y_true` (possible on small splits, or a model with extra classes)
    have no recall and no AUC; balanced accuracy and macro AUC average the classes present.
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, classification_report, confusion_matrix

    from edgecls.clinical_metrics import coverage_curve, expected_calibration_error, reliability_bins

    labels = list(labels)
    y_true = np.asarray(y_true, dtype=np.int64)
    probabilities = np.nan_to_num(np.asarray(probabilities, dtype=np.float64), nan=0.0)
    y_pred = probabilities.argmax(axis=1)
    classes = np.arange(len(labels))
    present = [labels[c] for c in classes if np.any(y_true == c)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true", zero divisions
        report = classification_report(y_true, y_pred, labels=classes, target_names=labels, output_dict=True, zero_division=0)
        balanced = balanced_accuracy_score(y_true, y_pred)
    auc = per_class_auc(y_true, probabilities)
    defined = [v for v in auc.values() if v is not None]
    per_class = {
        label: {
            "precision": report[label]["precision"],
            "recall": report[label]["recall"] if label in present else None,
            "f1": report[label]["f1-score"],
            "support": int(report[label]["support"]),
            "auc": auc[c],
        }
        for c, label in enumerate(labels)
    }
    return {
        "images": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced),
        "macro_auc": float(np.mean(defined)) if defined else None,
        "macro_f1": float(np.mean([per_class[label]["f1"] for label in present])) if present else None,
        "loss": float(-np.mean(np.log(np.clip(probabilities[np.arange(len(y_true)), y_true], 1e-7, 1.0)))),
        "per_class": per_class,
        "classes_absent": [label for label in labels if label not in present],
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=classes).tolist(),
        "calibration": {
            "ece": expected_calibration_error(probabilities, y_true),
            "reliability": reliability_bins(probabilities, y_true),
        },
        "coverage": coverage_curve(probabilities, y_true),
    }


def validation_logs(y_true: np.ndarray, probabilities: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    """The val_* values that pick a best epoch (training's checkpoint and QAT's alike), as Keras
    logs: val_loss, val_accuracy, val_balanced_accuracy, val_auc (NaN when undefined) and
    val_acc_balacc_mean (the mean of accuracy and balanced accuracy)."""
    m = compute_metrics(y_true, probabilities, labels)
    return {"val_loss": m["loss"], "val_accuracy": m["accuracy"], "val_balanced_accuracy": m["balanced_accuracy"],
            "val_auc": m["macro_auc"] if m["macro_auc"] is not None else float("nan"),
            "val_acc_balacc_mean": (m["accuracy"] + m["balanced_accuracy"]) / 2}  # fmt: skip


def per_class_auc(y_true: np.ndarray, probabilities: np.ndarray) -> dict[int, float | None]:
    """One-vs-rest ROC AUC per class; None where the split lacks positives or negatives."""
    from sklearn.metrics import roc_auc_score

    result: dict[int, float | None] = {}
    for c in range(probabilities.shape[1]):
        positives = y_true == c
        result[c] = float(roc_auc_score(positives, probabilities[:, c])) if 0 < positives.sum() < len(y_true) else None
    return result


def evaluate_split(name: str, predict: Predictor, dataset, items: pd.DataFrame, model_labels: Sequence[str],
                   size: tuple[int, int], progress: Callable[[int], None] | None = None, groups: dict | None = None,
                   operating_point: dict | None = None) -> SplitResult:  # fmt: skip
    """Metrics of one split; `groups` (default: the dataset's malignant group, if edgecls knows
    it) adds each group's sensitivity and specificity at `operating_point` (the model's own)."""
    from edgecls.clinical_metrics import default_groups, ece_sampling_floor, group_metrics

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


def summary_line(result: SplitResult) -> str:
    m = result.metrics
    auc = "n/a" if m["macro_auc"] is None else f"{m['macro_auc']:.3f}"
    return (
        f"{result.name}: {m['images']} images, accuracy {m['accuracy']:.3f}, "
        f"balanced accuracy {m['balanced_accuracy']:.3f}, macro AUC {auc}"
    )


# -- whole evaluations: a run's splits, or any model file on any dataset ------------------------


def evaluate_run(run, splits: Sequence[str] = ("val", "test"), output_dir=None, echo: Callable[[str], None] = print) -> list:
    """Evaluate a run's model.keras on its own splits; write the report into `output_dir` (the run)."""
    from edgecls.train.report import write_report

    results = []
    for name in splits:
        items = run.split_items(name)
        if items.empty:
            echo(f"{name}: no images, skipped")
            continue
        results.append(evaluate_split(name, keras_predictor(run.model), run.dataset, items, run.labels, run.image_size))
        echo(summary_line(results[-1]))
    if not results:
        raise EdgeclsError(f"nothing to evaluate: splits {', '.join(splits)} are empty")
    facts = {"model": f"{run.model_name} ({run.model_path})", "dataset": f"{run.dataset.name} ({run.dataset.root})",
             "image_size": "x".join(map(str, run.image_size)), "run": str(run.path)}  # fmt: skip
    written = write_report(Path(output_dir or run.path), results, f"{run.model_name} on {run.dataset.name}", facts,
                           history=run.history, keras_model=run.model, dataset=run.dataset, image_size=run.image_size)  # fmt: skip
    return written


def evaluate_model_file(model, data=None, run_dir=None, split: str | None = None, output=None, data_format: str = "auto",
                        echo: Callable[[str], None] = print, force: bool = False, tta: bool = False) -> list:  # fmt: skip
    """`edgecls evaluate`: a .keras or .tflite model (or a run folder) on a dataset's split or all of it.
    `tta`: a .tflite model averaged over flips, as `edgecls classify --tta` runs it."""
    from edgecls.train import run as runs
    from edgecls.train.report import write_report

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
        raise EdgeclsError(f"--split must be one of test, val, train, all; got {split!r}")
    if split != "all" and run is None:
        raise EdgeclsError(f"--split {split} needs the run whose split.csv defines it: pass --run RUN_DIR (or use --split all)")
    if output is None and run is None:
        raise EdgeclsError("pass --output FOLDER for the report")
    output = Path(output or run.path / runs.EVALUATE_DIR / f"{model.stem}-{split}{'-tta' if tta else ''}")
    if (output / "metrics.json").exists() and not force:
        raise EdgeclsError(f"{output} already holds an evaluation (metrics.json); pass --force to replace it, or --output elsewhere")
    if run is not None:
        dataset = run.dataset
    elif data is None:
        raise EdgeclsError("no dataset: give DATA, or --run RUN_DIR to use the run's dataset")
    else:
        from edgecls.train.datasets import load_dataset

        dataset = load_dataset(data, data_format)
    echo(f"dataset: {dataset.summary()}")

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
            raise EdgeclsError("--tta evaluates a .tflite file as the device runs it; convert the Keras model first")
        groups, operating_point = None, None
        keras_model = runs.load_keras_model(model)
        labels = _keras_labels(model, run, dataset, keras_model.output_shape[-1], echo)
        size, kind, predict = tuple(keras_model.input_shape[1:3]), "Keras", keras_predictor(keras_model)

    items = dataset.items if split == "all" else run.split_items(split)
    echo(f"evaluating {model.name} ({kind}, {size[0]}x{size[1]}) on {len(items)} images ({split})")
    result = evaluate_split(split, predict, dataset, items, labels, size, groups=groups, operating_point=operating_point)
    echo(summary_line(result))
    facts = {"model": f"{model} ({kind})", "dataset": f"{dataset.name} ({dataset.root})", "split": split,
             "image_size": f"{size[0]}x{size[1]}", "run": str(run.path) if run else None}  # fmt: skip
    # The run's learning curves belong in the report of the very model that run trained.
    history = run.history if run is not None and model.resolve() == (run.path / runs.MODEL_FILE).resolve() else None
    return write_report(output, [result], f"{model.name} on {dataset.name}", facts, history=history,
                        keras_model=keras_model, dataset=dataset, image_size=size)  # fmt: skip


def _keras_labels(model_path: Path, run, dataset, num_outputs: int, echo) -> list[str]:
    """A Keras file has no labels inside: take them from its run, a labels.json beside it, or the dataset."""
    import json

    if run is not None:
        return run.labels
    beside = model_path.parent / "labels.json"
    if beside.is_file():
        return list(json.loads(beside.read_text(encoding="utf-8")))
    if len(dataset.labels) != num_outputs:
        raise EdgeclsError(
            f"{model_path}: no labels.json beside it and the dataset has {len(dataset.labels)} classes for its "
            f"{num_outputs} outputs; pass --run RUN_DIR"
        )
    echo(f"note: no labels.json beside {model_path.name}; assuming the dataset's classes in sorted order")
    return list(dataset.labels)

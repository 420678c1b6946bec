"""Conversion for the Python API: `convert_classifier(...)` -> `ConversionResult`.

    result = edgecls.convert_classifier(run, modes=["float32", "qat"])        # a TrainedRun or run folder
    result = edgecls.convert_classifier(model, data="smears/")                 # a Keras model object, unsaved
    result = edgecls.convert_classifier("m.keras", data="smears/", input_range="-1-1")   # a model file
    result.passed, result.verdict
    result.table             # the parity report: one row per model (pandas)
    result.files["qat"]      # the int8 .tflite

`edgecls convert` calls `convert_classifier` (over `edgecls.convert.conversion`): every file is measured
through the LiteRT interpreter as the device runs it, and written with its metadata even when
the parity gate fails; the result says which passed, and `result.check()` raises as the
command line exits.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from edgecls.convert.options import ConvertOptions
from edgecls.convert.parity import ParityReport
from edgecls.core import runs
from edgecls.errors import EdgeclsError, ParityGateFailed, ParityGateInconclusive

__all__ = ["ConversionResult", "ConvertOptions", "convert_classifier"]

# ParityRow fields shown in `ConversionResult.table`, in this order.
TABLE_COLUMNS = (
    "description", "file", "size_kb", "accuracy", "balanced_accuracy", "macro_auc", "macro_f1", "agreement", "mean_kl",
    "accuracy_drop", "difference_low", "difference_high", "images_to_resolve", "latency_ms", "input_type",
    "integer_only", "gate", "error",
)  # fmt: skip


class ConversionResult:
    """What a conversion made and how each file did against the float Keras model.

    `report` is the full `ParityReport` (also saved as parity.json and parity.md in
    `output_dir`); the properties are views of it.
    """

    def __init__(self, report: ParityReport):
        self.report = report

    @property
    def output_dir(self) -> Path:
        """The folder holding the .tflite files, parity.json and parity.md."""
        return Path(self.report.output_dir)

    @property
    def passed(self) -> bool:
        """Every mode converted, and every full-integer file is within `max_drop` accuracy points
        of float Keras and integer-only (what `edgecls convert` exits 0 for)."""
        return self.report.gate_passed and not self.report.failed_conversions

    @property
    def verdict(self) -> str:
        """The parity gate's verdict in one line."""
        return self.report.verdict

    @property
    def gate(self) -> str | None:
        """The parity gate: "passed", "failed", "inconclusive" (the test split is too small to
        tell), or None when no full-integer file was made."""
        return self.report.gate

    @property
    def files(self) -> dict[str, Path]:
        """Mode -> the .tflite file written for it ("float32", "qat", "ptq-int8", ...)."""
        return {row.name: self.output_dir / row.file for row in self.report.rows if row.file and row.size_bytes}

    @property
    def errors(self) -> dict[str, str]:
        """Mode -> why it could not be converted (no file was written for it)."""
        return {row.name: row.error for row in self.report.rows if row.error}

    @property
    def table(self) -> pd.DataFrame:
        """One row per model, the float Keras reference ("keras") first: accuracy, balanced
        accuracy, macro AUC and F1 (fractions), top-1 agreement and mean KL divergence against
        float, accuracy points lost, the paired 95% interval of int8 - float accuracy
        (difference_low, difference_high, points), file size, median latency (ms), gate."""
        records = {}
        for row in self.report.rows:
            record = {name: getattr(row, name, None) for name in TABLE_COLUMNS}
            record["size_kb"] = round(row.size_bytes / 1024, 1) if row.size_bytes else None
            record["difference_low"] = row.paired.get("low")
            record["difference_high"] = row.paired.get("high")
            records[row.name] = record
        table = pd.DataFrame.from_dict(records, orient="index", columns=list(TABLE_COLUMNS))
        table.index.name = "model"
        return table

    @property
    def layer_errors(self) -> pd.DataFrame:
        """Per-layer quantization error of every full-integer file: one row per Keras layer (in
        model order) and file (`mode`), comparing the int8 tensor with the float model's value at
        the same point on validation images. `rmse_steps`: RMS error in int8 steps (rounding
        alone: ~0.29); `relative_error`: RMS error / the float tensor's standard deviation;
        `sqnr_db`; `clipped`: share of float values outside the int8 range; `added_error`: the
        relative error the layer adds to its inputs' (what ranks the layers to blame)."""
        from edgecls.convert.layer_error import COLUMNS

        frames = [pd.DataFrame(row.layer_errors["rows"], columns=list(COLUMNS)).assign(mode=row.name)
                  for row in self.report.rows if row.layer_errors]  # fmt: skip
        if not frames:
            return pd.DataFrame(columns=["mode", *COLUMNS])
        table = pd.concat(frames, ignore_index=True)
        return table[["mode", *COLUMNS]]

    def check(self) -> "ConversionResult":
        """Raise `EdgeclsError` when a mode failed to convert (exit code 2), `ParityGateFailed`
        when the parity gate failed (exit code 3) and `ParityGateInconclusive` when the test split
        cannot tell (exit code 4), with the message `edgecls convert` prints; else return self."""
        failed = self.report.failed_conversions
        if failed:
            raise EdgeclsError("; ".join(f"{row.name} could not be converted: {row.error}" for row in failed))
        if self.report.gate == "failed":
            raise ParityGateFailed(self.report.verdict)
        if self.report.gate == "inconclusive":
            raise ParityGateInconclusive(self.report.verdict)
        return self

    def to_dict(self) -> dict[str, Any]:
        """The report as parity.json holds it."""
        return self.report.to_dict()

    def __repr__(self) -> str:
        files = ", ".join(f"{mode}: {path.name}" for mode, path in self.files.items())
        return f"ConversionResult({os.fspath(self.output_dir)!r}: {files or 'no files'}; {self.verdict})"

    def _repr_markdown_(self) -> str:  # notebooks: parity.md
        from edgecls.convert.report import to_markdown

        return to_markdown(self.report)


def convert_classifier(
    source,
    options: ConvertOptions | None = None,
    *,
    data=None,
    labels: Sequence[str] | str | os.PathLike | None = None,
    output: str | os.PathLike | None = None,
    data_format: str = "auto",
    split: str | os.PathLike | None = None,
    progress: bool = True,
    **option_overrides: Any,
) -> ConversionResult:
    """Convert a trained classifier to TFLite in every mode asked for, prove each file on the
    test split, and return the result (the files are written to `output`).

    `source`: a `TrainedRun` or a run folder (its dataset, split.csv and training options are
    used); a Keras model object from a notebook, tf_keras or Keras 3, not saved first; or a
    model file: a Keras 3 or tf_keras `.keras`, an `.h5`, a SavedModel folder.
    `options`: a `ConvertOptions`; keyword arguments override its fields
    (`modes=["float32", "qat"]`, `max_drop=0.5`, `input_range="-1-1"`, `force=True`, ...);
    `custom_objects="my_layers.py"` loads a model file's custom layers from that file, which runs
    it (without it such a model is refused, naming them; docs/safety.md).
    `data`: the dataset a model object or file is measured on (a path or a `Dataset`; for a
    model object also a `DatasetSplit` from `split_dataset`, whose test side it was not trained
    on); for a run, where its dataset is now if it has moved. `labels`: a model's output order (a list, or
    a labels.json / one-per-line file; default: the dataset's sorted class names).
    `split`: the split.csv a model was trained with, so that parity runs on images it never
    saw (default: a fresh split, with a warning). `output`: the folder for the files (default:
    RUN/convert, MODEL_convert/ beside a model file, or `<model name>_convert` for a model
    object). `progress`: log progress lines to the `edgecls.convert` logger, as `edgecls convert`
    shows them (`edgecls.enable_logging()` shows them in a notebook), and Keras' QAT epoch lines.

    A failing parity gate does not raise: `result.passed` is False (`result.check()` raises).
    Bad input (no data for a model, an unreadable file, a folder already holding a conversion
    without `force=True`) raises `EdgeclsError`.
    """
    from edgecls.api.options import with_overrides
    from edgecls.api.training import TrainedRun

    if isinstance(option_overrides.get("modes"), str):  # modes="float32,qat", as --mode takes it
        option_overrides["modes"] = [option_overrides["modes"]]
    options = with_overrides(options, option_overrides, ConvertOptions, "convert_classifier")
    options = dataclasses.replace(options, verbose=bool(progress))
    if isinstance(source, TrainedRun):
        source = source.path
    if isinstance(source, (str, os.PathLike)):
        report = _convert_path(Path(os.fspath(source)), options, data, labels, output, data_format, split)
    elif _is_model_object(source):
        report = _convert_object(source, options, data, labels, output, data_format, split)
    else:
        raise EdgeclsError(
            f"convert_classifier takes a TrainedRun, a run folder, a Keras model or a model file, not a {type(source).__name__}"
        )
    return ConversionResult(report)


def _convert_path(path: Path, options, data, labels, output, data_format, split) -> ParityReport:
    from edgecls.convert.conversion import convert_model_file, convert_run

    if not path.exists():
        raise EdgeclsError(f"{path}: no such run folder or model file")
    data_path = _data_path(data)
    if path.is_dir() and is_run_folder(path, data):
        if labels is not None or split is not None or options.input_range is not None:
            raise EdgeclsError(
                "`labels`, `split` and `input_range` are for a model file; "
                "a run folder has its own labels.json and split.csv, "
                "and its model takes pixel / 255",
                fields=("labels", "split", "input_range"),
            )
        return convert_run(path, options, output, data_override=data_path)
    if data_path is None:
        raise EdgeclsError(f"{path}: converting a model file needs `data` DATASET (its test split is the parity check)", fields="data")
    return convert_model_file(path, data_path, options, output, labels=_labels(labels), data_format=data_format, split_path=split)


def _convert_object(model, options, data, labels, output, data_format, split) -> ParityReport:
    from edgecls.api.datasets import DatasetSplit, check_whole_dataset
    from edgecls.convert.conversion import convert_model
    from edgecls.log import notice
    from edgecls.data.datasets import Dataset, load_dataset
    from edgecls.data.split import SPLIT_FILE, load_split, make_split, save_split

    if data is None:
        raise EdgeclsError("converting a Keras model needs data=DATASET (its test split is the parity check)")
    name = str(getattr(model, "name", "") or "model")
    output_dir = Path(output) if output is not None else Path(f"{name}_convert")
    if isinstance(data, DatasetSplit):  # the split the notebook trained the model with
        if split is not None:
            raise EdgeclsError("data is a DatasetSplit, which has its split already: leave split out")
        dataset, parts = data.dataset, data.split
    elif isinstance(data, Dataset):
        check_whole_dataset(data, "convert_classifier")
        dataset, parts = data, None
    elif isinstance(data, (str, os.PathLike)):
        dataset, parts = load_dataset(os.fspath(data), data_format), None
    else:
        raise EdgeclsError(f"data must be a dataset path, a Dataset or a DatasetSplit, not a {type(data).__name__}")
    if parts is None and split is not None:
        parts = load_split(split, dataset)
    elif parts is None:
        notice("no split given: the test split is made afresh, and may hold images this model was trained on")
        parts = make_split(dataset, seed=options.seed)
    report = convert_model(model, dataset, parts, options, output_dir, labels=_labels(labels), name=name)
    save_split(output_dir / SPLIT_FILE, dataset, parts)
    return report


def _is_model_object(value) -> bool:
    """A Keras model (tf_keras or Keras 3) or an `ImportedModel`, judged without importing TF."""
    from edgecls.convert.keras_import.model import ImportedModel

    return all(hasattr(value, attribute) for attribute in ("predict", "layers")) or isinstance(value, ImportedModel)


def is_run_folder(folder: Path, data) -> bool:
    """What `edgecls convert` takes a folder for: a SavedModel has saved_model.pb; with data and
    no run files, it is taken for a SavedModel too (and refused in one line if it is not)."""
    if (folder / "saved_model.pb").is_file():
        return False
    return data is None or runs.is_run_dir(folder) or (folder / runs.MODEL_FILE).is_file()


def _data_path(data) -> str | None:
    if data is None:
        return None
    from edgecls.data.datasets import Dataset

    if isinstance(data, Dataset):
        from edgecls.api.datasets import dataset_location

        return dataset_location(data, "convert_classifier")[0]
    if isinstance(data, (str, os.PathLike)):
        return os.fspath(data)
    from edgecls.api.datasets import DatasetSplit

    if isinstance(data, DatasetSplit):
        raise EdgeclsError("a DatasetSplit is for a Keras model object; for a run or a model file pass a dataset path and split=split.csv")
    raise EdgeclsError(f"data must be a dataset path or a Dataset, not a {type(data).__name__}")


def _labels(labels) -> list[str] | None:
    if labels is None:
        return None
    if isinstance(labels, (str, os.PathLike)):
        return runs.read_labels(labels)
    labels = [str(label) for label in labels]
    if len(labels) < 2 or len(set(labels)) != len(labels) or not all(labels):
        raise EdgeclsError(f"labels must be at least 2 distinct names, got {labels[:8]}")
    return labels

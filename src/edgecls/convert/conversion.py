"""Convert a trained Keras model into deployable TFLite files and prove them on the test split.

    report = convert_run("runs/ham", ConvertOptions(modes=("float32", "qat")))
    report.gate_passed, report.row("qat").accuracy

Every file is written (atomically) even when its parity gate fails; the report says which
passed, and so does each file's own metadata.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

import edgecls
from edgecls.convert.export import embed, model_metadata, write_model
from edgecls.convert.keras_model import as_float32, image_input_size, load_keras_model, output_classes, outputs_probabilities
from edgecls.convert.modes import ModeConverter, is_full_integer, notice
from edgecls.convert.options import MODE_HELP, ConvertOptions, output_file_name
from edgecls.convert.parity import KERAS, ParityReport, ParityRow, Predictions, apply_gate, measure, run_tflite
from edgecls.convert.report import write_report
from edgecls.convert.samples import ConversionData
from edgecls.convert.verify import check_ops
from edgecls.edge_runtime.classifier import default_threads
from edgecls.edge_runtime.interpreter import find_interpreter
from edgecls.errors import EdgeclsError

CONVERT_DIR = "convert"
SPLIT_FILE = "split.csv"


def convert_model(
    model,
    dataset,
    split,
    options: ConvertOptions | None = None,
    output_dir: str | Path = CONVERT_DIR,
    *,
    labels: Sequence[str] | None = None,
    name: str | None = None,
    source: str = "",
    run_dir: str | None = None,
    train_options=None,
) -> ParityReport:
    """Convert `model` in every mode of `options`, measure parity on the split's test images,
    write the `.tflite` files and parity.json/.md into `output_dir`, and return the report.

    `labels`: the model's output order (default: `dataset.labels`). `train_options`: the
    TrainOptions the model was trained with, so QAT fine-tunes with the same augmentation and
    class balancing (default: neither, as for a model trained elsewhere).
    """
    options = options or ConvertOptions()
    say = _progress(options.verbose)
    output_dir = Path(output_dir)
    earlier = check_output_dir(output_dir, options.force)
    model = as_float32(model)
    image_size = image_input_size(model)
    labels = list(labels if labels is not None else dataset.labels)
    if len(labels) != output_classes(model):
        raise EdgeclsError(f"the model outputs {output_classes(model)} classes but there are {len(labels)} labels ({', '.join(labels[:8])})")
    say(f"dataset: {dataset.summary()}")  # what was read and what was skipped, as train and evaluate say it
    data = ConversionData(dataset, split, labels, image_size)
    test = data.test()

    say(f"float Keras model: {len(test)} test images")
    from edgecls.train.evaluate import keras_predictor

    reference = keras_predictor(model)(test.images)
    output_kind = "probabilities"
    if not outputs_probabilities(reference):
        # DESIGN.md wants softmax outputs; logits still convert, and the runtime softmaxes them.
        output_kind = "logits"
        reference = _softmax(reference)
    report = _new_report(model, dataset, labels, image_size, test, options, output_dir, name, source, run_dir)
    if output_kind == "logits":
        report.notes.append("the model outputs logits, not probabilities; metadata tells the runtime to apply softmax")
    report.rows.append(measure(ParityRow(KERAS, "float Keras model (the reference)"), test.labels, labels, Predictions(reference), None))

    converter = ModeConverter(model, data, options, train_options, say)
    produced: dict[str, bytes] = {}
    for mode in options.modes:
        row = ParityRow(mode, MODE_HELP[mode], file=output_file_name(mode, options.modes))
        report.rows.append(row)
        model_bytes = _convert_and_measure(converter, row, report, test, reference, output_kind, say)
        if model_bytes is not None:
            produced[mode] = model_bytes

    # Written last, so each file's metadata carries its measured metrics and gate verdict.
    for row in report.rows:
        if row.name in produced:
            row.size_bytes = write_model(output_dir / row.file, produced[row.name], model_metadata(report, row, output_kind))
    write_report(report, output_dir)
    # --force: files of the earlier conversion that this one did not remake would now lie
    # beside a parity report that does not describe them.
    for stale in set(earlier) - {output_dir / row.file for row in report.rows if row.file and row.size_bytes}:
        stale.unlink(missing_ok=True)
    return report


def _convert_and_measure(converter: ModeConverter, row: ParityRow, report: ParityReport, test, reference: np.ndarray,
                         output_kind: str, say) -> bytes | None:  # fmt: skip
    """Convert one mode and fill its row; None (and row.error) when it cannot be converted."""
    mode, options = row.name, converter.options
    try:
        converted = converter.convert(mode)
    except EdgeclsError as exc:
        row.error, row.file = str(exc), None
        notice(f"{mode}: not written: {exc}")
        return None
    row.details, row.notes = converted.details, converted.notes
    check = check_ops(converted.model_bytes)
    row.input_type, row.op_counts = check.input_type, check.op_counts
    say(f"parity: {mode} on {len(test)} test images")
    # The interpreter reads labels and normalisation from metadata, as on the device.
    preliminary = embed(converted.model_bytes, model_metadata(report, row, output_kind))
    measure(row, test.labels, report.labels, run_tflite(preliminary, test.images, options.threads), reference)
    reference_accuracy = report.reference.accuracy or 0.0
    row.accuracy_drop = 100.0 * (reference_accuracy - (row.accuracy or 0.0))
    if is_full_integer(mode):
        row.integer_only, row.float_ops = check.integer_only, check.describe_problems()
        if not check.integer_only:
            message = f"not integer-only, so it fails the gate: ops computing in float or not builtin: {row.float_ops}"
            notice(f"{mode}: {message}")
            row.notes.append(message)
        apply_gate(row, reference_accuracy, options.max_drop)
    return converted.model_bytes


def check_output_dir(output_dir: Path, force: bool) -> list[Path]:
    """The `.tflite` files of an earlier conversion in `output_dir`; refused unless --force."""
    earlier = sorted(output_dir.glob("model_*.tflite")) if output_dir.is_dir() else []
    if (earlier or (output_dir / "parity.json").exists()) and not force:
        shown = ", ".join(p.name for p in [*earlier, output_dir / "parity.json"][:3])
        raise EdgeclsError(f"{output_dir} already holds a conversion ({shown}); pass --force to replace it, or --output elsewhere")
    return earlier


def convert_run(run_dir: str | Path, options: ConvertOptions | None = None, output_dir: str | Path | None = None,
                data_override: str | Path | None = None) -> ParityReport:  # fmt: skip
    """Convert a run folder's model.keras, using the run's dataset, split.csv and training options."""
    from edgecls.train.run import MODEL_FILE, SPLIT_FILE as RUN_SPLIT_FILE, load_run

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EdgeclsError(f"{run_dir}: no such run folder or model file")
    for needed, why in ((MODEL_FILE, "the trained model"), (RUN_SPLIT_FILE, "which images are the test split")):
        if not (run_dir / needed).is_file():
            raise EdgeclsError(
                f"{run_dir}: no {needed} ({why}); is this a finished run folder from `edgecls train`? "
                "To convert a model file on its own, pass the .keras file with --data"
            )
    check_output_dir(Path(output_dir) if output_dir is not None else run_dir / CONVERT_DIR, options.force if options else False)
    run = load_run(run_dir, None if data_override is None else str(data_override))
    model = run.model
    if tuple(run.image_size) != image_input_size(model):
        raise EdgeclsError(f"{run_dir}: config.json says image size {list(run.image_size)} but the model takes {list(image_input_size(model))}")
    return convert_model(
        model,
        run.dataset,
        run.split,
        options,
        output_dir if output_dir is not None else run_dir / CONVERT_DIR,
        labels=run.labels,
        name=run.model_name,
        source=str(run.model_path),
        run_dir=str(run_dir),
        train_options=run.options,
    )


def convert_model_file(model_path: str | Path, data: str | Path, options: ConvertOptions | None = None,
                       output_dir: str | Path | None = None, labels: Sequence[str] | None = None,
                       data_format: str = "auto", split_path: str | Path | None = None) -> ParityReport:  # fmt: skip
    """Convert a `.keras` file on `split_path` (the split.csv it was trained with), or on a split
    made afresh by `make_split`; either is saved as split.csv beside the outputs, so the parity
    numbers can be traced to their test images."""
    from edgecls.train.datasets import load_dataset
    from edgecls.train.split import load_split, make_split, save_split

    options = options or ConvertOptions()
    model_path = Path(model_path)
    output_dir = Path(output_dir) if output_dir is not None else model_path.parent / f"{model_path.stem}_{CONVERT_DIR}"
    check_output_dir(output_dir, options.force)  # before minutes of loading and splitting
    model = load_keras_model(model_path)
    dataset = load_dataset(data, data_format)
    if split_path is not None:
        split = load_split(split_path, dataset)
    else:
        # A fresh split cannot know which images trained the model: say so where it matters.
        notice("no --split given: the test split is made afresh, and may hold images this model was trained on")
        split = make_split(dataset, seed=options.seed)
    report = convert_model(model, dataset, split, options, output_dir, labels=labels, name=model.name, source=str(model_path))
    save_split(output_dir / SPLIT_FILE, dataset, split)
    return report


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


def _new_report(model, dataset, labels, image_size, test, options, output_dir, name, source, run_dir) -> ParityReport:
    counts = {label: int(np.sum(test.labels == i)) for i, label in enumerate(labels)}
    _, interpreter = find_interpreter()
    return ParityReport(
        model=name or model.name,
        dataset=str(getattr(dataset, "name", "") or ""),
        labels=labels,
        image_size=image_size,
        test_images=len(test),
        test_class_counts=counts,
        max_drop=options.max_drop,
        io_type=options.io_type,
        source=source or "(in-memory Keras model)",
        run_dir=run_dir,
        output_dir=str(output_dir),
        command=options.command or "edgecls.convert Python API",
        created=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        edgecls_version=edgecls.__version__,
        interpreter=interpreter,
        threads=options.threads or default_threads(),
        options=options.to_dict(),
    )


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


def _progress(verbose: bool):
    def say(message: str) -> None:
        if verbose:
            print(f"edgecls convert: {message}", file=sys.stderr, flush=True)

    return say

"""Convert a trained Keras model into deployable TFLite files and prove them on the test split.

    report = convert_run("runs/ham", ConvertOptions(modes=("float32", "qat")))
    report.gate_passed, report.row("qat").accuracy

Every file is written (atomically) even when its parity gate fails; the report says which
passed, and so does each file's own metadata.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

import edgecls
from edgecls.convert.export import embed, model_metadata, write_model
from edgecls.convert.keras_model import as_float32, image_input_size, output_classes, outputs_probabilities
from edgecls.convert.modes import ModeConverter, is_full_integer
from edgecls.convert.options import MODE_HELP, PTQ_INT8, ConvertOptions, output_file_name
from edgecls.convert.parity import GATE_PASSED, KERAS, ParityReport, ParityRow, Predictions, apply_gate, measure, run_tflite
from edgecls.convert.report import LAYER_PLOT_PREFIX, write_report
from edgecls.convert.samples import ConversionData
from edgecls.convert.verify import check_ops
from edgecls.data.split import SPLIT_FILE
from edgecls.edge_runtime.classifier import default_threads
from edgecls.edge_runtime.interpreter import find_interpreter
from edgecls.edge_runtime.normalization import PIXEL_UNIT, RANGES, InputNormalization
from edgecls.errors import EdgeclsError
from edgecls.log import get_logger, notice

logger = get_logger("convert")

CONVERT_DIR = "convert"


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
    normalization: InputNormalization | None = None,
) -> ParityReport:
    """Convert `model` in every mode of `options`, measure parity on the split's test images,
    write the `.tflite` files and parity.json/.md into `output_dir`, and return the report.

    `model`: a tf_keras model, a Keras 3 model, or an `ImportedModel` from `load_user_model`.
    A Rescaling/Normalization layer at its input is folded into the input normalisation;
    otherwise the model takes `normalization`, or `options.input_range`, or pixel / 255.
    `labels`: the model's output order (default: `dataset.labels`). `train_options`: the
    TrainOptions the model was trained with, so QAT fine-tunes with the same augmentation and
    class balancing (default: neither, as for a model trained elsewhere).
    """
    options = options or ConvertOptions()
    say = _progress(options.verbose)
    output_dir = Path(output_dir)
    earlier = check_output_dir(output_dir, options.force)
    imported = _imported(model, options, normalization)
    model = as_float32(imported.model)
    _check_keep_float(model, options.keep_float)
    image_size = image_input_size(model)
    labels = list(labels if labels is not None else dataset.labels)
    if len(labels) != output_classes(model):
        raise EdgeclsError(f"the model outputs {output_classes(model)} classes but there are {len(labels)} labels ({', '.join(labels[:8])})")
    say(f"dataset: {dataset.summary()}")  # what was read and what was skipped, as train and evaluate say it
    data = ConversionData(dataset, split, labels, image_size, imported.normalization)
    test = data.test()

    say(f"float Keras model: {len(test)} test images, input {imported.normalization.describe()}")
    from edgecls.core.predict import keras_predictor

    reference = keras_predictor(model, normalization=imported.normalization)(test.images)
    output_kind = "probabilities"
    if not outputs_probabilities(reference):
        # DESIGN.md wants softmax outputs; logits still convert, and the runtime softmaxes them.
        output_kind = "logits"
        reference = _softmax(reference)
    report = _new_report(model, dataset, labels, image_size, test, options, output_dir, name, source, run_dir)
    report.input_normalization = imported.normalization.to_dict()
    if train_options is not None:
        from edgecls.core.pretrained_sources import weights_provenance

        report.pretrained_weights = weights_provenance(train_options.model, train_options.weights) or {}
    report.notes.extend(imported.notes)
    if imported.original is not None:
        report.notes.append(_cross_check(imported, test.images, reference, output_kind))
    if imported.range_source in ("detected", "assumed"):
        _check_input_range(imported, data, model, report, say)
    if output_kind == "logits":
        report.notes.append("the model outputs logits, not probabilities; metadata tells the runtime to apply softmax")
    report.rows.append(measure(ParityRow(KERAS, "float Keras model (the reference)"), test.labels, labels, Predictions(reference), None))

    val, groups = _calibration_data(data, labels, options, report)
    converter = ModeConverter(model, data, options, train_options, say, qat_unavailable=imported.qat_unavailable)
    produced: dict[str, bytes] = {}
    for mode in options.modes:
        row = ParityRow(mode, MODE_HELP[mode], file=output_file_name(mode, options.modes))
        report.rows.append(row)
        model_bytes = _convert_and_measure(converter, row, report, test, reference, output_kind, say, val, groups,
                                           keep_float=options.keep_float if mode == PTQ_INT8 else ())  # fmt: skip
        if options.auto_keep_float and mode == PTQ_INT8 and model_bytes is not None and row.gate != GATE_PASSED:
            row, model_bytes = _auto_keep_float(converter, row, model_bytes, report, test, reference, output_kind, say, val, groups)
            report.rows[-1] = row
        if model_bytes is not None:
            produced[mode] = model_bytes

    # Written last, so each file's metadata carries its measured metrics and gate verdict.
    for row in report.rows:
        if row.name in produced:
            row.size_bytes = write_model(output_dir / row.file, produced[row.name], model_metadata(report, row, output_kind))
    written = write_report(report, output_dir)
    # --force: files of the earlier conversion that this one did not remake would now lie
    # beside a parity report that does not describe them.
    for stale in set(earlier) - {output_dir / row.file for row in report.rows if row.file and row.size_bytes} - set(written):
        stale.unlink(missing_ok=True)
    return report


def _check_keep_float(model, keep_float: Sequence[str]) -> None:
    """--keep-float names layers of the model (checked before minutes of conversion)."""
    if not keep_float:
        return
    from edgecls.convert.converter import layer_names

    names = layer_names(model) if hasattr(model, "layers") else []
    unknown = [name for name in keep_float if name not in names]
    if unknown:
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise EdgeclsError(f"`keep_float`: no layer named {', '.join(unknown)} in the model (its layers: {shown or 'none'})", fields="keep_float")


def _auto_keep_float(converter: ModeConverter, row: ParityRow, model_bytes: bytes, report: ParityReport, test, reference,
                     output_kind: str, say, val, groups) -> tuple[ParityRow, bytes]:  # fmt: skip
    """Keep the layer adding most quantization error float, re-measure, and repeat until the
    file passes the gate or `auto_keep_float_limit` layers are float. Returns the first passing
    file's row and bytes; when none passes, the all-int8 file's, naming what was tried."""
    from edgecls.convert.layer_error import errors_from_dict

    options = converter.options
    steps = [_step(row, model_bytes)]
    kept = list(options.keep_float)
    current = row
    while current.gate != GATE_PASSED and len(kept) < options.auto_keep_float_limit + len(options.keep_float):
        if not current.layer_errors:
            break
        ranked = errors_from_dict(current.layer_errors).worst(count=len(current.layer_errors["rows"]))
        candidates = [r["layer"] for r in ranked if r["layer"] not in kept]
        if not candidates:
            break
        kept.append(candidates[0])
        say(f"--auto-keep-float: {row.name} with {', '.join(kept)} float")
        trial = ParityRow(row.name, row.description, file=row.file)
        trial_bytes = _convert_and_measure(converter, trial, report, test, reference, output_kind, say, val, groups, keep_float=tuple(kept))
        if trial_bytes is None:
            steps.append({"float_layers": list(kept), "error": trial.error})
            break
        steps.append(_step(trial, trial_bytes))
        current = trial
        if trial.gate == GATE_PASSED:
            trial.keep_float_steps = steps
            trial.notes.append(f"--auto-keep-float: passes the gate with {', '.join(kept)} float ({len(steps) - 1} layer(s) added)")
            return trial, trial_bytes
    tried = "; ".join(", ".join(s["float_layers"]) or "all int8" for s in steps)
    message = f"--auto-keep-float: no file passed the gate with up to {options.auto_keep_float_limit} float layers (tried: {tried}); the all-int8 file is written"
    notice(f"{row.name}: {message}")
    row.notes.append(message)
    row.keep_float_steps = steps
    return row, model_bytes


def _step(row: ParityRow, model_bytes: bytes) -> dict:
    return {"float_layers": list(row.float_layers), "accuracy": row.accuracy, "accuracy_drop": row.accuracy_drop,
            "low": row.paired.get("low"), "high": row.paired.get("high"), "gate": row.gate, "size_bytes": len(model_bytes),
            "latency_ms": row.latency_ms}  # fmt: skip


def _convert_and_measure(converter: ModeConverter, row: ParityRow, report: ParityReport, test, reference: np.ndarray,
                         output_kind: str, say, val=None, groups: dict | None = None,
                         keep_float: tuple[str, ...] = ()) -> bytes | None:  # fmt: skip
    """Convert one mode and fill its row; None (and row.error) when it cannot be converted."""
    mode, options = row.name, converter.options
    try:
        converted = converter.convert(mode, keep_float) if keep_float else converter.convert(mode)
    except EdgeclsError as exc:
        row.error, row.file = str(exc), None
        notice(f"{mode}: not written: {exc}")
        return None
    row.details, row.notes = converted.details, converted.notes
    check = check_ops(converted.model_bytes, keep_float)
    row.float_layers = check.float_layers
    row.input_type, row.op_counts = check.input_type, check.op_counts
    say(f"parity: {mode} on {len(test)} test images")
    # The interpreter reads labels and normalisation from metadata, as on the device.
    preliminary = embed(converted.model_bytes, model_metadata(report, row, output_kind))
    predictions = run_tflite(preliminary, test.images, options.threads)
    measure(row, test.labels, report.labels, predictions, reference)
    reference_accuracy = report.reference.accuracy or 0.0
    row.accuracy_drop = 100.0 * (reference_accuracy - (row.accuracy or 0.0))
    probabilities = predictions.probabilities
    if is_full_integer(mode):
        row.integer_only, row.float_ops = check.integer_only, check.describe_problems()
        if not check.integer_only:
            message = f"not integer-only, so it fails the gate: ops computing in float or not builtin: {row.float_ops}"
            notice(f"{mode}: {message}")
            row.notes.append(message)
        apply_gate(row, test.labels, reference, probabilities, options.max_drop)
        _layer_errors(converter, row, converted.model_bytes, val, say)
    if val is not None:
        from edgecls.convert.calibrate import calibrate_file

        say(f"calibration: {mode} on {len(val)} validation images")
        row.calibration = calibrate_file(preliminary, val, test, report.labels, groups or {}, options.target_sensitivity,
                                         options.threads, measure_tta=is_full_integer(mode)).to_dict()  # fmt: skip
    return converted.model_bytes


LAYER_ERROR_IMAGES = 64  # enough for stable per-layer RMSEs; every tensor of each is kept in memory


def _layer_errors(converter: ModeConverter, row: ParityRow, model_bytes: bytes, val, say) -> None:
    """The per-layer error table of a full-integer file, on validation images (else the
    calibration sample); the worst layers named when the file is at risk of failing the gate:
    failed, inconclusive, or within the interval but more than half the allowed drop behind."""
    from edgecls.convert.layer_error import measure_layer_errors
    from edgecls.convert.samples import class_balanced_sample

    model = converter.integer_model[0]
    if not hasattr(model, "layers"):  # a graph-only SavedModel: no Keras layers to name
        row.notes.append("no per-layer error report: the model has no Keras layers")
        return
    if val is not None and len(val):
        source, picked = "validation", class_balanced_sample(val.labels, LAYER_ERROR_IMAGES, converter.options.seed)
        images = val.images[picked]
    else:
        source, images = "calibration", converter.calibration.images[:LAYER_ERROR_IMAGES]
    say(f"per-layer error: {row.name} on {len(images)} {source} images")
    try:
        errors = measure_layer_errors(model, model_bytes, images, converter.data.normalization, row.name, source)
    except Exception as exc:  # noqa: BLE001 - the report is an aid: a graph it cannot follow must not stop the conversion
        message = f"no per-layer error report ({exc.__class__.__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})"
        notice(f"{row.name}: {message}")
        row.notes.append(message)
        return
    row.layer_errors = errors.to_dict()
    at_risk = row.gate != GATE_PASSED or (row.accuracy_drop or 0.0) > converter.options.max_drop / 2
    if at_risk and errors.worst():
        message = f"layers adding most quantization error: {errors.describe_worst()}"
        notice(f"{row.name}: {message}")
        row.notes.append(message)


def _calibration_data(data: ConversionData, labels: list[str], options: ConvertOptions, report: ParityReport):
    """The validation images every file's temperature and operating point are fitted on, and the
    class groups to report (options.groups, else the dataset's malignant group if known)."""
    from edgecls.core.clinical_metrics import default_groups

    groups = options.groups if options.groups is not None else default_groups(labels)
    for name, members in groups.items():
        unknown = [m for m in members if m not in labels]
        if unknown:
            raise EdgeclsError(f"`groups` {name}: {', '.join(unknown)} not among the model's labels ({', '.join(labels)})", fields="groups")
    val = data.load("val")
    if not len(val):
        report.notes.append("no validation split: the files are not calibrated and have no operating point")
        return None, groups
    return val, groups


def check_output_dir(output_dir: Path, force: bool) -> list[Path]:
    """The `.tflite` files of an earlier conversion in `output_dir`; refused unless `force`."""
    earlier = sorted([*output_dir.glob("model_*.tflite"), *output_dir.glob(f"{LAYER_PLOT_PREFIX}*.png")]) if output_dir.is_dir() else []
    if (earlier or (output_dir / "parity.json").exists()) and not force:
        shown = ", ".join(p.name for p in [*earlier, output_dir / "parity.json"][:3])
        raise EdgeclsError(f"{output_dir} already holds a conversion ({shown}); pass `force` to replace it, or `output` elsewhere",
                          fields=("force", "output"))
    return earlier


def convert_run(run_dir: str | Path, options: ConvertOptions | None = None, output_dir: str | Path | None = None,
                data_override: str | Path | None = None) -> ParityReport:  # fmt: skip
    """Convert a run folder's model.keras, using the run's dataset, split.csv and training options."""
    from edgecls.core.runs import MODEL_FILE, load_run

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EdgeclsError(f"{run_dir}: no such run folder or model file")
    for needed, why in ((MODEL_FILE, "the trained model"), (SPLIT_FILE, "which images are the test split")):
        if not (run_dir / needed).is_file():
            raise EdgeclsError(
                f"{run_dir}: no {needed} ({why}); is this a finished run folder from `edgecls train`? "
                "To convert a model file on its own (.keras, .h5, SavedModel folder), pass it with `data`",
                fields="data",
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
        normalization=PIXEL_UNIT.with_source("edgecls train convention: pixel / 255"),
    )


def convert_model_file(model_path: str | Path, data: str | Path, options: ConvertOptions | None = None,
                       output_dir: str | Path | None = None, labels: Sequence[str] | None = None,
                       data_format: str = "auto", split_path: str | Path | None = None) -> ParityReport:  # fmt: skip
    """Convert a model file — a Keras 3 or tf_keras `.keras`, an `.h5`, or a SavedModel folder
    (`load_user_model`) — on `split_path` (the split.csv it was trained with), or on a split
    made afresh by `make_split`; either is saved as split.csv beside the outputs, so the parity
    numbers can be traced to their test images."""
    from edgecls.convert.keras_import import load_user_model
    from edgecls.data.datasets import load_dataset
    from edgecls.data.split import load_split, make_split, save_split

    options = options or ConvertOptions()
    model_path = Path(model_path)
    # m.keras -> m_convert/, m.h5 -> m_h5_convert/, m_savedmodel/ -> m_savedmodel_convert/
    name = model_path.stem if model_path.suffix == ".keras" else model_path.name.replace(".", "_")
    output_dir = Path(output_dir) if output_dir is not None else model_path.parent / f"{name}_{CONVERT_DIR}"
    check_output_dir(output_dir, options.force)  # before minutes of loading and splitting
    model = load_user_model(model_path, options.input_range, options.custom_objects)
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


def _imported(model, options: ConvertOptions, normalization: InputNormalization | None):
    """An ImportedModel for whatever `convert_model` was given."""
    from edgecls.convert.keras_import import ImportedModel, import_keras_model
    from edgecls.core.tf_env import import_tf

    if isinstance(model, ImportedModel):
        return model
    if normalization is not None:  # the caller knows (a run folder's model: pixel / 255)
        return ImportedModel(model, normalization, model.name, outside=normalization)
    _, keras = import_tf()
    # An in-memory tf_keras model without input layers keeps the DESIGN.md convention quietly.
    return import_keras_model(model, options.input_range, convention=isinstance(model, keras.Model))


def _cross_check(imported, images: np.ndarray, reference: np.ndarray, output_kind: str) -> str:
    """The rebuilt tf_keras model against the Keras 3 original, on the test images."""
    original = np.asarray(imported.original.predict(imported.outside.apply(images), verbose=0), np.float64)
    if output_kind == "logits":
        original = _softmax(original)
    difference = float(np.max(np.abs(original - reference))) if len(images) else 0.0
    agreement = float(np.mean(original.argmax(1) == reference.argmax(1))) if len(images) else 1.0
    return (
        f"rebuilt tf_keras model vs the original Keras 3 model on the {len(images)} test images: "
        f"max |probability difference| {difference:.1g}, top-1 agreement {100 * agreement:.1f}%"
    )


PROBE_IMAGES = 128
PROBE_MARGIN = 0.10  # accuracy (fraction) another input range must beat the chosen one by


def _check_input_range(imported, data: ConversionData, model, report: ParityReport, say) -> None:
    """Measure the float model on labelled validation images fed each input range: the one
    detected or assumed should be (about) the best; warn, naming --input-range, when not."""
    from edgecls.convert.samples import class_balanced_sample
    from edgecls.core.predict import keras_predictor

    part = "val" if len(data.items("val")) else "train"
    items = data.items(part)
    sample = data.load(part, class_balanced_sample(data.model_labels(items), PROBE_IMAGES, 0))
    if len(sample) < 8:
        return
    accuracy = {}
    for name in RANGES:
        predict = keras_predictor(model, normalization=imported.normalization_for(name))
        accuracy[name] = float(np.mean(predict(sample.images).argmax(axis=1) == sample.labels))
    chosen = imported.outside.range
    say("input range check: " + ", ".join(f"{name} {100 * acc:.0f}%" for name, acc in accuracy.items()))
    measured = ", ".join(f"{name}: {100 * acc:.1f}%" for name, acc in accuracy.items())
    report.notes.append(f"float accuracy on {len(sample)} {part} images by input range (original model's input): {measured}; used {chosen}")
    best = max(accuracy, key=accuracy.get)
    if chosen in accuracy and accuracy[best] >= accuracy[chosen] + PROBE_MARGIN:
        message = (
            f"the float model is {100 * accuracy[chosen]:.0f}% accurate on {len(sample)} {part} images fed {chosen} "
            f"({imported.range_source}) but {100 * accuracy[best]:.0f}% fed {best}: pass --input-range {best} if that is how it was trained"
        )
        notice(message)
        report.notes.append(message)


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


def _progress(verbose: bool) -> Callable[[str], None]:
    """Progress lines go to the `edgecls.convert` logger, unless `ConvertOptions.verbose` is off."""
    return logger.info if verbose else (lambda _message: None)

"""`edgecls convert`: a run folder (or a model file with --data) -> TFLite files + parity report,
over `edgecls.convert_classifier`; `ConversionResult.check()` gives the exit code.

No TensorFlow at import: the CLI imports this module to register the command.
"""

from __future__ import annotations

import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from edgecls.cli.support import show_progress
from edgecls.convert.options import MODE_HELP, ConvertOptions, parse_modes
from edgecls.core.native_stderr import quiet_native_stderr
from edgecls.errors import EdgeclsError


class IoType(str, Enum):
    int8 = "int8"
    uint8 = "uint8"


_DEFAULTS = ConvertOptions()  # every flag's default is the option's: one place, convert/options.py
_MODES_HELP = "; ".join(f"{mode}: {text}" for mode, text in MODE_HELP.items())


def convert(
    source: Path = typer.Argument(
        ...,
        help="A run folder from `edgecls train` (uses its dataset and split.csv), or a model file (needs --data): "
        "a Keras 3 or tf_keras .keras, an .h5, or a SavedModel folder.",
        show_default=False,
    ),
    data: Optional[Path] = typer.Option(
        None, "--data", "-d", help="Dataset for a model file (split afresh); for a run folder, where its dataset is now."
    ),
    labels: Optional[Path] = typer.Option(
        None, "--labels", help="A model file's labels in output order: labels.json or one per line (default: the dataset's sorted classes)."
    ),
    input_range: Optional[str] = typer.Option(
        _DEFAULTS.input_range,
        "--input-range",
        help="What a model file's input takes: 0-1 (pixel/255), 0-255 (raw pixels) or -1-1 (MobileNet's preprocess_input). "
        "Default: raw pixels when the model starts with a Rescaling or Normalization layer, else 0-1, with a warning.",
        show_default=False,
    ),
    data_format: str = typer.Option("auto", "--format", help="Dataset layout for --data: auto, ham10000, folders or hmnist."),
    split: Optional[Path] = typer.Option(
        None, "--split", help="For a model file: the split.csv it was trained with, so parity runs on images it never saw (default: a fresh split)."
    ),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Folder for the .tflite files and parity.json/.md (default: RUN/convert, or MODEL_convert/ beside a model file)."
    ),
    mode: Optional[List[str]] = typer.Option(
        None, "--mode", "-m", help=f"Repeatable or comma-separated (default: {','.join(_DEFAULTS.modes)}). {_MODES_HELP}.", show_default=False
    ),
    io: IoType = typer.Option(
        IoType(_DEFAULTS.io_type), "--io", help="Input/output type of full-integer models: uint8 (the pixel itself; what MediaPipe Tasks and Android load) or int8 (pixel - 128)."
    ),
    qat_epochs: int = typer.Option(_DEFAULTS.qat_epochs, "--qat-epochs", min=1, help="Quantization-aware fine-tuning epochs on the training split."),
    qat_lr: float = typer.Option(_DEFAULTS.qat_learning_rate, "--qat-lr", help="Learning rate of QAT fine-tuning (low: it nudges, not retrains)."),
    qat_batch_size: int = typer.Option(_DEFAULTS.qat_batch_size, "--qat-batch-size", min=1, help="Batch size of QAT fine-tuning."),
    calibration_size: int = typer.Option(_DEFAULTS.calibration_size, "--calibration-size", min=1, help="Class-balanced training images that calibrate int8 ranges."),
    max_drop: float = typer.Option(
        _DEFAULTS.max_drop, "--max-drop", help="Parity gate: most accuracy points a full-integer file may lose against the float Keras model. "
        "Judged with a 95% paired confidence interval: exit 3 when int8 is surely further behind, 4 when the test split is too small to tell."
    ),
    threads: Optional[int] = typer.Option(_DEFAULTS.threads, "--threads", "-t", min=1, help="Interpreter threads for parity and latency (default: min(4, cores))."),
    seed: int = typer.Option(_DEFAULTS.seed, "--seed", help="Seed for the split of a model file, calibration sampling and QAT."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines; the report table and verdict only."),
    force: bool = typer.Option(_DEFAULTS.force, "--force", help="Replace an earlier conversion in the output folder."),
    group: Optional[str] = typer.Option(
        None, "--group", help="A class group reported as one, e.g. malignant=mel,bcc,akiec (default: the dataset's malignant classes, when edgecls knows them)."
    ),
    custom_objects: Optional[Path] = typer.Option(
        None, "--custom-objects", help="A .py file defining a model file's custom layers. This runs that code: pass only your own, or code you trust.",
        show_default=False,
    ),
    keep_float: Optional[List[str]] = typer.Option(
        None, "--keep-float", help="Keras layer names (repeatable or comma-separated) computed in float inside the otherwise int8 "
        "post-training file (with --mode float32,ptq-int8); the parity report's per-layer table says which layers lose most.",
        show_default=False,
    ),
    auto_keep_float: bool = typer.Option(
        _DEFAULTS.auto_keep_float, "--auto-keep-float", help="When the post-training int8 file does not pass the gate, keep its worst layer float, "
        "re-measure, and repeat (up to --auto-keep-float-limit layers) until it passes."
    ),
    auto_keep_float_limit: int = typer.Option(_DEFAULTS.auto_keep_float_limit, "--auto-keep-float-limit", min=1, help="Most layers --auto-keep-float keeps float."),
    target_sensitivity: float = typer.Option(
        _DEFAULTS.target_sensitivity, "--target-sensitivity", help="The group's operating point: the most specific threshold that flags at least this share of its validation images."
    ),
) -> None:
    """Convert a trained model to float32 and int8 TFLite (or other --mode), embed labels and metadata,
    and prove every file on the test split. Exit 0: done, gate passed; 2: error; 3: an int8 file is
    more than --max-drop accuracy points behind float (its 95% interval lies below -max-drop; files
    still written, marked failing); 4: inconclusive, the test split is too small to tell (the interval
    straddles -max-drop; the verdict says how many test images would)."""
    from edgecls import convert_classifier
    from edgecls.cli.output import print_parity_report

    show_progress(not quiet)
    options = ConvertOptions(
        modes=parse_modes(mode) if mode else _DEFAULTS.modes,
        io_type=io.value,
        qat_epochs=qat_epochs,
        qat_learning_rate=qat_lr,
        qat_batch_size=qat_batch_size,
        calibration_size=calibration_size,
        max_drop=max_drop,
        threads=threads,
        seed=seed,
        command=_command_line(),
        force=force,
        input_range=input_range,
        groups=_parse_group(group) if group else None,
        target_sensitivity=target_sensitivity,
        custom_objects=str(custom_objects) if custom_objects is not None else None,
        keep_float=tuple(keep_float or ()),
        auto_keep_float=auto_keep_float,
        auto_keep_float_limit=auto_keep_float_limit,
    )
    with quiet_native_stderr():
        result = convert_classifier(source, options, data=data, labels=labels, output=output, data_format=data_format,
                                    split=split, progress=not quiet)  # fmt: skip
    print_parity_report(result.report)
    plots = sorted(path.name for path in result.output_dir.glob("layer_error_*.png"))
    typer.echo(f"wrote {result.output_dir}: " + ", ".join([*(path.name for path in result.files.values()), "parity.json", "parity.md", *plots]))
    result.check()


def _command_line() -> str:
    # The command as typed, for each file's provenance; the CLI runner in tests has no argv of ours.
    argv = sys.argv[1:] if sys.argv and Path(sys.argv[0]).name in ("edgecls", "__main__.py") else []
    return "edgecls " + shlex.join(argv) if argv else "edgecls convert"



def _parse_group(text: str) -> dict[str, list[str]]:
    """NAME=LABEL,LABEL -> {NAME: [LABEL, ...]}; the labels are checked against the model's later."""
    name, _, members = text.partition("=")
    chosen = [m.strip() for m in members.split(",") if m.strip()]
    if not name.strip() or not chosen:
        raise EdgeclsError(f"--group takes NAME=LABEL,LABEL..., got {text!r}")
    return {name.strip(): chosen}

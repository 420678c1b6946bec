"""`edgecls classify`, `edgecls info` and `edgecls models`: the device commands, over
`edgecls.Classifier` and `edgecls.builtin_models`. numpy, Pillow and LiteRT only."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from edgecls.core.native_stderr import quiet_native_stderr
from edgecls.errors import EXIT_ERROR, EXIT_PARTIAL, EdgeclsError


ALLOW_CONTROL_FLOW_HELP = (
    "Run a model that uses WHILE, IF or CALL_ONCE (refused by default: an image classifier needs none, and a loop "
    "can run forever); each invoke is then still bounded by --invoke-timeout."
)
INVOKE_TIMEOUT_HELP = "Seconds one invoke (one image, or one batch of a folder run) may take before the command is stopped (exit 2)."
# Generous: an invoke of edgecls's models takes milliseconds, and a model whose one invoke needs a
# minute is not one for a device.
DEFAULT_INVOKE_TIMEOUT = 60.0


def check_output(output: Path, inputs) -> None:
    """--output must be a regular file or absent, and not one of the inputs (checked before any
    image is classified, and again when the output is written)."""
    from edgecls.edge_runtime.preprocess import IMAGE_SUFFIXES, UNSUPPORTED_IMAGE_SUFFIXES
    from edgecls.files import check_not_an_input, check_output_target

    check_output_target(output)
    folders = [path for path in inputs if Path(path).is_dir()]
    files = [path for path in inputs if not Path(path).is_dir()]
    check_not_an_input(output, files, folders, IMAGE_SUFFIXES | UNSUPPORTED_IMAGE_SUFFIXES)


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


def classify(
    inputs: List[Path] = typer.Argument(..., help="Image files and/or folders (walked recursively).", show_default=False),
    model: str = typer.Option(..., "--model", "-m", help="A .tflite file, or a built-in model name (see `edgecls models`)."),
    output_format: OutputFormat = typer.Option(OutputFormat.table, "--format", "-f", help="table, json (one array) or csv."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write json/csv here (atomically) instead of stdout."),
    top_k: int = typer.Option(3, "--top-k", "-k", min=1, help="How many labels to report per image."),
    threads: Optional[int] = typer.Option(
        None, "--threads", "-t", min=1,
        help="Interpreter threads (default: min(4, cores) for a few images; 1 for a folder's batches, while decoding keeps the cores busy).",
    ),  # fmt: skip
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Image decode threads, the one invoking the model among them (default: min(4, cores))."),
    min_confidence: float = typer.Option(
        0.0, "--min-confidence", min=0.0, max=1.0,
        help="Below this top probability the label is 'uncertain' (the model's report gives accuracy against coverage to choose it).",
    ),  # fmt: skip
    tta: bool = typer.Option(False, "--tta", help="Average the model over the image's four flips (4x the invokes; see the model card for what it gains)."),
    allow_control_flow: bool = typer.Option(False, "--allow-control-flow", help=ALLOW_CONTROL_FLOW_HELP),
    invoke_timeout: float = typer.Option(DEFAULT_INVOKE_TIMEOUT, "--invoke-timeout", min=0.001, help=INVOKE_TIMEOUT_HELP),
) -> None:
    """Classify images with a .tflite model. Models with a class group (the built-in ones: malignant)
    also report its probability and a flag at the model's threshold. Exit 0: all classified; 1: some
    images failed; 2: nothing could run."""
    from edgecls import Classifier
    from edgecls.cli.output import progress, record_stream
    from edgecls.cli.support import invoke_time_limit
    from edgecls.text import printable

    # Flag mistakes are reported before minutes of classifying, not after.
    if output is not None and output_format == OutputFormat.table:
        raise EdgeclsError("--output needs --format json or csv")
    if output is not None:
        check_output(output, inputs)
    with quiet_native_stderr():
        classifier = Classifier(model, threads=threads, allow_control_flow=allow_control_flow)
    results = classifier.classify_files(inputs, top_k, tta=tta, min_confidence=min_confidence, workers=workers, stream=True)
    # Records are written as they come (memory stays flat on 100,000 images); rows scrolling on
    # the terminal show the progress themselves, so the bar is for tables, files and pipes.
    streams_to_terminal = output is None and output_format != OutputFormat.table and sys.stdout.isatty()
    done = failed = 0
    with invoke_time_limit(invoke_timeout), results, record_stream(output_format.value, output) as write, progress(0 if streams_to_terminal else len(results), "classifying") as advance:
        for result in results:
            done += 1
            if result.error:
                failed += 1
                typer.echo(f"edgecls: skipped {printable(result.error)}", err=True)
            else:
                write(result)
            advance()
    if failed:
        typer.echo(f"edgecls: {failed} of {done} images could not be classified", err=True)
        raise typer.Exit(EXIT_ERROR if failed == done else EXIT_PARTIAL)


def info(
    model: str = typer.Argument(..., help="A .tflite file or a built-in model name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
    allow_control_flow: bool = typer.Option(False, "--allow-control-flow", help=ALLOW_CONTROL_FLOW_HELP),
) -> None:
    """Show a model's labels, input, normalisation, provenance, tensors and file size."""
    from edgecls import Classifier
    from edgecls.cli.output import dumps_json, print_model_info

    with quiet_native_stderr():
        description = Classifier(model, allow_control_flow=allow_control_flow).describe()
    if as_json:
        typer.echo(dumps_json(description))
    else:
        print_model_info(description)


def models() -> None:
    """List the models built into this installation."""
    from edgecls import builtin_models
    from edgecls.edge_runtime.metadata import read_metadata

    found = builtin_models()
    if not found:
        typer.echo("no built-in models are installed")
        return
    from edgecls.text import printable

    for name, path in found.items():
        # One damaged file (a bad install, a half-copied model) must not hide the others.
        try:
            meta = read_metadata(path.read_bytes())
            detail = f"{len(meta.labels)} classes, {meta.input_size[0]}x{meta.input_size[1]}, {meta.quantization}" if meta else ""
            size = f"{path.stat().st_size / 1024:7.1f} KB"
        except (EdgeclsError, OSError) as exc:
            detail, size = f"unreadable ({getattr(exc, 'strerror', None) or exc})", " " * 10
        typer.echo(printable(f"{name:<12} {size}  {detail}"))

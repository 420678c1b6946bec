"""`edgecls bench`: latency, throughput, size and memory of .tflite models, on the device itself.

Device install only (numpy, Pillow, LiteRT): `edgecls.Classifier.benchmark`, imported when the
command runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from edgecls.cli.device import ALLOW_CONTROL_FLOW_HELP, DEFAULT_INVOKE_TIMEOUT, INVOKE_TIMEOUT_HELP
from edgecls.core.native_stderr import quiet_native_stderr
from edgecls.errors import EdgeclsError


def bench(
    models: List[str] = typer.Argument(
        ..., help="Model files and/or built-in names; ratios are against the first.", show_default=False
    ),
    warmup: int = typer.Option(10, "--warmup", min=0, help="Untimed invokes before each measurement."),
    runs: Optional[int] = typer.Option(None, "--runs", "-n", min=1, help="Timed invokes per model and thread count (default 100)."),
    seconds: Optional[float] = typer.Option(None, "--seconds", min=0.001, help="Time-box each measurement instead of --runs."),
    threads: Optional[str] = typer.Option(
        None, "--threads", "-t", help="Comma-separated interpreter thread counts, e.g. 1,2,4 (default: 1 and min(4, cores))."
    ),
    images: Optional[Path] = typer.Option(
        None, "--images", help="Also time decode + resize + invoke end to end on these images (a folder or a file)."
    ),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Decode threads for --images (default: as classify)."),
    tta: bool = typer.Option(False, "--tta", help="Also time flip-averaging (classify --tta: 4 invokes per image), and end to end with --images."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (schema edgecls.bench/1) instead of a table."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write the JSON report here (atomically)."),
    allow_control_flow: bool = typer.Option(False, "--allow-control-flow", help=ALLOW_CONTROL_FLOW_HELP),
    invoke_timeout: float = typer.Option(DEFAULT_INVOKE_TIMEOUT, "--invoke-timeout", min=0.001, help=INVOKE_TIMEOUT_HELP),
) -> None:
    """Benchmark .tflite models: per-image latency p50/p90/p99, images/s, file size, peak memory."""
    from edgecls import Classifier
    from edgecls.cli.output import dumps_json, print_bench_table
    from edgecls.cli.support import invoke_time_limit
    from edgecls.edge_runtime.preprocess import IMAGE_SUFFIXES
    from edgecls.files import check_not_an_input, check_output_target, write_text_atomic
    from edgecls.edge_runtime.bench import parse_threads

    if runs is not None and seconds is not None:
        raise EdgeclsError("give --runs or --seconds, not both")
    thread_counts = parse_threads(threads) if threads is not None else None
    show_progress = not as_json and sys.stderr.isatty()
    if output is not None:
        check_output_target(output)
        check_not_an_input(output, [*models, *([images] if images is not None and not images.is_dir() else [])],
                           [images] if images is not None and images.is_dir() else [], IMAGE_SUFFIXES)  # fmt: skip
    # LiteRT's "INFO: Created ... XNNPACK delegate" once per interpreter
    with quiet_native_stderr(), invoke_time_limit(invoke_timeout):
        report = Classifier(models[0], allow_control_flow=allow_control_flow).benchmark(
            images, runs=runs or 100, seconds=seconds, warmup=warmup, threads=thread_counts, compare=models[1:],
            workers=workers, tta=tta, progress=(lambda m: typer.echo(f"measuring {m}", err=True)) if show_progress else None,
        )  # fmt: skip
    if output is not None:
        write_text_atomic(output, dumps_json(report) + "\n")
    if as_json:
        typer.echo(dumps_json(report))
    else:
        print_bench_table(report)

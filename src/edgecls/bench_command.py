"""`edgecls bench`: latency, throughput, size and memory of .tflite models, on the device itself.

Device install only (numpy, Pillow, LiteRT): the measuring lives in
`edgecls.edge_runtime.bench`, imported when the command runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

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
) -> None:
    """Benchmark .tflite models: per-image latency p50/p90/p99, images/s, file size, peak memory."""
    from edgecls.cli_support import quiet_native_stderr
    from edgecls.edge_runtime.batch import collect_images
    from edgecls.edge_runtime.bench import BenchSettings, parse_threads, run_bench
    from edgecls.edge_runtime.builtin import resolve_model
    from edgecls.edge_runtime.classifier import default_threads

    if runs is not None and seconds is not None:
        raise EdgeclsError("give --runs or --seconds, not both")
    thread_counts = parse_threads(threads) if threads is not None else sorted({1, default_threads()})
    paths = [resolve_model(m) for m in models]
    settings = BenchSettings(
        warmup=warmup,
        runs=None if seconds is not None else (runs or 100),
        seconds=seconds,
        threads=thread_counts,
        images=collect_images([images]) if images is not None else (),
        workers=workers,
        tta=tta,
    )
    show_progress = not as_json and sys.stderr.isatty()
    with quiet_native_stderr():  # LiteRT's "INFO: Created ... XNNPACK delegate" once per interpreter
        report = run_bench(
            paths, settings, on_progress=(lambda m: typer.echo(f"measuring {m}", err=True)) if show_progress else None
        )
    if output is not None:
        from edgecls.io import write_json_atomic

        write_json_atomic(output, report)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        print_bench_table(report)


def print_bench_table(report: dict) -> None:
    from rich.table import Table

    from edgecls.report_format import console as make_console

    has_e2e = any(r["end_to_end"] for m in report["models"] for r in m["results"])
    has_tta = any(r.get("tta") for m in report["models"] for r in m["results"])
    table = Table(show_edge=False, header_style="bold")
    columns = ["model", "threads", "p50 ms", "p90 ms", "p99 ms", "img/s", "speed x", "size KB", "size x"]
    if has_e2e:
        columns += ["e2e img/s", "e2e x", "decode-only img/s", "e2e / decode"]
    if has_tta:
        columns += ["--tta p50 ms", "--tta e2e img/s"] if has_e2e else ["--tta p50 ms"]
    for column in columns:
        table.add_column(column, justify="left" if column == "model" else "right")
    for model in report["models"]:
        for i, r in enumerate(model["results"]):
            lat = r["latency_ms"]
            row = [
                model["name"] if i == 0 else "",
                str(r["threads"]),
                f"{lat['p50']:.3f}",
                f"{lat['p90']:.3f}",
                f"{lat['p99']:.3f}",
                f"{r['images_per_s']:.0f}" if r["images_per_s"] else "-",
                _ratio(r["speed_ratio"]),
                f"{model['file_size_bytes'] / 1024:.1f}",
                _ratio(model["size_ratio"]),
            ]
            if has_e2e:
                e2e = r["end_to_end"] or {}
                row += [
                    f"{e2e['images_per_s']:.0f}" if e2e.get("images_per_s") else "-",
                    _ratio(e2e.get("speed_ratio")),
                    f"{e2e['decode_only_images_per_s']:.0f}" if e2e.get("decode_only_images_per_s") else "-",
                    _ratio(e2e.get("vs_decode_only")),
                ]
            if has_tta:
                flipped = r.get("tta") or {}
                row.append(f"{flipped['latency_ms']['p50']:.3f}" if flipped else "-")
                if has_e2e:
                    e2e_tta = flipped.get("end_to_end") or {}
                    row.append(f"{e2e_tta['images_per_s']:.0f}" if e2e_tta.get("images_per_s") else "-")
            table.add_row(*row)
    console = make_console()
    console.print(table)
    settings, first = report["settings"], report["models"][0]["name"]
    runs = f"{settings['runs']} runs" if settings["runs"] else f"{settings['seconds']:g} s"
    peak = f"{report['peak_rss_mib']:.0f} MiB" if report["peak_rss_mib"] is not None else "n/a"
    console.print(
        f"{runs} after {settings['warmup']} warm-up, random images through to_input, models in turn; "
        f"ratios against {first} (speed x > 1 is faster); peak memory {peak}; "
        f"{report['models'][0]['interpreter']}",
        highlight=False,
    )


def _ratio(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "-"

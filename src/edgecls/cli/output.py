"""Terminal and file output for the CLI: tables, JSON/CSV records, progress bars."""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from pathlib import Path
from typing import Callable, Iterator

# Below this many images a progress bar is just noise.
PROGRESS_MIN_ITEMS = 20


def console(stderr: bool = False):
    """A rich Console; piped or captured output gets 160 columns instead of rich's 80-column
    squeeze, so tables in logs and CI keep whole numbers on one line."""
    from rich.console import Console

    probe = Console(stderr=stderr)
    return probe if probe.is_terminal else Console(stderr=stderr, soft_wrap=False, width=160)


@contextlib.contextmanager
def progress(total: int, description: str) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr for long runs on a terminal; a no-op otherwise."""
    if total < PROGRESS_MIN_ITEMS or not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)


def _csv_row(record: dict, fields) -> dict:
    return {field.key: field.csv(record[field.key]) for field in fields}


def _json_item(record: dict) -> str:
    """One record as `json.dumps(records, indent=2)` prints it inside the array."""
    return "  " + dumps_json(record).replace("\n", "\n  ")


def dumps_json(value) -> str:
    """Valid JSON whatever a model file holds: non-finite numbers (a metadata `NaN`) become null
    (`json_safe`), and `allow_nan=False` makes any that slipped through an error, not `NaN`.
    ASCII only, so a label's control or bidi characters arrive escaped (`\\u202e`)."""
    from edgecls.text import json_safe

    return json.dumps(json_safe(value), indent=2, allow_nan=False)


@contextlib.contextmanager
def record_stream(fmt: str, output: Path | None) -> Iterator[Callable[[object], None]]:
    """`write(result)` for each classified image, in order: json and csv are written as the
    results come (to stdout, or to a temporary file beside `output` that is renamed into place
    when the block ends: complete or absent), so memory stays flat however many images a run
    has; a table is printed at the end. json is `json.dumps(records, indent=2)`'s text, csv one
    header line (the first record's keys) and a row per record."""
    if fmt == "table":
        if output is not None:
            from edgecls.errors import EdgeclsError

            raise EdgeclsError("--output needs --format json or csv")
        records: list[dict] = []
        yield lambda result: records.append(result.to_record())
        if records:
            _print_table(records)
        return
    if output is None:
        yield from _stream_to(sys.stdout, fmt)
        return
    from edgecls.files import atomic_path

    try:
        with atomic_path(output) as tmp, tmp.open("w", encoding="utf-8", newline="") as file:
            yield from _stream_to(file, fmt)
    except OSError as exc:  # a folder, a read-only disk, a full card: complete or absent, and one line
        from edgecls.errors import EdgeclsError

        raise EdgeclsError(f"{output}: cannot write output ({exc.strerror or exc})") from None


def _stream_to(file, fmt: str) -> Iterator[Callable[[object], None]]:
    if fmt == "csv":
        from edgecls.edge_runtime.records import BASE_KEYS, record_fields

        writer, fields = None, []
        # On a terminal a label's escape sequences would act; in a file or a pipe they are data.
        shown = _printable_record if file.isatty() else (lambda record: record)

        def write_row(result) -> None:
            nonlocal writer, fields
            record = result.to_record()
            if writer is None:  # the columns are the first record's (one model: every record's)
                fields = record_fields(record)
                writer = csv.DictWriter(file, fieldnames=[field.key for field in fields], lineterminator="\n")
                writer.writeheader()
            writer.writerow(shown(_csv_row(record, fields)))

        yield write_row
        if writer is None:
            csv.DictWriter(file, fieldnames=BASE_KEYS, lineterminator="\n").writeheader()
        return
    count = 0

    def write(result) -> None:
        nonlocal count
        file.write(("[\n" if not count else ",\n") + _json_item(result.to_record()))
        count += 1

    yield write
    file.write("\n]\n" if count else "[]\n")


def _printable_record(record: dict) -> dict:
    from edgecls.text import printable

    return {key: printable(value) if isinstance(value, str) else value for key, value in record.items()}


def text(value):
    """A rich `Text` of `value`: shown as is (escaped by `edgecls.text.printable`), never read
    as markup, so `lesion[left arm].jpg` or a label holding `[/` prints as written."""
    from rich.text import Text

    from edgecls.text import printable

    return Text(printable(value))


def _print_table(records: list[dict]) -> None:
    from rich.table import Table

    from edgecls.edge_runtime.records import record_fields

    table = Table(show_edge=False, header_style="bold")
    fields = record_fields(records[0])
    for field in fields:
        table.add_column(text(field.header), justify="right" if field.right else "left", overflow="fold")
    for record in records:
        table.add_row(*(text(field.table(record[field.key])) for field in fields))
    console().print(table)


def print_model_info(d: dict) -> None:
    meta = d["metadata"]
    lines = [
        f"file          {d['path']} ({d['file_size_bytes'] / 1024:.1f} KB)",
        f"interpreter   {d['interpreter']}",
    ]
    for kind, tensor in (("input", d["input"]), *(("output", t) for t in d.get("outputs", [d["output"]]))):
        q = tensor["quantization"]
        quant = f"scale={q['scale']:.6g} zero_point={q['zero_point']}" if q else "not quantized"
        lines.append(f"{kind:<13} {tensor['name']}: {tensor['dtype']} {tensor['shape']} ({quant})")
    source = d.get("metadata_source", "edgecls" if d["has_metadata"] else "none")
    if source == "none":
        lines.append("metadata      none (labels are class indices; inputs scaled to 0..1)")
    elif source == "tflite":
        lines.append("metadata      TFLite Model Metadata only (no edgecls entry)")
    lines += [
        f"labels        {', '.join(meta['labels'])}",
        f"input size    {meta['input_size'][0]}x{meta['input_size'][1]}x{meta['channels']}",
        f"normalisation (pixel - {meta['mean']}) / {meta['std']}",
        f"output        {meta['output']}"
        + (f" (edgecls computes them from the '{meta['logits_output']}' output)" if meta.get("logits_output") else ""),
    ]
    for key in ("name", "dataset", "quantization", "created", "edgecls_version"):
        if meta.get(key):
            lines.append(f"{key:<13} {meta[key]}")
    if meta.get("temperature", 1.0) != 1.0:
        lines.append(f"temperature   {meta['temperature']} (applied to the scores; fitted on validation data)")
    for group, members in (meta.get("groups") or {}).items():
        lines.append(f"group         {group}: {', '.join(members)}")
    point = meta.get("operating_point") or {}
    if point:
        lines.append(f"flag          {point['group']} probability >= {point['threshold']}" + _sensitivity(point.get("target_sensitivity")))
    if source == "edgecls":
        for key in ("metrics", "provenance"):
            for k, v in (meta.get(key) or {}).items():
                lines.append(f"{key[:-1] if key == 'metrics' else key:<13} {k}: {v}")
    standard = d.get("tflite_metadata")
    if standard:
        # What MediaPipe Tasks and Android's tools read: shown so a mismatch with the above is seen.
        lines.append("TFLite Model Metadata (read by MediaPipe Tasks, the TFLite Task Library, Android Studio):")
        for key in ("name", "version", "author", "license", "min_parser_version", "label_file", "mean", "std", "associated_files", "description"):
            if standard.get(key) not in (None, "", []):
                lines.append(f"  {key:<19}{standard[key]}")
        if standard.get("labels"):
            lines.append(f"  {'labels':<19}{', '.join(standard['labels'])}")
    else:
        lines.append("TFLite Model Metadata: none (MediaPipe Tasks will show no label names)")
    # Every value above may come from the file: each line made printable (no escape sequences,
    # CR or bidi overrides from a label, a name or the provenance reach the terminal).
    from edgecls.text import printable

    print("\n".join(printable(line) for line in lines))


def _sensitivity(value) -> str:
    """The operating point's target sensitivity, as the file gives it: a number in [0, 1], or
    shown as invalid (it is informative only; the threshold is what the device uses)."""
    if value is None or value == "":
        return ""
    if type(value) in (int, float) and 0 <= value <= 1:
        return f" (chosen for {100 * value:.0f}% sensitivity on validation)"
    return f" (target_sensitivity in the file is invalid: {str(value)[:40]!r})"


def print_parity_report(report) -> None:
    """A rich table, the verdict, and any notes. File names are left to the caller's summary
    line so the table fits a normal terminal."""
    from rich.table import Table

    from edgecls.convert.parity import GATE_FAILED, GATE_INCONCLUSIVE, KERAS
    from edgecls.convert.report import COLUMNS, TERMINAL_HEADERS, calibration_line, normalization_text, table_rows

    out = console()
    title = f"{report.model} on {report.dataset}: test split, {report.test_images} images"
    table = Table(title=title, show_edge=False, header_style="bold", pad_edge=False)
    shown = [i for i, (header, _) in enumerate(COLUMNS) if header != "file"]
    for i in shown:
        header, right = COLUMNS[i]
        table.add_column(TERMINAL_HEADERS.get(header, header), justify="right" if right else "left", overflow="fold")
    for row, cells in zip(report.rows, table_rows(report)):
        style = "red" if row.gate == GATE_FAILED or row.error else ("yellow" if row.gate == GATE_INCONCLUSIVE else ("bold" if row.name == KERAS else None))
        table.add_row(*(cells[i] for i in shown), style=style)
    out.print(table)
    out.print(f"input normalisation: {normalization_text(report)}", highlight=False)
    for note in report.notes + [f"{row.name}: {note}" for row in report.rows for note in row.notes]:
        out.print(f"note: {note}", highlight=False)
    for row in report.rows:
        if row.calibration:
            out.print(calibration_line(row), highlight=False)
    verdict_style = {GATE_FAILED: "bold red", GATE_INCONCLUSIVE: "bold yellow"}.get(report.gate, "green")
    out.print(report.verdict, style=verdict_style, highlight=False)


def print_bench_table(report: dict) -> None:
    from rich.table import Table

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
                text(model["name"]) if i == 0 else "",
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
    out = console()
    out.print(table)
    settings, first = report["settings"], report["models"][0]["name"]
    runs = f"{settings['runs']} runs" if settings["runs"] else f"{settings['seconds']:g} s"
    peak = f"{report['peak_rss_mib']:.0f} MiB" if report["peak_rss_mib"] is not None else "n/a"
    out.print(
        f"{runs} after {settings['warmup']} warm-up, random images through to_input, models in turn; "
        f"ratios against {first} (speed x > 1 is faster); peak memory {peak}; "
        f"{report['models'][0]['interpreter']}",
        highlight=False,
    )


def _ratio(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "-"

"""The parity report as files (parity.json, parity.md) and as a table on the terminal."""

from __future__ import annotations

from pathlib import Path

from edgecls.convert.parity import GATE_PASSED, KERAS, ParityReport, ParityRow
from edgecls.files import write_json_atomic, write_text_atomic

JSON_FILE = "parity.json"
MARKDOWN_FILE = "parity.md"
LAYER_PLOT_PREFIX = "layer_error_"

COLUMNS = (
    # (header, right-aligned)
    ("model", False),
    ("file", False),
    ("size KB", True),
    ("x f32", True),
    ("accuracy", True),
    ("bal. acc.", True),
    ("macro AUC", True),
    ("agree", True),
    ("KL", True),
    ("int8 - float [95% CI]", True),
    ("ms/img", True),
    ("int only", False),
    ("gate", False),
)

TERMINAL_HEADERS = {"int8 - float [95% CI]": "Δ acc [95% CI]", "accuracy": "acc", "bal. acc.": "bal acc", "macro AUC": "AUC", "size KB": "KB", "ms/img": "ms"}


def table_rows(report: ParityReport) -> list[list[str]]:
    float32_size = next((row.size_bytes for row in report.rows if row.name == "float32" and row.size_bytes), None)
    return [_cells(row, float32_size) for row in report.rows]


def _cells(row: ParityRow, float32_size: int | None) -> list[str]:
    if row.error:
        return [row.name, *["-"] * (len(COLUMNS) - 2), f"conversion failed: {row.error}"]
    ratio = f"{row.size_bytes / float32_size:.2f}" if row.size_bytes and float32_size else "-"
    size = f"{row.size_bytes / 1024:.1f}" if row.size_bytes else "-"
    integer = "-" if row.integer_only is None else ("yes" if row.integer_only else f"NO: {row.float_ops}")
    if row.float_layers and row.integer_only:
        integer = f"mixed: {', '.join(row.float_layers)} float"
    return [
        row.name,
        row.file or ("(reference)" if row.name == KERAS else "-"),
        size,
        ratio,
        _percent(row.accuracy),
        _percent(row.balanced_accuracy),
        _number(row.macro_auc, 3),
        _percent(row.agreement),
        _number(row.mean_kl, 4),
        difference_text(row),
        _number(row.latency_ms, 2),
        integer,
        (row.gate if row.gate == GATE_PASSED else row.gate.upper()) if row.gate else "-",
    ]


def difference_text(row: ParityRow) -> str:
    """int8 - float accuracy in points with its interval, e.g. "-1.4 [-3.9, +0.8]"."""
    p = row.paired
    return f"{p['difference']:+.1f} [{p['low']:+.1f}, {p['high']:+.1f}]" if p else "-"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def to_markdown(report: ParityReport) -> str:
    headers = [header for header, _ in COLUMNS]
    align = ["---:" if right else ":---" for _, right in COLUMNS]
    counts = ", ".join(f"{label} {n}" for label, n in report.test_class_counts.items())
    lines = [
        f"# Conversion parity: {report.model}",
        "",
        f"- Source: `{report.source}`" + (f" (run `{report.run_dir}`)" if report.run_dir else ""),
        f"- Dataset: {report.dataset}; test split: {report.test_images} images ({counts})",
        f"- Input: {report.image_size[0]}x{report.image_size[1]}x3; full-integer I/O: {report.io_type}",
        f"- Input normalisation: {normalization_text(report)}",
        f"- Interpreter: {report.interpreter}, {report.threads or 'default'} threads; latency is the median "
        "per image on the converting machine (to_input + invoke), not a device benchmark",
        f"- Created {report.created} by edgecls {report.edgecls_version}: `{report.command}`",
        "",
        f"**{report.verdict}**",
        "",
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join(align) + " |",
    ]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |" for cells in table_rows(report)]
    lines += [
        "",
        "accuracy, bal. acc. (balanced accuracy), macro AUC (one-vs-rest ROC AUC, averaged over classes): on the "
        "test split. agree: top-1 agreement with float Keras; KL: mean KL divergence from float Keras "
        "(nats). x f32: size relative to model_float32.tflite.",
        "",
        gate_explanation(report),
    ]
    lines += calibration_markdown(report)
    lines += keep_float_markdown(report)
    lines += layer_error_markdown(report)
    notes = report.notes + [f"{row.name}: {note}" for row in report.rows for note in row.notes]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    detailed = [row for row in report.rows if row.details or row.error]
    if detailed:
        lines += ["", "## How each file was made", ""]
        for row in detailed:
            facts = [f"{key}: {value}" for key, value in row.details.items() if value not in (None, "") and value != row.name]
            lines.append(f"- {row.name}: " + (f"failed: {row.error}" if row.error else "; ".join(facts)))
    return "\n".join(lines) + "\n"


def gate_explanation(report: ParityReport) -> str:
    """What the gate column and the interval mean, for parity.md."""
    from edgecls.convert.paired import METHOD

    points = f"{report.max_drop:g} accuracy point{'' if abs(report.max_drop) == 1 else 's'}"
    return (
        "int8 - float: the file's accuracy minus float Keras's on the same test images, in points, with its "
        f"95% confidence interval ({METHOD}). gate: full-integer files may lose at most {points} "
        f"(`--max-drop`): passed when the interval's lower end is at or above -{report.max_drop:g}, FAILED "
        f"(exit code 3) when its upper end is below it, INCONCLUSIVE (exit code 4) when it straddles it: the test "
        "split is too small to tell. A file that computes in float where it should not fails whatever its accuracy."
    )


def calibration_line(row: ParityRow) -> str:
    """One terminal line: the temperature, its effect, and the operating point on test."""
    c = row.calibration
    line = f"calibration: {row.name} temperature {c['temperature']:.3f}, test ECE {c['ece_before']:.3f} -> {c['ece_after']:.3f}"
    point, test = c.get("operating_point") or {}, c.get("group_test") or {}
    if point:
        line += (f"; {point['group']} at >= {point['threshold']:.3f}: test sensitivity {_percent(test.get('sensitivity'))}, "
                 f"specificity {_percent(test.get('specificity'))}")  # fmt: skip
    if c.get("tta"):
        t = c["tta"]
        line += f"; --tta on val: accuracy {_percent(t['accuracy'])} -> {_percent(t['tta_accuracy'])}, bal. acc. {_percent(t['balanced_accuracy'])} -> {_percent(t['tta_balanced_accuracy'])}"
    return line


def calibration_markdown(report: ParityReport) -> list[str]:
    """Per file: the temperature its metadata carries and what it does to the calibration error,
    the group's operating point (chosen on validation, measured on test), accuracy against
    coverage, and flip-averaging's trade-off."""
    rows = [row for row in report.rows if row.calibration]
    if not rows:
        return []
    lines = ["", "## Probabilities: calibration, operating point, abstention, flip-averaging", "",
             "Each file's temperature is fitted on the validation split to that file's own outputs and stored in "
             "its metadata; the device applies it. ECE: expected calibration error of the top-1 probability "
             "(10 bins), test split.", "",
             "| file | temperature | ECE before | ECE after | group | threshold | val sens. / spec. | test sens. / spec. | group AUC |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|"]  # fmt: skip
    for row in rows:
        c = row.calibration
        point, test = c.get("operating_point") or {}, c.get("group_test") or {}
        lines.append(
            f"| {row.name} | {c['temperature']:.3f} | {c['ece_before']:.3f} | {c['ece_after']:.3f} | "
            f"{point.get('group', '-')} | {_number(point.get('threshold'), 3)} | "
            f"{_percent(point.get('val_sensitivity'))} / {_percent(point.get('val_specificity'))} | "
            f"{_percent(test.get('sensitivity'))} / {_percent(test.get('specificity'))} | {_number(test.get('auc'), 3)} |"
        )
    if any((row.calibration.get("operating_point") or {}) for row in rows):
        target = next(row.calibration["operating_point"]["target_sensitivity"] for row in rows if row.calibration.get("operating_point"))
        lines += ["", f"threshold: of the group probabilities that flag at least {100 * target:.0f}% of the group's "
                  "validation images (`--target-sensitivity`), the most specific; `classify` flags images at or above it."]  # fmt: skip
    last = rows[-1]
    lines += ["", f"Abstention, {last.name} (test split, calibrated): with `classify --min-confidence P`, images below P "
              "are `uncertain`.", "", "| P | answered | accuracy |", "|---:|---:|---:|"]  # fmt: skip
    lines += [f"| {r['min_confidence']:.1f} | {_percent(r['coverage'])} | {_percent(r['accuracy'])} |" for r in last.calibration["coverage"]]
    flipped = [row for row in rows if row.calibration.get("tta")]
    if flipped:
        lines += ["", "Flip-averaging (`classify --tta`: 4 invokes per image), validation split:", "",
                  "| file | accuracy | with --tta | bal. acc. | with --tta | macro AUC | with --tta | time x |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for row in flipped:
            t = row.calibration["tta"]
            lines.append(f"| {row.name} | {_percent(t['accuracy'])} | {_percent(t['tta_accuracy'])} | "
                         f"{_percent(t['balanced_accuracy'])} | {_percent(t['tta_balanced_accuracy'])} | "
                         f"{_number(t['macro_auc'], 3)} | {_number(t['tta_macro_auc'], 3)} | {t['time_ratio']:.1f} |")  # fmt: skip
    return lines


def normalization_text(report: ParityReport) -> str:
    norm = report.input_normalization or {"description": "pixel / 255 (0..1)", "source": "edgecls convention"}
    values = f" (mean {norm['mean']}, std {norm['std']})" if "mean" in norm else ""
    return f"{norm.get('description')}{values}; {norm.get('source') or 'edgecls convention'}"


def keep_float_markdown(report: ParityReport) -> list[str]:
    """--auto-keep-float: every file tried, all int8 first."""
    lines = []
    for row in report.rows:
        if not row.keep_float_steps:
            continue
        lines += ["", f"## --auto-keep-float: {row.file or row.name}", "",
                  "| float layers | accuracy | int8 - float [95% CI] | gate | size KB | ms/img |", "|---|---:|---:|---|---:|---:|"]  # fmt: skip
        for step in row.keep_float_steps:
            layers = ", ".join(step["float_layers"]) or "(all int8)"
            if step.get("error"):
                lines.append(f"| {layers} | - | - | conversion failed: {step['error']} | - | - |")
                continue
            interval = f"{-step['accuracy_drop']:+.1f} [{step['low']:+.1f}, {step['high']:+.1f}]"
            lines.append(f"| {layers} | {_percent(step['accuracy'])} | {interval} | {step['gate']} | "
                         f"{step['size_bytes'] / 1024:.1f} | {_number(step['latency_ms'], 2)} |")  # fmt: skip
    return lines


def layer_plot_name(row: ParityRow) -> str:
    return f"{LAYER_PLOT_PREFIX}{row.name}.png"


def layer_error_markdown(report: ParityReport) -> list[str]:
    from edgecls.convert.layer_error import errors_from_dict, markdown_table

    lines = []
    for row in report.rows:
        if row.layer_errors:
            lines += ["", f"## Per-layer quantization error: {row.file or row.name}", ""]
            lines += markdown_table(errors_from_dict(row.layer_errors))
            lines += ["", f"![per-layer error, {row.name}]({layer_plot_name(row)})"]
    return lines


def write_report(report: ParityReport, output_dir: Path) -> list[Path]:
    """parity.json, parity.md and one per-layer error plot per full-integer file; the paths written."""
    from edgecls.convert.layer_error import errors_from_dict, plot_layer_errors

    written = [output_dir / layer_plot_name(row) for row in report.rows if row.layer_errors]
    for row, path in zip([row for row in report.rows if row.layer_errors], written):
        plot_layer_errors(errors_from_dict(row.layer_errors), path)
    written.append(write_json_atomic(output_dir / JSON_FILE, report.to_dict()))
    written.append(write_text_atomic(output_dir / MARKDOWN_FILE, to_markdown(report)))
    return written

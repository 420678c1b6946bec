"""Embed `ModelMetadata` in each converted file and write it atomically: one file is all a
device needs (labels, input size, normalisation, and how far to trust it)."""

from __future__ import annotations

from pathlib import Path

from edgecls.convert.parity import ParityReport, ParityRow
from edgecls.convert.retype_io import logits_output_name
from edgecls.edge_runtime.metadata import ModelMetadata, write_metadata
from edgecls.edge_runtime.normalization import PIXEL_UNIT
from edgecls.files import write_bytes_atomic

# DESIGN.md model conventions: float input is pixel / 255, output softmax probabilities.
# A model from elsewhere records its own normalisation (report.input_normalization).
MEAN = list(PIXEL_UNIT.mean)
STD = list(PIXEL_UNIT.std)


def model_metadata(report: ParityReport, row: ParityRow, output: str = "probabilities") -> ModelMetadata:
    """Metadata for one file; before parity is measured the metrics are simply empty."""
    return ModelMetadata(
        labels=list(report.labels),
        input_size=tuple(report.image_size),
        channels=3,
        mean=list(report.input_normalization.get("mean", MEAN)),
        std=list(report.input_normalization.get("std", STD)),
        output=output,
        name=report.model,
        dataset=report.dataset,
        quantization=row.details.get("quantization", row.name),
        created=report.created,
        edgecls_version=report.edgecls_version,
        metrics=_metrics(report, row),
        provenance=_provenance(report, row),
        temperature=row.calibration.get("temperature", 1.0),
        groups=row.calibration.get("groups", {}),
        operating_point=row.calibration.get("operating_point", {}),
    )


def _metrics(report: ParityReport, row: ParityRow) -> dict:
    if row.accuracy is None:
        return {}
    reference = report.reference
    metrics = {
        "split": "test",
        "test_images": report.test_images,
        "accuracy": row.accuracy,
        "balanced_accuracy": row.balanced_accuracy,
        "macro_auc": row.macro_auc,
        "agreement_with_float": row.agreement,
        "mean_kl_vs_float": row.mean_kl,
        "float_keras_accuracy": reference.accuracy,
        "accuracy_drop_points": row.accuracy_drop,
    }
    if row.paired:  # the parity gate's evidence: int8 - float accuracy and its interval, points
        metrics.update({
            "int8_minus_float_points": row.paired["difference"],
            "int8_minus_float_low_points": row.paired["low"],
            "int8_minus_float_high_points": row.paired["high"],
            "interval_confidence": row.paired["confidence"],
            "discordant_images": row.paired["discordant"],
        })  # fmt: skip
    return {key: _rounded(value) for key, value in metrics.items() if value is not None}


def _provenance(report: ParityReport, row: ParityRow) -> dict:
    provenance = {
        "source_model": report.source,
        "run_dir": report.run_dir,
        "command": report.command,
        "conversion_mode": row.name,
        "parity_gate": row.gate or "not gated",
        "max_drop_points": report.max_drop if row.gate else None,
        # A mixed file (--keep-float) is not integer-only, though the gate accepts its declared float layers.
        "integer_only": row.integer_only and not row.float_layers if row.integer_only is not None else None,
        "mixed_precision": "int8 with float layers: " + ", ".join(row.float_layers) if row.float_layers else None,
        "input_normalization": _normalization_source(report),
        "pretrained_weights": _weights_text(report.pretrained_weights),
        "pretrained_weights_license": report.pretrained_weights.get("license"),
    }
    provenance.update({key: value for key, value in row.details.items() if key != "quantization"})
    return {key: value for key, value in provenance.items() if value not in (None, "", [], {})}


def _normalization_source(report: ParityReport) -> str | None:
    norm = report.input_normalization
    return f"{norm.get('description')}: {norm.get('source')}" if norm.get("source") else None


def _weights_text(weights: dict) -> str | None:
    """The weights a model was trained from, with their attribution and where they came from."""
    if not weights:
        return None
    parts = [weights.get("name"), weights.get("attribution"), weights.get("url")]
    return "; ".join(str(part) for part in parts if part)


def _rounded(value):
    return round(value, 6) if isinstance(value, float) else value


def embed(model_bytes: bytes, metadata: ModelMetadata) -> bytes:
    # The file says whether it has the logits output (full-integer files do), so the metadata
    # always matches the graph.
    metadata.logits_output = logits_output_name(model_bytes)
    return write_metadata(model_bytes, metadata)


def write_model(path: Path, model_bytes: bytes, metadata: ModelMetadata) -> int:
    """Write the file with its metadata, atomically; returns its size in bytes."""
    data = embed(model_bytes, metadata)
    write_bytes_atomic(path, data)
    return len(data)

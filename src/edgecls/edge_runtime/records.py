"""One image's result and THE record schema: the keys, order and formatting that `classify`'s JSON,
CSV and table all take from here, and the prediction options a run is made with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from edgecls.edge_runtime.classifier import Prediction
from edgecls.errors import EdgeclsError


@dataclass(frozen=True)
class PredictionOptions:
    """How each image is predicted: `top_k` labels reported; `tta`: average over the image's four
    flips (4 invokes); `min_confidence`: below this top probability the label is "uncertain"."""

    top_k: int = 3
    tta: bool = False
    min_confidence: float = 0.0

    def __post_init__(self) -> None:
        if type(self.top_k) is not int or self.top_k < 1:
            raise EdgeclsError(f"top_k must be a positive integer, got {self.top_k!r}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise EdgeclsError(f"min_confidence must be in [0, 1], got {self.min_confidence!r}")


# A model with class groups adds `<group>_probability` (each group's probability) and `flag` (its
# operating point's verdict) between top_k and latency_ms; one model, so every record of a run has
# the same keys, in this order.
GROUP_SUFFIX = "_probability"


@dataclass(frozen=True)
class Field:
    """One key of a classified image's record: its JSON/CSV key, its table column, and how each
    output writes the value (JSON writes the record's value itself)."""

    key: str
    header: str
    right: bool  # right-aligned in the table
    csv: Callable[[Any], Any]
    table: Callable[[Any], str]


def _same(value: Any) -> Any:
    return value


def _number(digits: int) -> Callable[[Any], str]:
    return lambda value: f"{value:.{digits}f}"


def _top_k_csv(top: list[dict]) -> str:
    return ";".join(f"{t['label']}:{t['probability']:.6f}" for t in top)


def _top_k_table(top: list[dict]) -> str:  # the first is the label column already
    return ", ".join(f"{t['label']} {t['probability']:.2f}" for t in top[1:])


FIELDS = {
    "path": Field("path", "image", False, _same, str),
    "label": Field("label", "label", False, _same, str),
    "probability": Field("probability", "prob.", True, _same, _number(3)),
    "top_k": Field("top_k", "top-k", False, _top_k_csv, _top_k_table),
    "flag": Field("flag", "flag", False, _same, lambda flag: "FLAG" if flag else "-"),
    "latency_ms": Field("latency_ms", "ms", True, _same, _number(2)),
}
# The keys of a record from a model without class groups (a CSV header when nothing was classified).
BASE_KEYS = ["path", "label", "probability", "top_k", "latency_ms"]


def record_fields(record: dict) -> list[Field]:
    """The fields of a classified image's record, in its order (group probabilities included)."""
    fields = []
    for key in record:
        if key in FIELDS:
            fields.append(FIELDS[key])
        elif key.endswith(GROUP_SUFFIX):
            fields.append(Field(key, f"p({key[: -len(GROUP_SUFFIX)]})", True, _same, _number(3)))
    return fields


@dataclass
class ImageResult:
    path: str
    prediction: Prediction | None = None
    error: str | None = None

    def to_record(self) -> dict:
        """The image's record ({"path", "error"} for an image that failed), in FIELDS' order."""
        if self.prediction is None:
            return {"path": self.path, "error": self.error}
        p = self.prediction
        record = {
            "path": self.path,
            "label": p.label,
            "probability": round(p.probability, 6),
            "top_k": [{"label": label, "probability": round(prob, 6)} for label, prob in p.top_k],
        }
        record.update({f"{name}{GROUP_SUFFIX}": round(value, 6) for name, value in p.groups.items()})
        if p.flag is not None:
            record["flag"] = p.flag
        record["latency_ms"] = round(p.latency_ms, 3)
        return record

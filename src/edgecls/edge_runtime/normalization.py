"""What a model's float input is, in terms of the uint8 pixel: THE one definition.

A model takes `(pixel - mean) / std`, per channel, with pixels 0..255 — the same convention
as `ModelMetadata.mean/std`, so what a conversion calibrates, fine-tunes and measures with is
what the device is told to feed. edgecls's own models take pixel / 255 (`PIXEL_UNIT`).
Models from elsewhere may take raw pixels (a Rescaling or Normalization layer inside does the
rest) or [-1, 1] (MobileNet's `preprocess_input`); `from_range` names those.

No TensorFlow here: training, conversion and the device runtime all import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

# --input-range values: name -> (mean, std) in pixel space.
RANGES = {
    "0-1": (0.0, 255.0),  # pixel / 255
    "0-255": (0.0, 1.0),  # the pixel itself (a Rescaling/Normalization layer inside the model)
    "-1-1": (127.5, 127.5),  # pixel / 127.5 - 1, as tf.keras.applications' mobilenet preprocess_input
}
_RANGE_ALIASES = {"0..1": "0-1", "0..255": "0-255", "-1..1": "-1-1", "raw": "0-255", "unit": "0-1"}
_DESCRIPTIONS = {"0-1": "pixel / 255 (0..1)", "0-255": "raw pixels (0..255)", "-1-1": "pixel / 127.5 - 1 (-1..1)"}


def range_name(value: str) -> str:
    """The canonical --input-range name for `value`, or ValueError."""
    name = str(value).strip().lower()
    name = _RANGE_ALIASES.get(name, name)
    if name not in RANGES:
        raise ValueError(f"unknown input range {value!r}; choose from: {', '.join(RANGES)}")
    return name


@dataclass(frozen=True)
class InputNormalization:
    """model input = (pixel - mean) / std, per channel (3 values each), pixels 0..255."""

    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (255.0, 255.0, 255.0)
    source: str = field(default="", compare=False)  # how it was found: shown in reports

    def __post_init__(self) -> None:
        mean = tuple(float(v) for v in np.broadcast_to(np.asarray(self.mean, np.float64).ravel(), (3,)))
        std = tuple(float(v) for v in np.broadcast_to(np.asarray(self.std, np.float64).ravel(), (3,)))
        if not all(np.isfinite(mean + std)) or not all(s > 0 for s in std):
            raise ValueError(f"input normalisation needs finite means and positive stds, got mean {mean}, std {std}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @classmethod
    def from_range(cls, name: str, source: str = "") -> "InputNormalization":
        mean, std = RANGES[range_name(name)]
        return cls((mean,) * 3, (std,) * 3, source)

    @classmethod
    def from_metadata(cls, metadata) -> "InputNormalization":
        """From a `ModelMetadata` (its mean/std lists hold 1 or 3 values)."""
        return cls(tuple(metadata.mean), tuple(metadata.std), "model metadata")

    def with_source(self, source: str) -> "InputNormalization":
        return replace(self, source=source)

    @property
    def range(self) -> str | None:
        """"0-1", "0-255" or "-1-1" when it is one of those, else None."""
        for name, (mean, std) in RANGES.items():
            if np.allclose(self.mean, mean, rtol=0, atol=1e-6) and np.allclose(self.std, std, rtol=1e-9, atol=1e-9):
                return name
        return None

    def describe(self) -> str:
        if self.range:
            return _DESCRIPTIONS[self.range]
        return f"(pixel - [{_numbers(self.mean)}]) / [{_numbers(self.std)}]"

    def then_affine(self, scale: Sequence[float] | float, offset: Sequence[float] | float) -> "InputNormalization":
        """The normalisation of `scale * x + offset` applied after this one (a Rescaling or a
        Normalization layer at the model's input folded into what is fed to it)."""
        a = np.broadcast_to(np.asarray(scale, np.float64).ravel(), (3,))
        b = np.broadcast_to(np.asarray(offset, np.float64).ravel(), (3,))
        if not np.all(a > 0):
            raise ValueError(f"cannot fold a non-positive input scale {a.tolist()}")
        mean, std = np.asarray(self.mean), np.asarray(self.std)
        # a * (p - m) / s + b == (p - (m - b * s / a)) / (s / a)
        return InputNormalization(tuple(_clean(mean - b * std / a)), tuple(_clean(std / a)), self.source)

    def apply(self, images: np.ndarray) -> np.ndarray:
        """uint8 (..., 3) pixels -> float32 model input."""
        x = np.asarray(images).astype(np.float32)
        if any(self.mean):
            x -= np.asarray(self.mean, np.float32)
        # A scalar divide when the channels agree: bit-identical to the former `pixel / 255`.
        std = np.float32(self.std[0]) if len(set(self.std)) == 1 else np.asarray(self.std, np.float32)
        return x / std

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "range": self.range, "description": self.describe(),
                "source": self.source}  # fmt: skip


# DESIGN.md's model convention: what `edgecls train` models take.
PIXEL_UNIT = InputNormalization.from_range("0-1", "edgecls convention: pixel / 255")


def _clean(values: np.ndarray) -> list[float]:
    # 1 / (1 / 255) is 255.00000000000003: round away float noise, keep real digits (123.675).
    return [float(round(v, 6)) if abs(v - round(v, 6)) < 1e-9 * max(1.0, abs(v)) else float(v) for v in values]


def _numbers(values: Sequence[float]) -> str:
    return ", ".join(f"{v:g}" for v in values)

"""Keyword overrides on an options dataclass (`TrainOptions`, `ConvertOptions`): the
`train_classifier(data, epochs=5)` and `convert_classifier(run, max_drop=0.5)` form."""

from __future__ import annotations

import dataclasses
from typing import Any

from edgecls.errors import EdgeclsError


def with_overrides(options, overrides: dict[str, Any], cls, what: str):
    """`options` (or defaults) with keyword overrides; an unknown name is an EdgeclsError."""
    options = options if options is not None else cls()
    if not isinstance(options, cls):
        raise EdgeclsError(f"{what} options must be a {cls.__name__}, got {type(options).__name__}")
    if not overrides:
        return options
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise EdgeclsError(f"unknown {cls.__name__} field(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return dataclasses.replace(options, **overrides)

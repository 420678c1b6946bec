"""Helpers the benchmarks share: recording figures, fair A/B timing."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

# name -> figures, filled by the benchmarks, printed by the conftest's terminal summary.
FIGURES: dict[str, dict] = {}


def median_s(benchmark) -> float | None:
    """The benchmark's median seconds per call (None under --benchmark-disable)."""
    stats = getattr(benchmark, "stats", None)
    return float(stats.stats.median) if stats is not None else None


def record(benchmark, figures: dict, key: str | None = None) -> None:
    """Store figures in the benchmark's extra_info (JSON) and in the terminal summary."""
    clean = {k: _plain(v) for k, v in figures.items()}
    benchmark.extra_info.update(clean)
    FIGURES[key or benchmark.name] = clean


def _plain(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float):
        return round(value, 4)
    return value


def interleaved_medians(functions: dict[str, Callable], rounds: int = 300, warmup: int = 20) -> dict[str, float]:
    """Median ms of each function, called in turn round after round.

    On a shared machine the load drifts over seconds; alternating A, B, A, B... gives each
    candidate the same conditions, so the ratio is fair even when the absolute numbers are not.
    """
    for _ in range(warmup):
        for fn in functions.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in functions}
    clock = time.perf_counter_ns
    for _ in range(rounds):
        for name, fn in functions.items():
            start = clock()
            fn()
            samples[name].append((clock() - start) / 1e6)
    return {name: float(np.median(v)) for name, v in samples.items()}

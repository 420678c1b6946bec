"""(c) Cold start: a fresh `python -m edgecls classify --model int8.tflite one.jpg`, wall time and
peak memory of the child (from its own rusage: no /usr/bin/time needed, works on macOS too).

The same job through the library alone (no CLI) shows what typer/rich add.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from benchmarks.bench_data import LABELS
from benchmarks.bench_util import median_s, record

WALL_TARGET_S = 0.35
RSS_TARGET_MIB = 60.0
ROUNDS = 5
ANY_LABEL = tuple(label.encode() for label in LABELS)

LIBRARY_CLASSIFY = """
import json, sys
from pathlib import Path
from edgecls.edge_runtime.batch import classify_paths
from edgecls.edge_runtime.classifier import TFLiteClassifier
classifier = TFLiteClassifier(sys.argv[1])
print(json.dumps([r.to_record() for r in classify_paths(classifier, [Path(sys.argv[2])])]))
"""


class Child:
    """Run a command to completion; keep every run's peak RSS (MiB) and the last stdout."""

    def __init__(self, argv: list[str]):
        self.argv, self.peaks_mib, self.stdout = argv, [], b""

    def __call__(self) -> int:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        self.stdout = proc.stdout.read()
        proc.stdout.close()
        # wait4 returns this child's own rusage (RUSAGE_CHILDREN would mix in every earlier child).
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        self.peaks_mib.append(usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024))
        return proc.returncode


pytestmark = pytest.mark.skipif(not hasattr(os, "wait4"), reason="needs os.wait4 (POSIX)")


def _measure(benchmark, argv: list[str], name: str, expect: tuple[bytes, ...], with_target: bool) -> None:
    child = Child(argv)
    benchmark.group = "cold start, one image"
    rc = benchmark.pedantic(child, rounds=ROUNDS, warmup_rounds=1)
    assert rc == 0 and any(e in child.stdout for e in expect), child.stdout[-500:]
    median = median_s(benchmark)
    peak = max(child.peaks_mib)
    figures = {"wall_median_s": median, "peak_rss_mib": round(peak, 1)}
    if with_target:
        figures |= {
            "target": f"< {WALL_TARGET_S} s wall and < {RSS_TARGET_MIB:g} MiB",
            "meets_wall": bool(median is not None and median < WALL_TARGET_S),
            "meets_rss": bool(peak < RSS_TARGET_MIB),
        }
    record(benchmark, figures, name)


def test_cli_cold_start(benchmark, edge_models, one_jpeg):
    argv = [sys.executable, "-m", "edgecls", "classify", "--model", str(edge_models["int8"]), str(one_jpeg)]
    _measure(benchmark, argv, "CLI cold start", ANY_LABEL, with_target=True)


def test_cli_cold_start_json(benchmark, edge_models, one_jpeg):
    argv = [sys.executable, "-m", "edgecls", "classify", "--model", str(edge_models["int8"]), str(one_jpeg), "-f", "json"]
    _measure(benchmark, argv, "CLI cold start --format json", (b'"label"',), with_target=True)


def test_library_cold_start(benchmark, edge_models, one_jpeg):
    argv = [sys.executable, "-c", LIBRARY_CLASSIFY, str(edge_models["int8"]), str(one_jpeg)]
    _measure(benchmark, argv, "library cold start (no CLI)", (b'"label"',), with_target=False)


def test_python_floor(benchmark):
    """The floor: a bare interpreter importing numpy, Pillow and LiteRT, nothing else."""
    argv = [sys.executable, "-c", "import numpy, PIL.Image, ai_edge_litert.interpreter; print('ok')"]
    _measure(benchmark, argv, "import numpy+Pillow+LiteRT", (b"ok",), with_target=False)

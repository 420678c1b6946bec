"""(c) Cold start: a fresh `python -m edgecls classify --model int8.tflite one.jpg`, wall time and
peak memory of the child (its own rusage from os.wait4: no /usr/bin/time needed, works on macOS).

The same job through the library alone (no CLI) shows what typer/rich add.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from benchmarks.bench_data import LABELS
from benchmarks.bench_util import interleaved_medians, median_s, record

WALL_TARGET_S = 0.35
RSS_TARGET_MIB = 60.0
ANY_LABEL = tuple(label.encode() for label in LABELS)

LIBRARY_CLASSIFY = """
import json, sys
from pathlib import Path
from edgecls.edge_runtime.batch import classify_paths
from edgecls.edge_runtime.classifier import TFLiteClassifier
classifier = TFLiteClassifier(sys.argv[1])
print(json.dumps([r.to_record() for r in classify_paths(classifier, [Path(sys.argv[2])])]))
"""


# Linux keeps the high-water RSS of the address space a process had before execve(): a child
# forked (or vforked) from this pytest process, with TensorFlow loaded, would report ~1 GiB.
# So a tiny launcher (a fresh `python -S`, ~10 MiB) starts the command and reports its rusage.
LAUNCHER = """
import json, os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
wall = time.perf_counter() - start
unit = 1024 * 1024 if sys.platform == "darwin" else 1024  # macOS: bytes; Linux: KiB
rc = os.waitstatus_to_exitcode(status)
sys.stderr.write(json.dumps({"rc": rc, "wall_s": wall, "peak_rss_mib": usage.ru_maxrss / unit}))
"""


class Child:
    """Run a command to completion (the timed call); keep its last stdout."""

    def __init__(self, argv: list[str]):
        self.argv, self.stdout = argv, b""

    def __call__(self) -> int:
        proc = subprocess.run(self.argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_env())
        self.stdout = proc.stdout
        return proc.returncode


def _env() -> dict[str, str]:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def peak_rss_mib(argv: list[str], runs: int = 2) -> float:
    """The command's own peak resident memory (max over `runs`), measured through the launcher."""
    peaks = []
    for _ in range(runs):
        proc = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, *argv], capture_output=True, env=_env())
        report = json.loads(proc.stderr.decode().strip().splitlines()[-1])
        assert report["rc"] == 0, proc.stdout[-500:]
        peaks.append(report["peak_rss_mib"])
    return max(peaks)


pytestmark = pytest.mark.skipif(not hasattr(os, "wait4"), reason="peak memory needs os.wait4 (POSIX)")


def _measure(
    benchmark,
    argv: list[str],
    name: str,
    expect: tuple[bytes, ...],
    with_target: bool,
    rounds: int = 3,
    extra: dict | None = None,
) -> None:
    child = Child(argv)
    benchmark.group = "cold start, one image"
    rc = benchmark.pedantic(child, rounds=rounds, warmup_rounds=1)
    assert rc == 0 and any(e in child.stdout for e in expect), child.stdout[-500:]
    median = median_s(benchmark)
    peak = peak_rss_mib(argv)
    figures = {"wall_median_s": median, "peak_rss_mib": round(peak, 1), **(extra or {})}
    if with_target:
        figures |= {
            "target": f"< {WALL_TARGET_S} s wall and < {RSS_TARGET_MIB:g} MiB",
            "meets_wall": bool(median is not None and median < WALL_TARGET_S),
            "meets_rss": bool(peak < RSS_TARGET_MIB),
        }
    record(benchmark, figures, name)


def _library_argv(model, image) -> list[str]:
    return [sys.executable, "-c", LIBRARY_CLASSIFY, str(model), str(image)]


def test_cli_cold_start(benchmark, edge_models, one_jpeg):
    argv = [sys.executable, "-m", "edgecls", "classify", "--model", str(edge_models["int8"]), str(one_jpeg)]
    # What the CLI layer (typer, its pydantic coercion, rich) adds to the same job, timed in
    # alternation with the library-only run so both see the same machine load.
    library = Child(_library_argv(edge_models["int8"], one_jpeg))
    ab = interleaved_medians({"cli": Child(argv), "library": library}, rounds=3, warmup=0)
    extra = {
        "ab_cli_s": ab["cli"] / 1000,
        "ab_library_s": ab["library"] / 1000,
        "cli_layer_s": (ab["cli"] - ab["library"]) / 1000,
    }
    _measure(benchmark, argv, "CLI cold start", ANY_LABEL, with_target=True, rounds=5, extra=extra)


def test_cli_cold_start_json(benchmark, edge_models, one_jpeg):
    argv = [sys.executable, "-m", "edgecls", "classify", "--model", str(edge_models["int8"]), str(one_jpeg), "-f", "json"]
    _measure(benchmark, argv, "CLI cold start --format json", (b'"label"',), with_target=True)


def test_library_cold_start(benchmark, edge_models, one_jpeg):
    argv = _library_argv(edge_models["int8"], one_jpeg)
    _measure(benchmark, argv, "library cold start (no CLI)", (b'"label"',), with_target=False)


# The floor under a one-image classify: a bare script with numpy, Pillow and LiteRT that loads the
# same model, decodes the same file the same way and invokes once. Nothing edgecls adds (typer,
# rich, metadata, checks, output formatting) is in it.
FLOOR_ONE_IMAGE = """
import sys
import numpy as np
from PIL import Image
from ai_edge_litert.interpreter import Interpreter
interpreter = Interpreter(model_path=sys.argv[1])
interpreter.allocate_tensors()
inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
h, w = (int(d) for d in inp["shape"][1:3])
with Image.open(sys.argv[2]) as img:
    img.draft("RGB", (w, h))
    pixels = np.asarray(img.convert("RGB").resize((w, h), Image.Resampling.BILINEAR))[None]
if inp["dtype"] == np.int8:
    pixels = (pixels.astype(np.int16) - 128).astype(np.int8)
elif inp["dtype"] == np.float32:
    pixels = pixels.astype(np.float32) / 255.0
interpreter.set_tensor(inp["index"], pixels)
interpreter.invoke()
print("class", int(np.argmax(interpreter.get_tensor(out["index"])[0])))
"""
FLOOR_TARGET = 2.0  # a one-image `edgecls classify` within 2x of the floor's wall time


def test_cli_cold_start_vs_floor(benchmark, ham10000_model, heavy_jpeg_paths):
    """`edgecls classify --model ham10000 PHOTO` (a real original when present) against the bare
    floor script on the same file, in alternation: wall time and peak memory of each."""
    from benchmarks import bench_data

    image = (bench_data.real_heavy_jpegs() or heavy_jpeg_paths)[0]
    cli = [sys.executable, "-m", "edgecls", "classify", "--model", "ham10000", str(image)]
    floor = [sys.executable, "-c", FLOOR_ONE_IMAGE, str(ham10000_model), str(image)]
    ab = interleaved_medians({"floor": Child(floor), "cli": Child(cli)}, rounds=5, warmup=1)
    ratio = ab["cli"] / ab["floor"]
    extra = {
        "image": image.name,
        "floor_wall_s": ab["floor"] / 1000,
        "cli_wall_s": ab["cli"] / 1000,
        "vs_floor": ratio,
        "floor_peak_rss_mib": peak_rss_mib(floor),
        "target_vs_floor": f"<= {FLOOR_TARGET}x the floor's wall time, measured side by side",
        "meets_vs_floor": bool(ratio <= FLOOR_TARGET),
    }
    _measure(benchmark, cli, "CLI cold start vs floor", ANY_LABEL, with_target=False, rounds=3, extra=extra)


def test_python_floor(benchmark):
    """The floor: a bare interpreter importing numpy, Pillow and LiteRT, nothing else."""
    argv = [sys.executable, "-c", "import numpy, PIL.Image, ai_edge_litert.interpreter; print('ok')"]
    _measure(benchmark, argv, "import numpy+Pillow+LiteRT", (b"ok",), with_target=False)


IMPORT_EXTRA_RSS_TARGET_MIB = 2.0


def test_import_edgecls(benchmark):
    """`import edgecls`, what a notebook or an app pays before using anything: the package loads
    its API lazily (no numpy, pandas or TensorFlow), so it should cost about a bare interpreter."""
    argv = [sys.executable, "-c", "import edgecls; print(len(edgecls.__all__))"]
    bare = [sys.executable, "-c", "print('ok')"]
    ab = interleaved_medians({"import": Child(argv), "bare": Child(bare)}, rounds=5, warmup=1)
    extra_rss = peak_rss_mib(argv) - peak_rss_mib(bare)
    extra = {
        "ab_import_edgecls_s": ab["import"] / 1000,
        "ab_bare_python_s": ab["bare"] / 1000,
        "extra_rss_mib": round(extra_rss, 2),
        "target": f"< {IMPORT_EXTRA_RSS_TARGET_MIB:g} MiB over a bare interpreter",
        "meets_rss": bool(extra_rss < IMPORT_EXTRA_RSS_TARGET_MIB),
    }
    _measure(benchmark, argv, "import edgecls", (b"2",), with_target=False, extra=extra)

"""(b) A folder of 600x450 JPEGs classified end to end (decode, resize, invoke) by the device path.

(d) Baselines: decoding each JPEG at full size before resizing, and the sequential loop a user
would write without edgecls (full decode, resize, float model, one image after another).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from PIL import Image

from benchmarks import bench_data
from benchmarks.bench_util import FIGURES, median_s, record
from edgecls.edge_runtime.batch import classify_paths
from edgecls.edge_runtime.classifier import TFLiteClassifier
from edgecls.edge_runtime.preprocess import RESAMPLE, load_image

SIZE = bench_data.INPUT_SIZE
DECODE_IMAGES = bench_data.JPEG_UNIQUE  # distinct pictures only: no copies in the decode timings
E2E_TARGET = 500.0  # images/s
NAIVE_IMAGES = 500  # the slow baseline needs fewer images for a stable images/s


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class CpuClock:
    """Wall and CPU (all threads) seconds spent inside calls of `fn`."""

    def __init__(self, fn):
        self.fn, self.cpu, self.calls = fn, 0.0, 0

    def __call__(self):
        start = time.process_time()
        try:
            return self.fn()
        finally:
            self.cpu += time.process_time() - start
            self.calls += 1


@pytest.mark.parametrize("mode", ["int8", "float32"])
def test_classify_folder(benchmark, edge_models, jpeg_paths, mode):
    """`batch.classify_paths` on 1,000 JPEGs, default threads and decode workers (as the CLI)."""
    classifier = TFLiteClassifier(edge_models[mode])
    for _ in classify_paths(classifier, jpeg_paths[:16]):  # warm the interpreter and the page cache
        pass
    run = CpuClock(lambda: list(classify_paths(classifier, jpeg_paths)))
    benchmark.group = "end to end, 1,000 JPEGs 600x450"
    results = benchmark.pedantic(run, rounds=3, warmup_rounds=0)
    assert len(results) == len(jpeg_paths)
    assert not [r.error for r in results if r.error]
    assert {r.prediction.label for r in results} <= set(bench_data.LABELS)
    median = median_s(benchmark)
    cpu_ms = 1000 * run.cpu / (run.calls * len(jpeg_paths))
    cores = _cores()
    images_per_s = len(jpeg_paths) / median if median else None
    record(
        benchmark,
        {
            "images": len(jpeg_paths),
            "images_per_s": images_per_s,
            "cpu_ms_per_image": cpu_ms,
            # What the same CPU work gives when the cores are not shared with other jobs.
            "cpu_bound_images_per_s": cores * 1000 / cpu_ms,
            "cores": cores,
            "threads": classifier.num_threads,
            "mean_jpeg_kb": float(np.mean([p.stat().st_size for p in jpeg_paths[: bench_data.JPEG_UNIQUE]])) / 1024,
            "target_images_per_s": E2E_TARGET,
            "meets_target": bool(images_per_s and images_per_s >= E2E_TARGET),
        },
        f"classify 1000 JPEGs {mode}",
    )


def _decode_full(path) -> np.ndarray:
    """No draft mode: decode all 600x450 pixels, then resize with the same filter."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB").resize((SIZE[1], SIZE[0]), RESAMPLE), dtype=np.uint8)


def test_decode_draft(benchmark, jpeg_paths):
    """`preprocess.load_image`: JPEG draft mode (DCT scaling) before the resize."""
    paths = jpeg_paths[:DECODE_IMAGES]
    with Image.open(paths[0]) as img:
        img.draft("RGB", (SIZE[1], SIZE[0]))
        draft_size = img.size
    assert draft_size == (150, 113), "draft mode should decode 600x450 at 1/4 scale for a 94x94 model"
    benchmark.group = "decode + resize, 200 JPEGs"
    arrays = benchmark.pedantic(lambda: [load_image(p, SIZE) for p in paths], rounds=3, warmup_rounds=1)
    assert arrays[0].shape == (*SIZE, 3) and arrays[0].dtype == np.uint8
    median = median_s(benchmark)
    record(
        benchmark,
        {"ms_per_image": 1000 * median / len(paths) if median else None, "draft_decode_size": list(draft_size)},
        "decode draft",
    )


def test_decode_full_baseline(benchmark, jpeg_paths):
    paths = jpeg_paths[:DECODE_IMAGES]
    benchmark.group = "decode + resize, 200 JPEGs"
    arrays = benchmark.pedantic(lambda: [_decode_full(p) for p in paths], rounds=3, warmup_rounds=1)
    median = median_s(benchmark)
    ms = 1000 * median / len(paths) if median else None
    draft_ms = FIGURES.get("decode draft", {}).get("ms_per_image")
    # How different the model's input is with draft decoding (0..255 scale).
    diff = np.mean([np.abs(a.astype(np.int16) - load_image(p, SIZE)).mean() for a, p in zip(arrays[:50], paths)])
    record(
        benchmark,
        {
            "ms_per_image": ms,
            "draft_speedup": ms / draft_ms if ms and draft_ms else None,
            "mean_abs_pixel_diff_vs_draft": float(diff),
        },
        "decode full (baseline)",
    )


def test_naive_loop_baseline(benchmark, edge_models, jpeg_paths):
    """What a user writes without edgecls: full decode, resize, /255, float model, one by one."""
    from edgecls.edge_runtime.interpreter import make_interpreter

    paths = jpeg_paths[:NAIVE_IMAGES]
    interpreter, _ = make_interpreter(edge_models["float32"].read_bytes(), num_threads=None)
    inp, out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]

    def loop():
        labels = []
        for path in paths:
            x = _decode_full(path).astype(np.float32)[None] / 255.0
            interpreter.set_tensor(inp, x)
            interpreter.invoke()
            labels.append(int(np.argmax(interpreter.get_tensor(out)[0])))
        return labels

    benchmark.group = "end to end, 1,000 JPEGs 600x450"
    labels = benchmark.pedantic(loop, rounds=1, warmup_rounds=0)
    assert len(labels) == len(paths)
    median = median_s(benchmark)
    images_per_s = len(paths) / median if median else None
    ours = FIGURES.get("classify 1000 JPEGs float32", {}).get("images_per_s")
    record(
        benchmark,
        {
            "images": len(paths),
            "images_per_s": images_per_s,
            "edgecls_float32_speedup": ours / images_per_s if ours and images_per_s else None,
        },
        "naive loop (baseline)",
    )

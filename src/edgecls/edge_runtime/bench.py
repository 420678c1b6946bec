"""Measure .tflite classifiers the way a device runs them: latency, throughput, size, memory.

No TensorFlow: `edgecls bench` runs with the device install, so the same command measures a
workstation and a Raspberry Pi. Inputs are random uint8 images sent through
`TFLiteClassifier.to_input` into a reused buffer, exactly the path `edgecls classify` takes.
Models are timed in turn, round after round, so a ratio between two of them is fair on a busy
machine; end to end is set against the decode-only rate of the same files in the same run.
"""

from __future__ import annotations

import gc
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edgecls.edge_runtime.classifier import TFLiteClassifier
from edgecls.errors import EdgeclsError

SCHEMA = "edgecls.bench/1"
PERCENTILES = (50, 90, 99)
# Distinct random images cycled through the timed runs, so the input is not one cached tensor.
DISTINCT_IMAGES = 8


@dataclass
class BenchSettings:
    warmup: int = 10
    runs: int | None = 100  # timed invokes per model and thread count ...
    seconds: float | None = None  # ... or time-boxed instead (runs then ignored)
    threads: Sequence[int] = (1,)
    images: Sequence[Path] = ()  # optional: also time decode + resize + invoke on these files
    workers: int | None = None  # decode threads for the end-to-end pass
    seed: int = 0
    tta: bool = False  # also time flip-averaging (classify --tta: 4 invokes per image)
    allow_control_flow: bool = False  # run files with WHILE/IF/CALL_ONCE (ops.check_operators)

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise EdgeclsError(f"`warmup` must be >= 0, got {self.warmup}", fields="warmup")
        if self.seconds is not None and self.seconds <= 0:
            raise EdgeclsError(f"`seconds` must be > 0, got {self.seconds}", fields="seconds")
        if self.seconds is None and (self.runs is None or self.runs < 1):
            raise EdgeclsError(f"`runs` must be >= 1, got {self.runs}", fields="runs")
        if not self.threads or any(t < 1 for t in self.threads):
            raise EdgeclsError(f"`threads` must be positive integers, got {list(self.threads)}", fields="threads")


@dataclass
class ModelResult:
    """One model: its file facts and one measurement per thread count."""

    name: str
    path: str
    file_size_bytes: int
    input: dict
    quantization: str
    interpreter: str
    results: list[dict] = field(default_factory=list)
    size_ratio: float = 1.0  # file size / the first model's

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "path": self.path,
            "file_size_bytes": self.file_size_bytes,
            "size_ratio": self.size_ratio,
            "input": self.input,
            "quantization": self.quantization,
            "interpreter": self.interpreter,
            "results": self.results,
        }


def parse_threads(text: str) -> list[int]:
    """'1,2,4' -> [1, 2, 4] (order kept, duplicates dropped)."""
    values: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise EdgeclsError(f"--threads takes a comma-separated list of integers, got {text!r}") from None
        if value < 1:
            raise EdgeclsError(f"--threads must be positive integers, got {text!r}")
        if value not in values:
            values.append(value)
    if not values:
        raise EdgeclsError(f"--threads takes a comma-separated list of integers, got {text!r}")
    return values


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99 (linear interpolation), mean, min, max of latencies in ms."""
    data = np.asarray(samples_ms, dtype=np.float64)
    if data.size == 0:
        raise ValueError("no samples")
    p = np.percentile(data, PERCENTILES)
    stats = {f"p{q}": float(v) for q, v in zip(PERCENTILES, p)}
    stats |= {"mean": float(data.mean()), "min": float(data.min()), "max": float(data.max())}
    return {k: round(v, 4) for k, v in stats.items()}


def peak_rss_mib() -> float | None:
    """This process's peak resident memory so far, in MiB (None where `resource` is missing)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux and the BSDs report KiB; macOS reports bytes.
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def random_images(classifier: TFLiteClassifier, count: int = DISTINCT_IMAGES, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    h, w = classifier.input_size
    return [rng.integers(0, 256, (h, w, classifier.channels), dtype=np.uint8) for _ in range(count)]


def time_invokes(
    classifier: TFLiteClassifier, warmup: int, runs: int | None, seconds: float | None, seed: int = 0
) -> list[float]:
    """Latencies (ms) of `scores(to_input(image, buffer))`: quantize in, invoke, dequantize out."""
    return time_interleaved([classifier], warmup, runs, seconds, seed)[0]


def time_interleaved(
    classifiers: Sequence[TFLiteClassifier], warmup: int, runs: int | None, seconds: float | None, seed: int = 0,
    tta: bool = False,
) -> list[list[float]]:
    """Latencies (ms) of each classifier, timed in turn: A, B, C, A, B, C...

    On a shared machine the load drifts over seconds; one model measured after another sees
    different conditions (and the one measured second loses or wins by chance), so speed ratios
    are only fair when every round gives each model the same moment. `seconds` time-boxes the
    whole pass at `seconds` per model.
    """
    invokers = []
    for classifier in classifiers:
        images, buffer = random_images(classifier, seed=seed), classifier.new_input_buffer()
        invokers.append((classifier, images, buffer))
    for i in range(warmup):
        for classifier, images, buffer in invokers:
            classifier.scores(classifier.to_input(images[i % len(images)], buffer))
    samples: list[list[float]] = [[] for _ in invokers]
    clock = time.perf_counter_ns
    deadline = clock() + int(seconds * len(invokers) * 1e9) if seconds is not None else None
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection in the middle of a 1 ms invoke is noise, not the model
    try:
        i = 0
        while True:
            for (classifier, images, buffer), into in zip(invokers, samples):
                image = images[i % len(images)]
                start = clock()
                if tta:  # the four flips, averaged: what `classify --tta` pays per image
                    classifier.predict(image, buffer=buffer, tta=True)
                else:
                    classifier.scores(classifier.to_input(image, buffer))
                into.append((clock() - start) / 1e6)
            i += 1
            if deadline is not None:
                if clock() >= deadline:
                    break
            elif i >= runs:  # type: ignore[operator]
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


def decode_only(paths: Sequence[Path], size: tuple[int, int], workers: int, channels: int = 3) -> float:
    """The floor under end-to-end speed: Pillow's JPEG draft decode and the bilinear resize to the
    model's input, alone, in `workers` threads, on the same files (seconds for all of them)."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    from edgecls.edge_runtime.preprocess import RESAMPLE

    mode = "RGB" if channels == 3 else "L"

    def decode(path: Path) -> np.ndarray | None:
        try:
            with Image.open(path) as img:
                img.draft(mode, (size[1], size[0]))
                return np.asarray(img.convert(mode).resize((size[1], size[0]), RESAMPLE))
        except Exception:  # a broken file costs the floor what it costs edgecls: a failed decode
            return None

    start = time.perf_counter()
    if workers <= 1:
        for path in paths:
            decode(path)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(decode, paths):
                pass
    return time.perf_counter() - start


def time_end_to_end(classifier: TFLiteClassifier, paths: Sequence[Path], workers: int | None, threads: int | None = None,
                    tta: bool = False) -> dict:  # fmt: skip
    """Classify `paths` once through `batch.classify_paths` (decode, resize, invoke, top-k),
    between two decode-only passes over the same files with as many threads (the floor)."""
    from edgecls.edge_runtime.batch import PredictionOptions, classify_paths, default_workers

    workers = workers or default_workers()
    # Warm the interpreter and the file cache on a few images; that pass is not timed.
    for _ in classify_paths(classifier, list(paths[: min(8, len(paths))]), workers=workers):
        pass
    floor_s = decode_only(paths, classifier.input_size, workers, classifier.channels)
    start = time.perf_counter()
    errors = sum(1 for result in classify_paths(classifier, list(paths), PredictionOptions(tta=tta), workers=workers, threads=threads) if result.error)
    elapsed = time.perf_counter() - start
    floor_s = (floor_s + decode_only(paths, classifier.input_size, workers, classifier.channels)) / 2
    images_per_s = len(paths) / elapsed if elapsed > 0 else None
    floor_per_s = len(paths) / floor_s if floor_s > 0 else None
    return {
        "images": len(paths),
        "errors": errors,
        "seconds": round(elapsed, 4),
        "images_per_s": round(images_per_s, 2) if images_per_s else None,
        "workers": workers,
        "decode_only_images_per_s": round(floor_per_s, 2) if floor_per_s else None,
        "vs_decode_only": round(images_per_s / floor_per_s, 4) if images_per_s and floor_per_s else None,
    }


def _model_name(path: Path, names: set[str]) -> str:
    name = path.stem or str(path)
    base, k = name, 2
    while name in names:  # two files with one stem (a/model.tflite, b/model.tflite)
        name = f"{base}#{k}"
        k += 1
    names.add(name)
    return name


def run_bench(
    model_paths: Sequence[Path],
    settings: BenchSettings,
    on_progress: Callable[[str], None] | None = None,
) -> dict:
    """Measure every model at every thread count; ratios are against the first model."""
    if not model_paths:
        raise EdgeclsError("give at least one model")
    # Load every model once up front, so a bad path fails in a second, not after minutes.
    first_threads = settings.threads[0]
    loaded: list[TFLiteClassifier | None] = [TFLiteClassifier(p, num_threads=first_threads, allow_control_flow=settings.allow_control_flow)
                                                 for p in model_paths]
    names: set[str] = set()
    models: list[ModelResult] = []
    for path, classifier in zip(model_paths, loaded):
        assert classifier is not None
        d = classifier.describe()
        models.append(
            ModelResult(
                name=_model_name(Path(path), names),
                path=str(path),
                file_size_bytes=classifier.file_size,
                input={"dtype": d["input"]["dtype"], "shape": d["input"]["shape"]},
                quantization=classifier.metadata.quantization or d["input"]["dtype"],
                interpreter=_interpreter_version(classifier.interpreter_package),
            )
        )
    paths = list(settings.images)
    for threads in settings.threads:
        classifiers = []
        for index, path in enumerate(model_paths):
            classifier = loaded[index] if threads == first_threads else None
            if classifier is None:
                with warnings.catch_warnings():  # "no metadata" was said when it first loaded
                    warnings.simplefilter("ignore")
                    classifier = TFLiteClassifier(path, num_threads=threads, allow_control_flow=settings.allow_control_flow)
            classifiers.append(classifier)
        if on_progress:
            on_progress(f"{len(models)} model{'s' if len(models) > 1 else ''}, in turn: {threads} thread{'s' if threads > 1 else ''}")
        all_samples = time_interleaved(classifiers, settings.warmup, settings.runs, settings.seconds, settings.seed)
        tta_samples = (time_interleaved(classifiers, settings.warmup, settings.runs, settings.seconds, settings.seed, tta=True)
                       if settings.tta else [None] * len(classifiers))  # fmt: skip
        for model, classifier, samples, flipped in zip(models, classifiers, all_samples, tta_samples):
            stats = percentiles(samples)
            if paths and on_progress:
                on_progress(f"{model.name}: {threads} thread{'s' if threads > 1 else ''}, end to end")
            model.results.append(
                {
                    "threads": threads,
                    "runs": len(samples),
                    "latency_ms": stats,
                    "images_per_s": round(1000.0 / stats["mean"], 2) if stats["mean"] > 0 else None,
                    "speed_ratio": 1.0,
                    "end_to_end": time_end_to_end(classifier, paths, settings.workers, threads) if paths else None,
                    "peak_rss_mib": peak_rss_mib(),
                }
            )
            if flipped is not None:
                model.results[-1]["tta"] = {
                    "latency_ms": percentiles(flipped),
                    "end_to_end": time_end_to_end(classifier, paths, settings.workers, threads, tta=True) if paths else None,
                }
        del classifiers
        loaded = [None] * len(loaded)  # free the interpreters before the next thread count loads
    _add_ratios(models)
    return {
        "schema": SCHEMA,
        "edgecls_version": _edgecls_version(),
        "platform": {
            "system": platform.system(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
        },
        "settings": {
            "warmup": settings.warmup,
            "runs": None if settings.seconds is not None else settings.runs,
            "seconds": settings.seconds,
            "threads": list(settings.threads),
            "images": len(paths),
            "workers": settings.workers,
            "seed": settings.seed,
            "latency": "to_input + set_tensor + invoke + get_tensor (dequantized), one image",
            "order": "interleaved: each round times every model once, in turn, at one thread count",
            "ratios": "size_ratio = size / first model's; speed_ratio = first model's p50 / p50 (>1 is faster)",
            "end_to_end": "classify_paths on the images (batched, decode threads = workers), between two "
            "decode-only passes (Pillow draft decode + bilinear resize, as many threads); vs_decode_only = its share",
            "peak_rss_mib": "this process's high-water resident memory, cumulative over the run",
        },
        "peak_rss_mib": peak_rss_mib(),
        "models": [m.to_dict() for m in models],
    }


def _add_ratios(models: list[ModelResult]) -> None:
    first = models[0]
    by_threads = {r["threads"]: r for r in first.results}
    for model in models:
        model.size_ratio = round(model.file_size_bytes / first.file_size_bytes, 4) if first.file_size_bytes else 1.0
        for result in model.results:
            reference = by_threads.get(result["threads"])
            p50 = result["latency_ms"]["p50"]
            result["speed_ratio"] = round(reference["latency_ms"]["p50"] / p50, 4) if reference and p50 > 0 else None
            e2e, ref_e2e = result["end_to_end"], reference and reference["end_to_end"]
            if e2e is not None:
                e2e["speed_ratio"] = (
                    round(e2e["images_per_s"] / ref_e2e["images_per_s"], 4)
                    if ref_e2e and ref_e2e.get("images_per_s") and e2e.get("images_per_s")
                    else None
                )


def _interpreter_version(package: str) -> str:
    try:
        from importlib.metadata import version

        return f"{package} {version(package)}"
    except Exception:  # not installed as a distribution (a source build): the name is enough
        return package


def _edgecls_version() -> str:
    from edgecls import __version__

    return __version__

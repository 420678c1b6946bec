"""(a) One image through the interpreter: float32 vs full-int8 of the same edge-cnn model.

(d) The baseline a user would otherwise reach for: Keras `model.predict` on one image.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.bench_util import interleaved_medians, median_s, record
from edgecls.edge_runtime.classifier import TFLiteClassifier, default_threads

THREADS = sorted({1, default_threads()})


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (94, 94, 3), dtype=np.uint8)


def _invoker(classifier: TFLiteClassifier):
    image, buffer = _image(), classifier.new_input_buffer()
    return lambda: classifier.scores(classifier.to_input(image, buffer))


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_invoke(benchmark, edge_models, mode, threads):
    classifier = TFLiteClassifier(edge_models[mode], num_threads=threads)
    benchmark.group = f"invoke, {threads} thread(s)"
    scores = benchmark(_invoker(classifier))
    assert scores.shape == (7,) and abs(float(scores.sum()) - 1.0) < 0.05
    median = median_s(benchmark)
    figures = {
        "threads": threads,
        "file_kb": round(classifier.file_size / 1024, 1),
        "input_dtype": np.dtype(classifier.input_details["dtype"]).name,
        "to_input_mode": classifier._input_mode,
        "median_ms": median * 1000 if median else None,
        "images_per_s": 1 / median if median else None,
    }
    if mode == "int8":
        # Same conditions for both: alternate float and int8 invokes (the machine's load drifts).
        other = TFLiteClassifier(edge_models["float32"], num_threads=threads)
        ab = interleaved_medians({"float32": _invoker(other), "int8": _invoker(classifier)})
        figures |= {
            "ab_float32_ms": ab["float32"],
            "ab_int8_ms": ab["int8"],
            "int8_speed_vs_float": ab["float32"] / ab["int8"],
            "int8_size_vs_float": classifier.file_size / other.file_size,
            "target": "int8 invoke no slower than float; int8 file <= 0.3x float",
            "meets_speed": bool(ab["int8"] <= ab["float32"]),
            "meets_size": bool(classifier.file_size <= 0.3 * other.file_size),
        }
    record(benchmark, figures, f"invoke {mode} {threads}t")


KINDS = {
    "ptq": "edge-cnn, post-training int8 (random weights) vs its float32",
    "qat": "edge-cnn, QAT-wrapped then int8 (tfmot) vs its float32",
    "ham10000": "built-in ham10000 (efficientnet-lite0, post-training int8) vs its dequantized float32 twin",
    "ham10000-small": "built-in ham10000-small (edge-cnn-large, QAT) vs its dequantized float32 twin",
    "all-blood": "built-in all-blood (efficientnet-lite0, QAT) vs its dequantized float32 twin",
    "all-blood-small": "built-in all-blood-small (edge-cnn, QAT) vs its dequantized float32 twin",
}


def _pair(kind: str, edge_models, bench_dir) -> tuple[bytes, bytes]:
    """(int8 file, float32 file) of one model kind."""
    from benchmarks import bench_data

    if kind in ("ptq", "qat"):
        return edge_models["int8" if kind == "ptq" else "qat"].read_bytes(), edge_models["float32"].read_bytes()
    from edgecls.edge_runtime.builtin import builtin_models

    if kind not in builtin_models():
        pytest.skip(f"the built-in {kind} model is not in this checkout")
    int8 = builtin_models()[kind].read_bytes()
    return int8, bench_data.float_twin(int8)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_int8_vs_float_by_model_kind(benchmark, edge_models, bench_dir, kind):
    """int8 against float32 of the same model, per kind, at 1 and 2 threads, interleaved.

    The built-in models ship as int8 only: their float32 counterpart is the same file with every
    weight dequantized (bench_data.float_twin), so the two run the same ops on the same weights."""
    int8_bytes, float_bytes = _pair(kind, edge_models, bench_dir)
    figures: dict = {"kind": kind, "what": KINDS[kind]}
    int8_1t = None
    for threads in THREADS:
        int8, other = TFLiteClassifier(int8_bytes, num_threads=threads), TFLiteClassifier(float_bytes, num_threads=threads)
        if threads == 1:
            int8_1t = int8
            if kind not in ("ptq", "qat"):  # a trained model: its twin must give the same answers
                images = [_image(seed) for seed in range(16)]
                agree = np.mean([int8.predict(x).label == other.predict(x).label for x in images])
                assert agree >= 0.9, f"the float32 twin of {kind} disagrees with it on {1 - agree:.0%} of images"
                figures["top1_agreement_int8_vs_float"] = float(agree)
        ab = interleaved_medians({"float32": _invoker(other), "int8": _invoker(int8)}, rounds=300, warmup=20)
        figures |= {
            f"float32_ms_{threads}t": ab["float32"],
            f"int8_ms_{threads}t": ab["int8"],
            f"int8_speed_vs_float_{threads}t": ab["float32"] / ab["int8"],
        }
    figures |= {
        "int8_file_kb": round(len(int8_bytes) / 1024, 1),
        "float32_file_kb": round(len(float_bytes) / 1024, 1),
        "input_dtype": np.dtype(int8_1t.input_details["dtype"]).name,
        "target": "int8 at least as fast as float32 (speed >= 1.0x) at every thread count",
        "meets_target": all(figures[f"int8_speed_vs_float_{t}t"] >= 1.0 for t in THREADS),
    }
    benchmark.group = "int8 vs float32, by model kind"
    benchmark(_invoker(int8_1t))
    record(benchmark, figures, f"int8 vs float32: {kind}")


def test_keras_predict_baseline(benchmark, edge_models):
    """Keras `model.predict` on one image (float), against the float .tflite on one thread."""
    from edgecls.core.tf_env import import_tf

    _, keras = import_tf()
    model = keras.models.load_model(edge_models["keras"], compile=False)
    x = (_image()[None].astype(np.float32)) / 255.0
    benchmark.group = "keras baseline"
    probabilities = benchmark.pedantic(lambda: model.predict(x, verbose=0), rounds=10, warmup_rounds=2)
    assert probabilities.shape == (1, 7)
    tflite = _invoker(TFLiteClassifier(edge_models["float32"], num_threads=1))
    ab = interleaved_medians(
        {"keras_predict": lambda: model.predict(x, verbose=0), "keras_call": lambda: model(x, training=False), "tflite_float32": tflite},
        rounds=10,
        warmup=2,
    )
    record(
        benchmark,
        {
            "predict_ms": ab["keras_predict"],
            "direct_call_ms": ab["keras_call"],
            "tflite_float32_1t_ms": ab["tflite_float32"],
            "tflite_speedup_vs_predict": ab["keras_predict"] / ab["tflite_float32"],
        },
        "keras predict baseline",
    )

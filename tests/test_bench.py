"""`edgecls bench`: its measuring logic and its CLI, on the tiny colour models (no timing thresholds)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from tiny_models import colour_tflite, solid_image
from typer.testing import CliRunner

from edgecls.cli import app
from edgecls.edge_runtime.bench import SCHEMA, BenchSettings, parse_threads, peak_rss_mib, percentiles, run_bench
from edgecls.edge_runtime.classifier import TFLiteClassifier
from edgecls.edge_runtime.metadata import ModelMetadata, write_metadata
from edgecls.errors import EdgeclsError

runner = CliRunner()

FAST = ["--warmup", "1", "--runs", "5"]


def _bench(args: list[str]):
    return runner.invoke(app, ["bench", *args])


def _check_stats(latency: dict) -> None:
    assert set(latency) == {"p50", "p90", "p99", "mean", "min", "max"}
    assert 0 < latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]


@pytest.fixture()
def image_folder(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for name, colour in (("red.jpg", (220, 10, 10)), ("green.png", (10, 220, 10)), ("blue.jpg", (10, 10, 220))):
        Image.fromarray(solid_image(colour)).save(folder / name)
    return folder


# -- the measuring logic ------------------------------------------------------------------


def test_report_schema_and_ratios(colour_models):
    paths = [colour_models["float32"], colour_models["int8"], colour_models["uint8"]]
    report = run_bench(paths, BenchSettings(warmup=2, runs=20, threads=[1, 2]))
    assert report["schema"] == SCHEMA
    assert set(report) == {"schema", "edgecls_version", "platform", "settings", "peak_rss_mib", "models"}
    assert report["settings"]["threads"] == [1, 2] and report["settings"]["runs"] == 20
    assert report["peak_rss_mib"] > 0
    first, *others = report["models"]
    assert [m["name"] for m in report["models"]] == ["colour_float32", "colour_int8", "colour_uint8"]
    for model in report["models"]:
        assert model["file_size_bytes"] == Path(model["path"]).stat().st_size
        assert model["size_ratio"] == round(model["file_size_bytes"] / first["file_size_bytes"], 4)
        assert model["input"]["shape"] == [1, 16, 16, 3]
        assert model["interpreter"]
        assert [r["threads"] for r in model["results"]] == [1, 2]
        for result, reference in zip(model["results"], first["results"]):
            assert result["runs"] == 20
            _check_stats(result["latency_ms"])
            assert result["images_per_s"] > 0
            assert result["end_to_end"] is None
            assert result["speed_ratio"] == round(reference["latency_ms"]["p50"] / result["latency_ms"]["p50"], 4)
    assert first["size_ratio"] == 1.0
    assert all(r["speed_ratio"] == 1.0 for r in first["results"])
    assert [m["input"]["dtype"] for m in others] == ["int8", "uint8"]
    json.dumps(report)  # plain JSON types only


def test_seconds_mode_runs_until_the_time_is_up(colour_models):
    report = run_bench([colour_models["int8"]], BenchSettings(warmup=0, runs=None, seconds=0.05, threads=[1]))
    result = report["models"][0]["results"][0]
    assert report["settings"]["runs"] is None and report["settings"]["seconds"] == 0.05
    assert result["runs"] >= 1
    _check_stats(result["latency_ms"])


def test_end_to_end_on_a_folder(colour_models, image_folder):
    (image_folder / "broken.jpg").write_bytes(b"not a jpeg")
    from edgecls.edge_runtime.batch import collect_images

    images = collect_images([image_folder])
    report = run_bench(
        [colour_models["int8"], colour_models["float32"]], BenchSettings(warmup=1, runs=3, threads=[1], images=images, workers=2)
    )
    assert report["settings"]["images"] == 4
    e2e = [m["results"][0]["end_to_end"] for m in report["models"]]
    for entry in e2e:
        assert entry["images"] == 4 and entry["errors"] == 1 and entry["workers"] == 2
        assert entry["images_per_s"] > 0 and entry["seconds"] > 0
        # The floor, measured in the same run on the same files with as many decode threads.
        assert entry["decode_only_images_per_s"] > 0
        assert entry["vs_decode_only"] == pytest.approx(entry["images_per_s"] / entry["decode_only_images_per_s"], rel=1e-3)
    assert e2e[0]["speed_ratio"] == 1.0
    assert e2e[1]["speed_ratio"] == round(e2e[1]["images_per_s"] / e2e[0]["images_per_s"], 4)


def test_models_are_timed_in_turn(colour_models, monkeypatch):
    """Round after round, every model once: a ratio of two models never compares two moments."""
    from edgecls.edge_runtime import bench

    calls: list[str] = []
    original = TFLiteClassifier.scores

    def scores(self, model_input):
        calls.append(self.path.name)
        return original(self, model_input)

    monkeypatch.setattr(TFLiteClassifier, "scores", scores)
    report = run_bench([colour_models["float32"], colour_models["int8"]], BenchSettings(warmup=2, runs=5, threads=[1]))
    assert report["settings"]["order"].startswith("interleaved")
    assert calls == ["colour_float32.tflite", "colour_int8.tflite"] * 7  # 2 warm-up + 5 timed rounds
    samples = bench.time_interleaved([TFLiteClassifier(colour_models["uint8"])] * 3, warmup=0, runs=4, seconds=None)
    assert [len(s) for s in samples] == [4, 4, 4]


def test_decode_only_times_the_files_and_survives_broken_ones(image_folder):
    from edgecls.edge_runtime.batch import collect_images
    from edgecls.edge_runtime.bench import decode_only

    (image_folder / "broken.jpg").write_bytes(b"not a jpeg")
    paths = collect_images([image_folder])
    for workers in (1, 2):
        assert decode_only(paths, (16, 16), workers) > 0


def test_same_file_twice_gets_two_names(colour_models):
    report = run_bench([colour_models["int8"]] * 2, BenchSettings(warmup=0, runs=2, threads=[1]))
    assert [m["name"] for m in report["models"]] == ["colour_int8", "colour_int8#2"]


@pytest.mark.parametrize(
    ("text", "expected"), [("1,2,4", [1, 2, 4]), (" 2, 2 ,1 ", [2, 1]), ("3", [3]), ("1,,2", [1, 2])]
)
def test_parse_threads(text, expected):
    assert parse_threads(text) == expected


@pytest.mark.parametrize("text", ["", ",", "0", "1,-2", "two", "1.5"])
def test_parse_threads_rejects(text):
    with pytest.raises(EdgeclsError, match="--threads"):
        parse_threads(text)


@pytest.mark.parametrize(
    "kwargs", [{"warmup": -1}, {"runs": 0}, {"runs": None}, {"seconds": 0, "runs": None}, {"threads": []}, {"threads": [0]}]
)
def test_settings_are_validated(kwargs):
    with pytest.raises(EdgeclsError):
        BenchSettings(**kwargs)


def test_percentiles_known_values():
    stats = percentiles(list(range(1, 101)))
    assert stats["p50"] == 50.5 and stats["p90"] == 90.1 and stats["p99"] == 99.01
    assert stats["min"] == 1 and stats["max"] == 100 and stats["mean"] == 50.5
    with pytest.raises(ValueError):
        percentiles([])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=1e-4, max_value=1e4, allow_nan=False), min_size=1, max_size=300))
def test_percentiles_are_ordered(samples):
    stats = percentiles(samples)
    assert stats["min"] <= stats["p50"] <= stats["p90"] <= stats["p99"] <= stats["max"]


def test_peak_rss_is_in_mib():
    peak = peak_rss_mib()
    # A Python process with numpy loaded: tens to hundreds of MiB, not KiB or bytes.
    assert peak is None or 5 < peak < 64 * 1024


# -- the CLI -------------------------------------------------------------------------------


def test_cli_json(colour_models):
    result = _bench([str(colour_models["float32"]), str(colour_models["int8"]), *FAST, "--threads", "1,2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["schema"] == SCHEMA
    assert [len(m["results"]) for m in report["models"]] == [2, 2]
    assert report["settings"]["warmup"] == 1 and report["settings"]["runs"] == 5
    for model in report["models"]:
        for r in model["results"]:
            _check_stats(r["latency_ms"])
            assert r["runs"] == 5


def test_cli_table(colour_models, image_folder):
    result = _bench([str(colour_models["float32"]), str(colour_models["int8"]), *FAST, "-t", "1", "--images", str(image_folder)])
    assert result.exit_code == 0, result.output
    for text in ("colour_float32", "colour_int8", "p50 ms", "p99 ms", "size x", "e2e img/s", "peak memory"):
        assert text in result.stdout


def test_cli_output_file(colour_models, tmp_path):
    out = tmp_path / "reports" / "bench.json"
    result = _bench([str(colour_models["int8"]), *FAST, "-t", "1", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["models"][0]["name"] == "colour_int8"


def test_cli_seconds(colour_models):
    result = _bench([str(colour_models["int8"]), "--seconds", "0.02", "-t", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["models"][0]["results"][0]["runs"] >= 1


def test_cli_model_without_metadata_still_runs(colour_models):
    result = _bench([str(colour_models["bare"]), *FAST, "-t", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["models"][0]["input"]["dtype"] == "int8"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.tflite"], "missing.tflite: no such model file"),
        (["no-such-builtin"], "no-such-builtin: not a file and not a built-in model"),
        (["{int8}", "missing.tflite"], "missing.tflite: no such model file"),
        (["{int8}", "--runs", "3", "--seconds", "1"], "--runs or --seconds"),
        (["{int8}", "--threads", "1,x"], "--threads"),
        (["{int8}", "--images", "no-such-folder"], "no-such-folder: no such file or folder"),
    ],
)
def test_cli_errors_are_one_line_exit_2(colour_models, args, message):
    args = [a.format(int8=colour_models["int8"]) for a in args]
    result = _bench([*args, "--json"])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgecls: error: ") and message in lines[0]


def test_cli_not_a_model(tmp_path):
    fake = tmp_path / "fake.tflite"
    fake.write_bytes(b"\x00" * 64)
    result = _bench([str(fake), *FAST])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "not a TFLite model" in result.stderr


# -- the fast input path (classifier.to_input) ----------------------------------------------


@functools.lru_cache(maxsize=None)
def _bare_colour_model(mode: str) -> bytes:
    return colour_tflite(mode, with_metadata=False)


def _reference_input(classifier: TFLiteClassifier, image: np.ndarray) -> np.ndarray:
    out = np.empty(classifier.input_shape, classifier._input_lut.dtype)
    for c in range(classifier.channels):
        out[0, ..., c] = classifier._input_lut[c][image[..., c]]
    return out


@pytest.mark.parametrize(
    ("mode", "mean", "std", "expected"),
    [
        ("float32", [0, 0, 0], [255, 255, 255], "affine"),
        ("float32", [127.5] * 3, [127.5] * 3, "affine"),
        ("float32", [123.7, 116.3, 103.5], [58.4, 57.1, 57.4], "take"),
        ("int8", [0, 0, 0], [255, 255, 255], "xor"),
        ("int8", [127.5] * 3, [127.5] * 3, "take1"),
        ("int8", [123.7, 116.3, 103.5], [58.4, 57.1, 57.4], "take"),
        ("uint8", [0, 0, 0], [255, 255, 255], "copy"),
        ("uint8", [10, 20, 30], [255, 255, 255], "take"),
    ],
)
def test_fast_to_input_equals_the_lookup_table(mode, mean, std, expected):
    raw = _bare_colour_model(mode)
    meta = ModelMetadata(labels=["red", "green", "blue"], input_size=(16, 16), mean=mean, std=std)
    classifier = TFLiteClassifier(write_metadata(raw, meta))
    assert classifier._input_mode == expected
    rng = np.random.default_rng(0)
    every_value = np.arange(256 * 3, dtype=np.uint16).reshape(16, 16, 3).astype(np.uint8)
    for image in (every_value, rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)):
        buffer = classifier.new_input_buffer()
        assert classifier.to_input(image, buffer) is buffer
        np.testing.assert_array_equal(buffer, _reference_input(classifier, image))
        np.testing.assert_array_equal(classifier.to_input(image), buffer)


def test_tta_is_timed_beside_one_pass_and_end_to_end(colour_models, image_folder, monkeypatch):
    """--tta times predict(tta=True) (four invokes) in turn with the plain pass, and the batched
    end-to-end run with flips."""
    from edgecls.edge_runtime.batch import collect_images
    from edgecls.edge_runtime.classifier import TFLiteClassifier as Classifier

    calls = {"tta": 0}
    original = Classifier.predict

    def counting(self, image, *args, **kwargs):
        calls["tta"] += bool(kwargs.get("tta"))
        return original(self, image, *args, **kwargs)

    monkeypatch.setattr(Classifier, "predict", counting)
    images = collect_images([image_folder])
    report = run_bench([colour_models["int8"]], BenchSettings(warmup=1, runs=5, threads=[1], images=images, workers=1, tta=True))
    result = report["models"][0]["results"][0]
    assert result["tta"]["latency_ms"]["p50"] > 0 and calls["tta"] >= 6  # 1 warm-up + 5 timed
    assert result["tta"]["end_to_end"]["images"] == len(images) and result["tta"]["end_to_end"]["images_per_s"] > 0
    plain = run_bench([colour_models["int8"]], BenchSettings(warmup=0, runs=2, threads=[1]))
    assert "tta" not in plain["models"][0]["results"][0]
    cli = _bench([str(colour_models["int8"]), "--tta", "--runs", "3", "--threads", "1"])
    assert cli.exit_code == 0 and "--tta p50 ms" in cli.stdout

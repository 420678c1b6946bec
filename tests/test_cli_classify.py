"""`edgecls classify` and `edgecls info` as a user runs them."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from PIL import Image
from tiny_models import solid_image
from typer.testing import CliRunner

from edgecls.cli import app

runner = CliRunner()


@pytest.fixture()
def image_folder(tmp_path):
    folder = tmp_path / "images [set 1]"
    (folder / "sub dir").mkdir(parents=True)
    Image.fromarray(solid_image((220, 10, 10))).save(folder / "a red.jpg")
    Image.fromarray(solid_image((10, 220, 10))).save(folder / "sub dir" / "green.png")
    Image.fromarray(solid_image((10, 10, 220))).convert("L").convert("RGB").save(folder / "grey.bmp")
    (folder / "notes.txt").write_text("not an image, and not an image suffix: ignored")
    return folder


def test_a_folder_is_listed_in_path_order_with_only_image_suffixes(tmp_path):
    """collect_images sorts part by part, as sorted(Path) does ("a/b/x" before "a-c", which a
    plain string sort puts first), takes image suffixes in any case, and skips hidden files."""
    from edgecls.edge_runtime.batch import collect_images

    names = ["a/b/x.jpg", "a-c.JPG", "a/z.png", "a b/y.jpeg", "a/.hidden.jpg", "a/notes.txt", "a/archive.tar.gz", "Z.bmp", "a/b.c/d.webp"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    expected = sorted(tmp_path / n for n in names if not n.rsplit("/", 1)[-1].startswith(".") and n.rsplit(".", 1)[-1].lower() in ("jpg", "png", "jpeg", "bmp", "webp"))
    found = collect_images([tmp_path])
    assert found == expected and all(isinstance(p, Path) for p in found)
    # A string sort would put "a b/" and "a-c" before "a/", and "a/b.c/" before "a/b/".
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["Z.bmp", "a/b/x.jpg", "a/b.c/d.webp", "a/z.png", "a b/y.jpeg", "a-c.JPG"]


def test_folder_is_walked_recursively_json(colour_models, image_folder):
    result = runner.invoke(app, ["classify", "--model", str(colour_models["int8"]), str(image_folder), "--format", "json", "-k", "2"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in records}
    assert set(by_name) == {"a red.jpg", "green.png", "grey.bmp"}
    assert by_name["a red.jpg"]["label"] == "red"
    assert by_name["green.png"]["label"] == "green"
    for record in records:
        assert set(record) == {"path", "label", "probability", "top_k", "latency_ms"}
        assert len(record["top_k"]) == 2
        assert record["top_k"][0]["label"] == record["label"]
        assert record["latency_ms"] >= 0


def test_csv_output_file(colour_models, image_folder, tmp_path):
    out = tmp_path / "results.csv"
    result = runner.invoke(app, ["classify", "-m", str(colour_models["float32"]), str(image_folder), "-f", "csv", "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 3
    assert rows[0].keys() == {"path", "label", "probability", "top_k", "latency_ms"}
    red = next(r for r in rows if r["path"].endswith("a red.jpg"))
    assert red["label"] == "red" and red["top_k"].startswith("red:")


def test_table_output(colour_models, image_folder):
    result = runner.invoke(app, ["classify", "-m", str(colour_models["uint8"]), str(image_folder / "sub dir" / "green.png")])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "green" in line and "│" in line)
    assert row.split("│")[1].strip() == "green"


def test_bad_file_in_batch_is_reported_and_others_classified(colour_models, image_folder):
    (image_folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    result = runner.invoke(app, ["classify", "-m", str(colour_models["int8"]), str(image_folder), "-f", "json"])
    assert result.exit_code == 1
    assert len(json.loads(result.stdout)) == 3
    assert "broken.jpg" in result.stderr and "Traceback" not in result.output
    assert "1 of 4 images could not be classified" in result.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["classify", "-m", "MODEL", "/nonexistent/x.jpg"], "no such file or folder"),
        (["classify", "-m", "/nonexistent.tflite", "IMG"], "no such model file"),
        (["classify", "-m", "no-such-builtin", "IMG"], "not a file and not a built-in model"),
        (["classify", "-m", "IMG", "IMG"], "not a TFLite model"),
        (["classify", "-m", "MODEL", "EMPTY"], "folder holds no images"),
        (["info", "IMG"], "not a TFLite model"),
    ],
)
def test_errors_are_one_line_and_exit_2(colour_models, image_folder, tmp_path, args, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    subst = {"MODEL": str(colour_models["int8"]), "IMG": str(image_folder / "a red.jpg"), "EMPTY": str(empty)}
    result = runner.invoke(app, [subst.get(a, a) for a in args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("edgecls: error:")


def test_info_prints_labels_tensors_and_provenance(colour_models):
    result = runner.invoke(app, ["info", str(colour_models["int8"])])
    assert result.exit_code == 0, result.output
    for text in ("red, green, blue", "int8 [1, 16, 16, 3]", "zero_point=-128", "made_by: tests/tiny_models.py", "KB"):
        assert text in result.stdout
    as_json = json.loads(runner.invoke(app, ["info", str(colour_models["uint8"]), "--json"]).stdout)
    assert as_json["input"]["dtype"] == "uint8"


@pytest.mark.parametrize(
    "args,message",
    [
        (["classify", "-m", "m.tflite", "--top-k", "0", "x.jpg"], "Invalid value for '--top-k'"),
        (["classify"], "Missing argument"),
        (["no-such-command"], "No such command"),
        (["classify", "--format", "xml", "-m", "m.tflite", "x.jpg"], "Invalid value for '--format'"),
    ],
)
def test_bad_flags_are_one_line_through_the_real_entry_point(args, message):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "edgecls", *args], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith("edgecls: error:") and message in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


# -- folder runs: batches, streaming output, flat memory ---------------------------------------


def _many_images(folder, count: int = 37):
    """`count` different small pictures (each a colour blend) plus one broken file in the middle."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = __import__("numpy").random.default_rng(0)
    for i in range(count):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        Image.fromarray(solid_image(colour)).save(folder / f"img_{i:03d}.png")
    (folder / "img_020_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return folder


@pytest.mark.parametrize("mode", ["float32", "int8", "uint8"])
def test_batched_folder_run_equals_one_by_one(colour_models, tmp_path, mode):
    """classify_paths invokes a folder 8 images at a time; every result, error and position is
    what one classifier.predict per image gives."""
    import numpy as np

    from edgecls.edge_runtime import batch
    from edgecls.edge_runtime.classifier import TFLiteClassifier

    paths = batch.collect_images([_many_images(tmp_path / "many")])
    classifier = TFLiteClassifier(colour_models[mode])
    one_by_one = list(batch.classify_paths(classifier, paths, batch_size=1))
    for workers in (1, 3):
        batched = list(batch.classify_paths(classifier, paths, batch.PredictionOptions(top_k=2), workers=workers))
        assert [r.path for r in batched] == [r.path for r in one_by_one] == [batch.shown_path(p) for p in paths]
        assert [r.error is None for r in batched] == [r.error is None for r in one_by_one]
        assert sum(r.error is not None for r in batched) == 1 and "img_020_broken.jpg" in batched[21].error
        for a, b in zip(batched, one_by_one):
            if a.error is None:
                np.testing.assert_array_equal(a.prediction.probabilities, b.prediction.probabilities)
                assert a.prediction.label == b.prediction.label and len(a.prediction.top_k) == 2


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_decoding_shared_with_the_calling_thread_keeps_order_and_bounds(tmp_path, monkeypatch, workers):
    """iter_decoded: every image once, in order, errors in place, with `workers - 1` helper threads
    and the consumer decoding what is not ready; never more than `ahead` images past the consumer;
    a consumer that stops early leaves no thread behind."""
    import threading
    import time

    import numpy as np

    from edgecls.edge_runtime import batch, decoding

    paths = batch.collect_images([_many_images(tmp_path / "many", 60)])
    decoders, started, lock = set(), [], threading.Lock()
    original = decoding._decode
    read = [0]
    caller_decoded = threading.Event()

    def spy(path, size, channels):
        in_caller = threading.current_thread() is threading.main_thread()
        with lock:
            decoders.add(threading.current_thread().name)
            started.append((paths.index(path), read[0]))
        if in_caller:
            caller_decoded.set()
        else:
            # Helpers hold their first images until the caller has decoded one, so the test does
            # not depend on how the kernel schedules threads on a loaded machine (bounded wait).
            caller_decoded.wait(10)
        time.sleep(0.001)
        return original(path, size, channels)

    monkeypatch.setattr(decoding, "_decode", spy)
    before = threading.active_count()
    got = []
    for path, image in batch.iter_decoded(paths, (16, 16), 3, workers, ahead=5):
        got.append((path, image))
        read[0] += 1
        time.sleep(0.001)  # an invoke's worth of work in the consumer
    assert [p for p, _ in got] == paths and sorted(i for i, _ in started) == list(range(len(paths)))
    assert [isinstance(image, batch.ImageError) for _, image in got] == ["broken" in p.name for p in paths]
    assert all(isinstance(image, np.ndarray) and image.shape == (16, 16, 3) for _, image in got if not isinstance(image, batch.ImageError))
    assert max(index - consumed for index, consumed in started) < 5 + 1  # the window: ahead past the consumer
    assert "MainThread" in decoders and len(decoders) <= workers  # the caller decodes too; workers - 1 helpers
    assert threading.active_count() == before

    stopped = batch.iter_decoded(paths, (16, 16), 3, workers)
    next(stopped), next(stopped)
    stopped.close()
    assert threading.active_count() == before


def test_a_helper_threads_unexpected_error_reaches_the_consumer(tmp_path, monkeypatch):
    """Not an ImageError (a bug, MemoryError) in a helper thread: raised in the consumer, not a
    hang, and no thread is left behind."""
    import threading
    import time

    from edgecls.edge_runtime import batch, decoding

    paths = batch.collect_images([_many_images(tmp_path / "many", 30)])
    original, raised_in = decoding._decode, []
    helper_failed = threading.Event()

    def fails_on_img_010(path, size, channels):
        if threading.current_thread() is threading.main_thread():
            # The caller holds the one image it claimed until the helper has met img_010, so the
            # error is the helper's however the kernel schedules the threads (bounded wait).
            helper_failed.wait(10)
        elif path.name == "img_010.png":
            raised_in.append(threading.current_thread().name)
            helper_failed.set()
            raise MemoryError("out of memory")
        return original(path, size, channels)

    monkeypatch.setattr(decoding, "_decode", fails_on_img_010)
    before = threading.active_count()
    taken = 0
    with pytest.raises(MemoryError, match="out of memory"):
        for _ in batch.iter_decoded(paths, (16, 16), 3, 2, ahead=30):
            taken += 1
            time.sleep(0.01)  # a slow consumer: the helper runs ahead and meets img_010 first
    assert raised_in == ["edgecls-decode-0"] and taken == 10
    assert threading.active_count() == before


def test_batched_run_falls_back_to_one_by_one(colour_models, tmp_path, monkeypatch):
    """A model that cannot take a batch, or whose batch disagrees with single invokes, is run
    one by one, with the same results."""
    import numpy as np

    from edgecls.edge_runtime import batch
    from edgecls.edge_runtime.classifier import TFLiteClassifier
    from edgecls.errors import EdgeclsError

    paths = batch.collect_images([_many_images(tmp_path / "many")])
    classifier = TFLiteClassifier(colour_models["int8"])
    expected = [r.prediction.probabilities if r.prediction else r.error for r in batch.classify_paths(classifier, paths, batch_size=1)]

    def same(results):
        got = [r.prediction.probabilities if r.prediction else r.error for r in results]
        return len(got) == len(expected) and all(
            np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b for a, b in zip(got, expected)
        )

    monkeypatch.setattr(batch, "_rows_match_single", lambda *args: False)
    assert same(batch.classify_paths(classifier, paths))
    monkeypatch.undo()

    def refuse(*args, **kwargs):
        raise EdgeclsError("the model does not take a batch of 8")

    monkeypatch.setattr(batch.BatchRunner, "__init__", refuse)
    assert same(batch.classify_paths(classifier, paths))


def test_batch_runner_checks_the_output_shape(colour_models):
    from edgecls.edge_runtime.batch import BatchRunner
    from edgecls.edge_runtime.classifier import TFLiteClassifier

    classifier = TFLiteClassifier(colour_models["uint8"])
    runner = BatchRunner(classifier, 8)
    assert runner.buffer.shape == (8, 16, 16, 3) and runner.buffer.dtype == classifier.new_input_buffer().dtype
    assert runner.slot(3).shape == classifier.new_input_buffer().shape
    assert runner.run().shape == (8, 3)


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_streamed_output_is_the_whole_documents_text(colour_models, tmp_path, fmt):
    """json and csv are written record by record as a run goes; the text is that of the whole
    document written at once (one JSON array, indent 2; a CSV header and a row per record)."""
    import contextlib
    import csv
    import json

    from edgecls.cli.output import record_stream

    def whole_document(records: list[dict]) -> str:
        if fmt == "json":
            return json.dumps(records, indent=2) + "\n"
        text = io.StringIO()
        header = list(records[0]) if records else ["path", "label", "probability", "top_k", "latency_ms"]
        writer = csv.DictWriter(text, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(r | {"top_k": ";".join(f"{t['label']}:{t['probability']:.6f}" for t in r["top_k"])} for r in records)
        return text.getvalue()
    from edgecls.edge_runtime.batch import classify_paths, collect_images
    from edgecls.edge_runtime.classifier import TFLiteClassifier

    paths = collect_images([_many_images(tmp_path / "many", 12)])
    results = list(classify_paths(TFLiteClassifier(colour_models["int8"]), paths))
    for subset in (results, results[:1], [r for r in results if r.error]):
        expected = whole_document([r.to_record() for r in subset if r.error is None])
        streamed = io.StringIO()
        with contextlib.redirect_stdout(streamed), record_stream(fmt, None) as write:
            for result in subset:
                if result.error is None:
                    write(result)
        assert streamed.getvalue() == expected
        out = tmp_path / f"out.{fmt}"
        with record_stream(fmt, out) as write:
            for result in subset:
                if result.error is None:
                    write(result)
        assert out.read_text() == expected
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []  # no temporary left


def test_interrupted_run_leaves_no_output_file(colour_models, tmp_path):
    from edgecls.cli.output import record_stream

    out = tmp_path / "results.json"
    with pytest.raises(KeyboardInterrupt), record_stream("json", out):
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_folder_run_memory_does_not_grow_with_the_number_of_images(colour_models, tmp_path):
    """Results are written as they come, not kept: 2,000 images need no more memory than 200."""
    import tracemalloc

    folder = tmp_path / "few"
    folder.mkdir()
    for i, colour in enumerate(((220, 10, 10), (10, 220, 10), (10, 10, 220), (90, 90, 90))):
        Image.fromarray(solid_image(colour)).save(folder / f"{i}.png")
    files = [str(p) for p in sorted(folder.iterdir())]

    def peak(count: int) -> int:
        tracemalloc.start()
        try:
            args = ["classify", "-m", str(colour_models["int8"]), *files * (count // 4), "-f", "csv", "-o", str(tmp_path / f"{count}.csv")]
            result = runner.invoke(app, args)
            assert result.exit_code == 0, result.output
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak(200)  # imports and caches, once
    small, large = peak(200), peak(2000)
    assert (tmp_path / "2000.csv").read_text().count("\n") == 2001
    # The argument list and the path list cost ~0.5 KB an image; results kept until the end
    # cost ~2.5 KB more each (what classify did before it streamed).
    assert (large - small) / 1800 < 1000, (small, large)

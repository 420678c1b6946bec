"""Bad input gives one clear line and the documented exit code, never a traceback.

A corpus of malformed images and model files (tests/malformed.py) is generated in tmp_path and
run through the real CLI: mostly in-process with Typer's CliRunner (fast), and a handful of
cases through a real `python -m edgecls` subprocess, which is the only way to prove that no
traceback (or a segfault in the native interpreter) reaches the user.

Exit codes (src/edgecls/errors.py): 0 all classified, 1 some inputs failed, 2 nothing could run.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import malformed as M
from edgecls.cli import app
from edgecls.edge_runtime.preprocess import ImageError, load_image
from edgecls.errors import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, EdgeclsError
from edgecls.files import atomic_path, write_json_atomic, write_text_atomic

runner = CliRunner()
IMAGE_CASES = M.image_cases()
GOOD = [c for c in IMAGE_CASES if c.ok]
BAD = [c for c in IMAGE_CASES if not c.ok]


# -- helpers ------------------------------------------------------------------------------
def cli(*args):
    return runner.invoke(app, [os.fspath(a) if isinstance(a, Path) else a for a in args])


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("edgecls: error:")]


def assert_one_line_error(result, phrase: str, code: int = EXIT_ERROR) -> str:
    """Exit `code`, exactly one `edgecls: error:` line containing `phrase`, no traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == code, result.output
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert phrase in errors[0], errors[0]
    assert "\n" not in errors[0]
    assert not result.stdout.strip(), result.stdout
    return errors[0]


def skipped_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("edgecls: skipped ")]


def shown(path: Path) -> str:
    """How the CLI prints a path: non-UTF-8 bytes and control characters become escapes."""
    text = os.fsdecode(path).encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(f"\\x{ord(c):02x}" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in text)


def run_subprocess(*args, timeout=120) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONIOENCODING="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "edgecls", *[os.fsencode(a) if isinstance(a, Path) else a for a in args]],
        capture_output=True,
        timeout=timeout,
        env=env,
    )


def assert_clean_stderr(proc: subprocess.CompletedProcess) -> list[str]:
    """No traceback, no crash; every stderr line is one of ours (`edgecls: ...`)."""
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}: {stderr}"
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert all(line.startswith("edgecls: ") for line in lines), stderr
    return lines


# -- fixtures -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image_corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus") / "images [odd] set"
    M.write_image_corpus(folder, IMAGE_CASES)
    M.nested_image(folder)
    return folder


@pytest.fixture(scope="module")
def odd_tflite() -> dict[str, bytes]:
    from tiny_models import convert

    return {name: convert(model, 16) for name, model in M.odd_keras_models().items()}


@pytest.fixture(scope="module")
def model_corpus(tmp_path_factory, colour_models, odd_tflite) -> dict[str, tuple[M.ModelCase, Path]]:
    folder = tmp_path_factory.mktemp("bad models")
    corpus = {}
    for case in M.model_cases(colour_models, odd_tflite):
        path = folder / f"{case.id}.tflite"
        case.make(path)
        corpus[case.id] = (case, path)
    return corpus


MODEL_CASE_IDS = [
    "missing-file", "directory", "fifo", "dangling-symlink", "zero-byte", "garbage", "jpeg-renamed",
    "text-renamed", "identifier-only", "identifier-then-garbage", "truncated-half", "truncated-most",
    "input-2d", "input-rank-3", "input-4-channels", "two-outputs", "two-inputs", "one-class", "output-4d",
    "zero-point-out-of-range", "negative-scale", "zero-input-scale", "nan-scale", "no-subgraph",
    "op-input-missing", "huge-batch", "negative-dimension", "zero-batch", "garbled-tensor-name",
    "output-not-quantized", "nan-weights", "labels-too-few",
    "labels-empty", "input-size-mismatch", "channels-mismatch", "meta-invalid-json", "meta-not-utf8",
    "meta-json-array", "meta-json-string", "meta-empty-object", "meta-missing-labels",
    "meta-labels-not-list", "meta-size-not-numbers", "meta-size-null", "meta-size-infinite",
    "meta-size-three-numbers", "meta-mean-wrong-length", "meta-mean-not-numbers", "meta-std-zero",
    "meta-std-nan", "meta-output-unknown", "meta-channels-string", "meta-deeply-nested",
]  # fmt: skip


def test_corpus_is_complete(colour_models, odd_tflite):
    ids = [c.id for c in M.model_cases(colour_models, odd_tflite)]
    assert ids == MODEL_CASE_IDS  # every model case is parametrized below
    assert len(IMAGE_CASES) + len(ids) >= 50
    assert len({c.id for c in IMAGE_CASES}) == len(IMAGE_CASES)
    assert len(GOOD) >= 25 and len(BAD) >= 25


# -- bad model files: classify and info -------------------------------------------------------
@pytest.mark.parametrize("case_id", MODEL_CASE_IDS)
def test_classify_with_bad_model_is_one_clear_line(case_id, model_corpus, image_corpus):
    case, path = model_corpus[case_id]
    result = cli("classify", "-m", path, image_corpus / "red.jpg", "-f", "json")
    assert_one_line_error(result, case.error)


@pytest.mark.parametrize("case_id", MODEL_CASE_IDS)
def test_info_on_bad_model_is_one_clear_line(case_id, model_corpus):
    case, path = model_corpus[case_id]
    if case.info_ok:  # describing the file works; running it is what fails (the classify test)
        result = cli("info", path, "--json")
        assert result.exit_code == EXIT_OK and json.loads(result.stdout)["path"] == str(path), result.output
        return
    assert_one_line_error(cli("info", path), case.error)
    assert_one_line_error(cli("info", path, "--json"), case.error)


@pytest.mark.parametrize(
    "case_id",
    [
        "garbage", "jpeg-renamed", "truncated-half", "zero-point-out-of-range", "zero-input-scale", "no-subgraph",
        "op-input-missing", "huge-batch", "garbled-tensor-name", "nan-weights", "meta-invalid-json", "two-outputs",
    ],  # fmt: skip
)
def test_bad_model_in_a_real_process(case_id, model_corpus, image_corpus):
    """No traceback and, for the damaged quantizations, no segfault of the native interpreter."""
    case, path = model_corpus[case_id]
    for args in (("classify", "-m", path, image_corpus / "red.jpg"), ("info", path)):
        proc = run_subprocess(*args)
        lines = assert_clean_stderr(proc)
        if args[0] == "info" and case.info_ok:
            assert proc.returncode == EXIT_OK and not lines, lines
            continue
        assert proc.returncode == EXIT_ERROR, lines
        assert len(lines) == 1 and lines[0].startswith("edgecls: error:") and case.error in lines[0], lines


def test_model_failing_mid_batch_writes_nothing(model_corpus, image_corpus, tmp_path):
    """A model that loads but cannot produce scores stops a threaded folder run with one line."""
    _, path = model_corpus["nan-weights"]
    out = tmp_path / "results.json"
    result = cli("classify", "-m", path, image_corpus, "-f", "json", "-o", out, "--workers", "3")
    assert_one_line_error(result, "NaN or infinite scores")
    assert list(tmp_path.iterdir()) == []


def test_unknown_builtin_name(image_corpus):
    assert_one_line_error(cli("classify", "-m", "no-such-model", image_corpus / "red.jpg"), "not a file and not a built-in model")
    assert_one_line_error(cli("info", "no-such-model"), "not a file and not a built-in model")


def test_model_without_metadata_warns_once_and_runs(colour_models, image_corpus):
    result = cli("classify", "-m", colour_models["bare"], image_corpus / "red.jpg", "-f", "json")
    assert result.exit_code == EXIT_OK, result.output
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("edgecls: warning:") and "has no metadata" in warnings[0]
    assert json.loads(result.stdout)[0]["label"] == "0"  # class indices; red is class 0


def test_models_command_survives_a_corrupt_builtin(monkeypatch, tmp_path, colour_models):
    from edgecls.edge_runtime import builtin

    (tmp_path / "good.tflite").write_bytes(colour_models["int8"].read_bytes())
    (tmp_path / "broken.tflite").write_bytes(colour_models["int8"].read_bytes()[:100])
    (tmp_path / "photo.tflite").write_bytes(M.encode(M.solid(M.RED), "JPEG"))
    monkeypatch.setattr(builtin, "_models_dir", lambda: tmp_path)
    result = cli("models")
    assert result.exit_code == EXIT_OK, result.output
    assert "Traceback" not in result.output
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert "3 classes" in lines["good"]
    assert "unreadable" in lines["broken"] and "unreadable" in lines["photo"]


# -- images, one at a time ----------------------------------------------------------------------
@pytest.mark.parametrize("case", IMAGE_CASES, ids=[c.id for c in IMAGE_CASES])
def test_single_image(case, colour_models, image_corpus):
    path = case.path(image_corpus)
    result = cli("classify", "-m", colour_models["int8"], path, "-f", "json")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    if case.ok:
        assert result.exit_code == EXIT_OK, result.output
        (record,) = json.loads(result.stdout)
        assert record["path"] == shown(path)
        if case.label:
            assert record["label"] == case.label, record
        assert not result.stderr.strip(), result.stderr
    else:
        # One line naming the file and saying why, one summary line; nothing on stdout but "[]".
        assert result.exit_code == EXIT_ERROR, result.output
        assert json.loads(result.stdout) == []
        (line,) = skipped_lines(result.stderr)
        assert line.startswith(f"edgecls: skipped {shown(path)}: "), line
        if case.error:
            assert case.error in line, line
        lines = [x for x in result.stderr.splitlines() if x.strip()]
        assert lines == [line, "edgecls: 1 of 1 images could not be classified"], lines


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    path.write_bytes(M.exif_rotated_jpeg(orientation=6))
    image = load_image(path, (40, 20))  # displayed size: 20 wide, 40 tall
    assert image.shape == (40, 20, 3)
    top, bottom = image[:16].reshape(-1, 3).mean(0), image[24:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 50, top  # red on top
    assert bottom[2] > 200 and bottom[0] < 50, bottom  # blue below
    # Orientation 8 (90 degrees counter-clockwise): blue on top.
    path.write_bytes(M.exif_rotated_jpeg(orientation=8))
    image = load_image(path, (40, 20))
    assert image[:16, :, 2].mean() > 200 and image[24:, :, 0].mean() > 200


def test_high_bit_depth_and_float_images_are_rescaled_not_clipped(tmp_path):
    (tmp_path / "a.png").write_bytes(M.sixteen_bit_png(40000))
    (tmp_path / "b.png").write_bytes(M.sixteen_bit_png(65535))
    (tmp_path / "c.tiff").write_bytes(M.float_tiff(0.25))
    assert load_image(tmp_path / "a.png", (4, 4))[0, 0, 0] == 40000 // 257
    assert load_image(tmp_path / "b.png", (4, 4))[0, 0, 0] == 255
    assert load_image(tmp_path / "c.tiff", (4, 4))[0, 0, 0] == 63
    nan = tmp_path / "nan.tiff"
    nan.write_bytes(M.encode(M.Image.fromarray(np.full((8, 8), np.nan, np.float32)), "TIFF"))
    assert load_image(nan, (4, 4), 1).shape == (4, 4, 1)


def test_transparency_goes_white(tmp_path):
    (tmp_path / "t.png").write_bytes(M.rgba_png(M.BLUE, 0))
    (tmp_path / "p.png").write_bytes(M.palette_png(True))
    assert (load_image(tmp_path / "t.png", (8, 8)) == 255).all()
    palette = load_image(tmp_path / "p.png", (30, 40))
    assert palette[0, 0].tolist() == [255, 0, 0] and palette[-1, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize("channels", [1, 3])
def test_every_good_case_loads_at_any_size(channels, image_corpus):
    for case in GOOD:
        for size in ((1, 1), (7, 3), (16, 16)):
            image = load_image(case.path(image_corpus), size, channels)
            assert image.shape == (*size, channels) and image.dtype == np.uint8, case.id


def test_every_bad_case_raises_image_error(image_corpus):
    for case in BAD:
        with pytest.raises(ImageError):
            load_image(case.path(image_corpus), (16, 16))


# -- images, a whole folder ---------------------------------------------------------------------
def expected_records(folder: Path) -> dict[str, str | None]:
    expected = {shown(c.path(folder)): c.label for c in GOOD}
    nested, label = folder / "sub" / "deeper" / "nested blue.png", "blue"
    expected[shown(nested)] = label
    return expected


@pytest.mark.parametrize("mode,workers", [("int8", "1"), ("uint8", "3"), ("float32", "2")])
def test_folder_batch_keeps_going_past_every_bad_file(mode, workers, colour_models, image_corpus):
    result = cli("classify", "-m", colour_models[mode], image_corpus, "-f", "json", "--workers", workers)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.exit_code == EXIT_PARTIAL, result.output
    records = json.loads(result.stdout)
    expected = expected_records(image_corpus)
    got = {r["path"]: r["label"] for r in records}
    assert set(got) == set(expected), set(got) ^ set(expected)
    for path, label in expected.items():
        if label:
            assert got[path] == label, path
    skipped = skipped_lines(result.stderr)
    assert len(skipped) == len(BAD), "\n".join(skipped)
    for case in BAD:
        prefix = f"edgecls: skipped {shown(case.path(image_corpus))}: "
        (line,) = [s for s in skipped if s.startswith(prefix)]
        assert case.error is None or case.error in line, line
    total = len(expected) + len(BAD)
    assert f"edgecls: {len(BAD)} of {total} images could not be classified" in result.stderr
    assert not error_lines(result.stderr)
    # Hidden files, non-image suffixes and folders named like images are not inputs.
    assert not any(p.rsplit("/", 1)[-1] in (".hidden.jpg", "readme.txt", "empty-dir.jpg", "self.jpg") for p in got)


def test_folder_batch_csv_and_table(colour_models, image_corpus, tmp_path):
    out = tmp_path / "out dir" / "results.csv"
    result = cli("classify", "-m", colour_models["int8"], image_corpus, "-f", "csv", "-o", out)
    assert result.exit_code == EXIT_PARTIAL, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert {r["path"] for r in rows} == set(expected_records(image_corpus))
    assert not [p for p in out.parent.iterdir() if p.name != "results.csv"]  # no temp files left
    table = cli("classify", "-m", colour_models["int8"], image_corpus)
    assert table.exit_code == EXIT_PARTIAL and "Traceback" not in table.output
    assert len(skipped_lines(table.stderr)) == len(BAD)


def test_folder_batch_in_a_real_process(colour_models, image_corpus, tmp_path):
    out = tmp_path / "results.json"
    proc = run_subprocess("classify", "-m", colour_models["int8"], image_corpus, "-f", "json", "-o", out)
    lines = assert_clean_stderr(proc)
    assert proc.returncode == EXIT_PARTIAL, lines
    records = json.loads(out.read_text(encoding="utf-8"))
    assert {r["path"] for r in records} == set(expected_records(image_corpus))
    assert len([line for line in lines if line.startswith("edgecls: skipped ")]) == len(BAD)
    assert not proc.stdout.strip()


def test_only_bad_files_exit_2_in_a_real_process(colour_models, image_corpus):
    bad_paths = [c.path(image_corpus) for c in BAD if c.id in ("zero-byte-jpeg", "bomb-png-60000", "corrupt-name-non-utf8", "fifo", "symlink-loop")]
    proc = run_subprocess("classify", "-m", colour_models["int8"], *bad_paths, "-f", "json")
    lines = assert_clean_stderr(proc)
    assert proc.returncode == EXIT_ERROR
    assert json.loads(proc.stdout) == []
    assert len(lines) == len(bad_paths) + 1 and lines[-1] == f"edgecls: {len(bad_paths)} of {len(bad_paths)} images could not be classified"


def test_good_and_bad_named_files_mixed(colour_models, image_corpus):
    result = cli("classify", "-m", colour_models["int8"], image_corpus / "red.jpg", image_corpus / "empty.png", image_corpus / "green.png", "-f", "json")
    assert result.exit_code == EXIT_PARTIAL
    assert [r["label"] for r in json.loads(result.stdout)] == ["red", "green"]
    assert len(skipped_lines(result.stderr)) == 1


# -- folders and arguments ----------------------------------------------------------------------------
def test_missing_and_empty_inputs(colour_models, tmp_path, image_corpus):
    model = colour_models["int8"]
    assert_one_line_error(cli("classify", "-m", model, tmp_path / "nope"), "no such file or folder")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(cli("classify", "-m", model, tmp_path / "empty"), "folder holds no images")
    # A folder named like an image is a folder: walked, and refused when it holds no image.
    (tmp_path / "x.jpg").mkdir()
    assert_one_line_error(cli("classify", "-m", model, tmp_path / "x.jpg"), "folder holds no images")
    (tmp_path / "x.jpg" / "inside.png").write_bytes(M.encode(M.solid(M.GREEN), "PNG"))
    result = cli("classify", "-m", model, tmp_path / "x.jpg", "-f", "json")
    assert result.exit_code == EXIT_OK and json.loads(result.stdout)[0]["label"] == "green"


def test_symlink_loops_do_not_hang(colour_models, tmp_path):
    folder = tmp_path / "looped"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "red.png").write_bytes(M.encode(M.solid(M.RED), "PNG"))
    os.symlink("..", folder / "a" / "parent")
    os.symlink(folder, folder / "a" / "absolute")
    os.symlink("self", folder / "self")
    result = cli("classify", "-m", colour_models["int8"], folder, "-f", "json")
    assert result.exit_code == EXIT_OK, result.output
    assert [r["label"] for r in json.loads(result.stdout)] == ["red"]
    # Named directly, a link loop is one bad input among good ones.
    result = cli("classify", "-m", colour_models["int8"], folder / "self", folder / "a" / "red.png", "-f", "json")
    assert result.exit_code == EXIT_PARTIAL and len(skipped_lines(result.stderr)) == 1


def test_unreadable_subfolder_is_reported_not_silently_skipped(monkeypatch, colour_models, tmp_path):
    folder = tmp_path / "slides"
    (folder / "locked").mkdir(parents=True)
    (folder / "red.png").write_bytes(M.encode(M.solid(M.RED), "PNG"))
    (folder / "locked" / "blue.png").write_bytes(M.encode(M.solid(M.BLUE), "PNG"))
    real_scandir = os.scandir

    def scandir(path="."):  # what a folder without read permission does (tests may run as root)
        if os.fspath(path).endswith("locked"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    result = cli("classify", "-m", colour_models["int8"], folder, "-f", "json")
    assert result.exit_code == EXIT_OK, result.output
    assert [r["label"] for r in json.loads(result.stdout)] == ["red"]
    (warning,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert warning.startswith("edgecls: warning:") and "locked: cannot read folder (Permission denied)" in warning


def test_bad_flags(colour_models, image_corpus, tmp_path):
    model, image = colour_models["int8"], image_corpus / "red.jpg"
    # --output with the table format is refused before anything is classified.
    out = tmp_path / "o.json"
    assert_one_line_error(cli("classify", "-m", model, image, "-o", out), "--output needs --format json or csv")
    assert not out.exists()
    assert_one_line_error(cli("classify", "-m", model, image, "-f", "json", "-o", tmp_path), "is a folder")
    for flags in (["--top-k", "0"], ["--threads", "0"], ["--workers", "-1"], ["--format", "xml"]):
        result = cli("classify", "-m", model, image, *flags)
        assert result.exit_code == EXIT_ERROR, (flags, result.output)
        assert "Traceback" not in result.output
        assert flags[0] in result.output
    result = cli("classify", image)  # no --model
    assert result.exit_code == EXIT_ERROR and "Traceback" not in result.output


# -- nothing half-written -------------------------------------------------------------------------
def test_output_write_failing_midway_leaves_old_file_intact(monkeypatch, colour_models, image_corpus, tmp_path):
    out = tmp_path / "results.json"
    out.write_text('["old results"]\n', encoding="utf-8")
    real_open = Path.open

    class HalfThenFull:  # the output file: half of the first write lands, then the disk is full
        def __init__(self, file):
            self.file, self.writes = file, 0

        def write(self, text):
            self.writes += 1
            if self.writes > 1:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.file.write(text[: len(text) // 2])

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()
            return False

    def open_for_half(self, mode="r", *args, **kwargs):
        file = real_open(self, mode, *args, **kwargs)
        return HalfThenFull(file) if "w" in mode else file

    monkeypatch.setattr(Path, "open", open_for_half)
    result = cli("classify", "-m", colour_models["int8"], image_corpus / "red.jpg", "-f", "json", "-o", out)
    assert_one_line_error(result, "No space left on device")
    monkeypatch.undo()
    assert out.read_text(encoding="utf-8") == '["old results"]\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_output_rename_failing_leaves_no_temp_file(monkeypatch, colour_models, image_corpus, tmp_path):
    import edgecls.files

    out = tmp_path / "results.csv"

    def refuse(src, dst):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dst))

    monkeypatch.setattr(edgecls.files.os, "replace", refuse)
    result = cli("classify", "-m", colour_models["int8"], image_corpus / "red.jpg", "-f", "csv", "-o", out)
    assert_one_line_error(result, "Permission denied")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_cleans_up_on_exceptions(tmp_path):
    target = tmp_path / "model.tflite"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half a mod")
            raise RuntimeError("converter crashed")
    assert list(tmp_path.iterdir()) == []

    target.write_bytes(b"old")
    for exc in (KeyboardInterrupt, OSError):
        with pytest.raises(exc):
            with atomic_path(target) as tmp:
                tmp.write_bytes(b"new but incomplete")
                raise exc()
        assert target.read_bytes() == b"old"
        assert list(tmp_path.iterdir()) == [target]

    # A writer that never creates the temp file (it failed first) is fine too.
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            tmp.unlink()
            raise ValueError("no file")
    assert list(tmp_path.iterdir()) == [target]

    with atomic_path(target) as tmp:
        tmp.write_bytes(b"complete")
    assert target.read_bytes() == b"complete" and list(tmp_path.iterdir()) == [target]


def test_json_writer_failing_before_writing_keeps_old_file(tmp_path):
    target = tmp_path / "metrics.json"
    write_json_atomic(target, {"ok": 1})
    with pytest.raises(TypeError):
        write_json_atomic(target, {"bad": object()})
    assert json.loads(target.read_text()) == {"ok": 1}
    assert list(tmp_path.iterdir()) == [target]
    write_text_atomic(tmp_path / "new" / "deeper" / "x.txt", "made the folders")
    assert (tmp_path / "new" / "deeper" / "x.txt").read_text() == "made the folders"


# -- workstation commands: datasets and run folders that cannot be used ----------------------------
# `edgecls train`, `evaluate` and `convert` must stop before any training or conversion with one
# line that says what is wrong and how much of it (counts), like the device commands do.
COLOURS = {"red": (200, 40, 40), "green": (40, 190, 60), "blue": (40, 60, 200)}


def colour_folders(root: Path, counts: dict[str, int], identical: tuple[str, ...] = ()) -> Path:
    rng = np.random.default_rng(len(counts))
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = np.clip(np.array(COLOURS[name]) + rng.normal(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
            if name in identical:  # byte-identical copies: one duplicate group
                pixels = np.full((32, 32, 3), COLOURS[name], np.uint8)
            (root / name / f"{name}_{i}.png").write_bytes(M.encode(M.Image.fromarray(pixels), "PNG"))
    return root


def ham10000(root: Path, rows: list[tuple[str, str]], with_images: bool, header="lesion_id,image_id,dx") -> Path:
    root.mkdir(parents=True)
    lines = [header] + [f"L{i},{image_id},{dx}" for i, (image_id, dx) in enumerate(rows)]
    (root / "HAM10000_metadata.csv").write_text("\n".join(lines) + "\n")
    if with_images:
        for i, (image_id, _) in enumerate(rows):
            (root / f"{image_id}.jpg").write_bytes(M.encode(M.solid((i * 20, 90, 160), (32, 32)), "JPEG"))
    return root


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("datasets")
    ids = [f"ISIC_{i:07d}" for i in range(6)]
    return {
        "good": colour_folders(base / "good", {"red": 6, "green": 6, "blue": 6}),
        "ham-images-missing": ham10000(base / "ham-missing", [(i, "akiec" if n % 2 else "bcc") for n, i in enumerate(ids)], False),
        "ham-unknown-label": ham10000(base / "ham-unknown", [(i, "akiec" if n % 2 else "xyz") for n, i in enumerate(ids)], True),
        "ham-no-dx-column": ham10000(base / "ham-columns", [(i, "akiec") for i in ids], True, header="lesion_id,image_id,diagnosis"),
        "empty-class": colour_folders(base / "empty-class", {"red": 5, "green": 0}),
        "class-too-small": colour_folders(base / "too-small", {"red": 5, "green": 1, "blue": 4}),
        "class-cannot-split": colour_folders(base / "one-group", {"red": 6, "green": 2}, identical=("green",)),
        "missing": base / "no such dataset",
    }


# (dataset, phrase of the one error line, commands it applies to). "Cannot split" is train's
# alone: evaluating a whole dataset needs no split.
DATASET_ERRORS = [
    ("ham-images-missing", "no usable images (skipped: missing file: 6)", ("train", "evaluate", "convert")),
    ("ham-unknown-label", "unknown dx label(s) 'xyz' (3 rows)", ("train", "evaluate", "convert")),
    ("ham-no-dx-column", "no dx column", ("train", "evaluate", "convert")),
    ("empty-class", "need at least 2 classes, found only 'red' (5 images)", ("train", "evaluate", "convert")),
    ("class-too-small", "'green': 1", ("train", "evaluate", "convert")),
    ("class-cannot-split", "cannot split: class(es) 'green' (2 images) have a single group", ("train", "convert")),
    ("missing", "dataset not found", ("train", "evaluate", "convert")),
]


def train_args(data: Path, output: Path, *extra) -> list:
    return ["train", data, "--output", output, "--epochs", "1", "--image-size", "32", "--model", "edge-cnn-small", *extra]


@pytest.mark.parametrize("name,phrase", [(n, p) for n, p, commands in DATASET_ERRORS if "train" in commands])
def test_train_refuses_unusable_datasets_before_training(name, phrase, datasets, tmp_path):
    run_dir = tmp_path / "run"
    result = cli(*train_args(datasets[name], run_dir))
    assert "Traceback" not in result.output
    errors = error_lines(result.stderr)
    assert result.exit_code == EXIT_ERROR and len(errors) == 1, result.output
    assert phrase in errors[0], errors[0]
    assert not (run_dir / "model.keras").exists() and not (run_dir / "config.json").exists()


@pytest.mark.parametrize("name,phrase", [(n, p) for n, p, commands in DATASET_ERRORS if "evaluate" in commands])
def test_evaluate_refuses_unusable_datasets(name, phrase, datasets, colour_models, tmp_path):
    result = cli("evaluate", colour_models["float32"], datasets[name], "--output", tmp_path / "report")
    assert "Traceback" not in result.output
    errors = error_lines(result.stderr)
    assert result.exit_code == EXIT_ERROR and len(errors) == 1, result.output
    assert phrase in errors[0], errors[0]
    assert not (tmp_path / "report").exists()


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory) -> Path:
    from edgecls.core.runs import save_keras_model

    return save_keras_model(keras_colour_model(), tmp_path_factory.mktemp("keras") / "colours.keras")


@pytest.mark.parametrize("name,phrase", [(n, p) for n, p, commands in DATASET_ERRORS if "convert" in commands])
def test_convert_refuses_unusable_datasets(name, phrase, datasets, keras_file, tmp_path):
    """A .keras file with --data is split afresh, so the split errors apply too."""
    result = cli("convert", keras_file, "--data", datasets[name], "--output", tmp_path / "converted")
    assert "Traceback" not in result.output
    errors = error_lines(result.stderr)
    assert result.exit_code == EXIT_ERROR and len(errors) == 1, result.output
    assert phrase in errors[0], errors[0]
    assert not list(tmp_path.glob("converted/*.tflite"))


def keras_colour_model(with_lambda: bool = False):
    from edgecls.core.tf_env import import_tf

    _, keras = import_tf()
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs) if with_lambda else inputs
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def make_run(run_dir: Path, data: Path, with_lambda: bool = False) -> Path:
    """A run folder as `edgecls train` leaves it, made with its own writers (no training needed)."""
    from edgecls.core import runs
    from edgecls.data.datasets import load_dataset
    from edgecls.data.split import make_split, save_split
    from edgecls.train.options import TrainOptions
    from edgecls.train.run import write_run_config

    dataset = load_dataset(data)
    options = TrainOptions(model="edge-cnn-small", image_size=32, epochs=1)
    run_dir.mkdir(parents=True)
    save_split(run_dir, dataset, make_split(dataset, 0.3, 0.3, seed=1))
    write_run_config(run_dir, data, dataset, options)
    runs.save_keras_model(keras_colour_model(with_lambda), run_dir / runs.MODEL_FILE)
    return run_dir


@pytest.fixture()
def broken_runs(datasets, tmp_path) -> dict[str, tuple[Path, str]]:
    """Runs whose dataset changed after training, and one whose model runs code: (run, phrase)."""
    import shutil

    runs = {}
    moved = shutil.copytree(datasets["good"], tmp_path / "data-moved")
    runs["dataset-moved"] = (make_run(tmp_path / "run-moved", moved), "dataset not found")
    shutil.rmtree(moved)
    shrunk = shutil.copytree(datasets["good"], tmp_path / "data-shrunk")
    runs["images-deleted"] = (make_run(tmp_path / "run-shrunk", shrunk), "2 of its 18 images are not in the dataset")
    for path in sorted((shrunk / "red").iterdir())[:2]:
        path.unlink()
    renamed = shutil.copytree(datasets["good"], tmp_path / "data-renamed")
    runs["class-renamed"] = (make_run(tmp_path / "run-renamed", renamed), "classes differ from the run's")
    (renamed / "blue").rename(renamed / "navy")
    runs["lambda-layer"] = (make_run(tmp_path / "run-lambda", datasets["good"], with_lambda=True), "Lambda")
    return runs


@pytest.mark.parametrize("command", ["evaluate", "convert"])
@pytest.mark.parametrize("case", ["dataset-moved", "images-deleted", "class-renamed", "lambda-layer"])
def test_evaluate_and_convert_refuse_broken_runs(command, case, broken_runs):
    run_dir, phrase = broken_runs[case]
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    result = cli(command, run_dir)
    assert "Traceback" not in result.output
    errors = error_lines(result.stderr)
    assert result.exit_code == EXIT_ERROR and len(errors) == 1, result.output
    assert phrase in errors[0], errors[0]
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before  # nothing half-written


def test_keras_files_load_in_safe_mode(datasets, tmp_path):
    """A .keras file with a Lambda layer would run arbitrary Python when loaded: refused."""
    from edgecls.core.runs import load_keras_model, save_keras_model

    path = save_keras_model(keras_colour_model(with_lambda=True), tmp_path / "lambda.keras")
    with pytest.raises(EdgeclsError, match="Lambda"):
        load_keras_model(path)
    result = cli("evaluate", path, datasets["good"], "--output", tmp_path / "report")
    errors = error_lines(result.stderr)
    assert result.exit_code == EXIT_ERROR and len(errors) == 1 and "Lambda" in errors[0], result.output
    result = cli("convert", path, "--data", datasets["good"], "--output", tmp_path / "converted")
    errors = error_lines(result.stderr)
    assert result.exit_code == EXIT_ERROR and len(errors) == 1 and "Lambda" in errors[0], result.output
    assert not list(tmp_path.glob("converted/*.tflite"))
    # Not a Keras file at all: the same one line.
    (tmp_path / "fake.keras").write_bytes(b"PK\x03\x04 not really a zip")
    result = cli("evaluate", tmp_path / "fake.keras", datasets["good"], "--output", tmp_path / "report")
    assert result.exit_code == EXIT_ERROR and "cannot load Keras model" in error_lines(result.stderr)[0]


def test_train_refuses_to_overwrite_a_run_without_force(datasets, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text('{"precious": true}')
    (run_dir / "model.keras").write_bytes(b"the only copy of last week's model")
    result = cli(*train_args(datasets["good"], run_dir))
    errors = error_lines(result.stderr)
    assert result.exit_code == EXIT_ERROR and len(errors) == 1, result.output
    assert "already holds a run" in errors[0] and "--force" in errors[0]
    assert (run_dir / "model.keras").read_bytes() == b"the only copy of last week's model"
    (tmp_path / "a-file").write_text("x")
    assert_one_line_error(cli(*train_args(datasets["good"], tmp_path / "a-file")), "is a file")


def test_train_force_with_an_unusable_dataset_keeps_the_old_run(datasets, tmp_path):
    """--force replaces a run with a new one; when no new one can even start (the dataset is
    unusable), the old run must still be there."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text('{"precious": true}')
    (run_dir / "model.keras").write_bytes(b"the only copy of last week's model")
    result = cli(*train_args(datasets["missing"], run_dir, "--force"))
    assert result.exit_code == EXIT_ERROR and "dataset not found" in error_lines(result.stderr)[0]
    assert (run_dir / "model.keras").is_file(), "--force deleted the old run before finding the dataset unusable"

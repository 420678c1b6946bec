"""Hostile inputs on the device: model files with loops or custom ops, label-archive bombs,
special files in folders, outputs onto FIFOs or inputs, signals mid-run, escape sequences and
markup in labels and file names. Every hang case runs in a child process under the test's own
timeout (far above the bound under test), every memory case under RLIMIT_AS."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from tiny_models import solid_image
from typer.testing import CliRunner

from edgecls.cli import app

runner = CliRunner()
# A child that hangs is killed here: far above the 2 s invoke bound the tests set.
CHILD_TIMEOUT = 120
INVOKE_BOUND = "2"


def edgecls(*args: str, timeout: float = CHILD_TIMEOUT, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgecls", *map(str, args)], capture_output=True, text=True, timeout=timeout, **kwargs)


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if not line.startswith("edgecls: warning:")]
    assert len(lines) == 1 and lines[0].startswith("edgecls: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture(scope="module")
def loop_models(tmp_path_factory) -> dict[str, Path]:
    """A model whose WHILE never ends, and one whose WHILE takes a while per invoke."""
    from hostile_tflite import loop_tflite

    folder = tmp_path_factory.mktemp("loop_models")
    paths = {"endless": folder / "endless.tflite", "slow": folder / "slow.tflite"}
    paths["endless"].write_bytes(loop_tflite(None))
    paths["slow"].write_bytes(loop_tflite(400_000))
    return paths


@pytest.fixture()
def images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(20):
        Image.fromarray(solid_image((200, 10 * i, 10))).save(folder / f"img_{i:02d}.png")
    return folder


# -- operators ---------------------------------------------------------------------------------


def test_builtin_and_converted_models_use_only_classifier_ops(colour_models):
    from edgecls.edge_runtime.builtin import builtin_models
    from edgecls.edge_runtime.ops import check_operators

    files = [*builtin_models().values(), *colour_models.values()]
    assert len(files) >= 5
    for path in files:
        check_operators(path.read_bytes())


def test_edgecls_converter_outputs_pass_the_op_check():
    """What edgecls's own converter writes for layers that lower to more than convolutions
    (GroupNormalization's shape arithmetic, an LSTM's fused kernel, float16 and dynamic-range
    weights): float32, float16, dynamic, PTQ int8 with uint8 and int8 I/O (logits output too)."""
    import numpy as np

    from edgecls.convert.converter import convert_to_tflite
    from edgecls.edge_runtime.ops import check_operators, operator_codes
    from edgecls.train.models import create_model

    calibration = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    seen = set()
    plan = {"cnn-lstm": [("float32", "uint8"), ("dynamic", "uint8"), ("ptq-int8", "uint8")], "gn-cnn": [("float16", "uint8"), ("ptq-int8", "int8")]}
    for name, conversions in plan.items():
        model = create_model(name, (32, 32, 3), 3)
        for mode, io in conversions:
            model_bytes = convert_to_tflite(model, mode, io, calibration)
            check_operators(model_bytes)
            seen |= {code for code, _ in operator_codes(model_bytes)}
    assert {44, 6, 114} <= seen  # UNIDIRECTIONAL_SEQUENCE_LSTM, DEQUANTIZE, QUANTIZE: the check saw them


@pytest.mark.parametrize("code,custom,named", [(32, "EvilKernel", "custom op 'EvilKernel'"), (148, None, "RANDOM_UNIFORM"), (119, None, "WHILE")])
def test_ops_outside_the_allow_list_are_refused_by_name(colour_models, code, custom, named):
    from hostile_tflite import with_operator_code

    from edgecls import Classifier
    from edgecls.errors import EdgeclsError

    hostile = with_operator_code(colour_models["float32"].read_bytes(), code, custom)
    with pytest.raises(EdgeclsError, match=named):
        Classifier(hostile)


def test_a_while_loop_is_refused_before_anything_runs(loop_models, tmp_path):
    image = tmp_path / "x.png"
    Image.fromarray(solid_image((200, 10, 10))).save(image)
    for args in (["classify", image, "-m", loop_models["endless"]], ["info", loop_models["endless"]], ["bench", loop_models["endless"], "-n", "1"]):
        start = time.monotonic()
        out = edgecls(*args)
        line = one_error_line(out.stderr)
        assert out.returncode == 2 and "control-flow op WHILE" in line and "--allow-control-flow" in line
        assert time.monotonic() - start < 30


def test_info_shows_a_loop_model_with_allow_control_flow(loop_models):
    out = runner.invoke(app, ["info", str(loop_models["endless"]), "--allow-control-flow"])
    assert out.exit_code == 0 and "loop-test" in out.output


# -- the invoke time bound ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["one image", "folder", "bench"])
def test_an_endless_loop_is_stopped_by_the_invoke_bound(loop_models, images, tmp_path, kind):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    bound = ["--allow-control-flow", "--invoke-timeout", INVOKE_BOUND]
    args = {
        "one image": ["classify", images / "img_00.png", "-m", loop_models["endless"], *bound],
        "folder": ["classify", images, "-m", loop_models["endless"], "-f", "json", "-o", out_dir / "out.json", *bound],
        "bench": ["bench", loop_models["endless"], "-n", "3", "--warmup", "1", "-o", out_dir / "bench.json", *bound],
    }[kind]
    start = time.monotonic()
    out = edgecls(*args)
    elapsed = time.monotonic() - start
    line = one_error_line(out.stderr)
    assert out.returncode == 2 and f"ran longer than {INVOKE_BOUND} s" in line
    assert elapsed < 45, elapsed
    assert list(out_dir.iterdir()) == []  # no output, and no partial file left behind


def test_a_slow_loop_under_the_bound_still_classifies(loop_models, images):
    out = edgecls("classify", images / "img_00.png", "-m", loop_models["slow"], "--allow-control-flow", "-f", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["label"] in ("a", "b", "c")


# -- signals: no partial file ------------------------------------------------------------------


def _start_slow_run(loop_models, images, output: Path) -> subprocess.Popen:
    """A folder run that takes seconds (each invoke a long loop), writing JSON to `output`."""
    args = ["classify", images, "-m", loop_models["slow"], "--allow-control-flow", "-f", "json", "-o", output, "--workers", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "edgecls", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not [p for p in output.parent.iterdir() if ".edgecls-partial-" in p.name]:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    return proc


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_leave_no_partial_file(loop_models, images, tmp_path, signum):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = _start_slow_run(loop_models, images, out_dir / "results.json")
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=CHILD_TIMEOUT)
    assert proc.returncode == 128 + signum, stderr
    assert f"terminated by {signal.Signals(signum).name}" in one_error_line(stderr)
    assert list(out_dir.iterdir()) == []


def test_a_killed_runs_partial_file_is_named_so_and_removed_by_the_next_run(loop_models, images, colour_models, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    output = out_dir / "results.json"
    proc = _start_slow_run(loop_models, images, output)
    proc.kill()
    proc.communicate(timeout=CHILD_TIMEOUT)
    [leftover] = list(out_dir.iterdir())
    assert leftover.name.startswith(f".results.json.{proc.pid}.edgecls-partial-")  # hidden, and says what it is
    out = runner.invoke(app, ["classify", str(images / "img_00.png"), "-m", str(colour_models["float32"]), "-f", "json", "-o", str(output)])
    assert out.exit_code == 0, out.output
    assert [p.name for p in out_dir.iterdir()] == ["results.json"] and json.loads(output.read_text())[0]["label"] == "red"


# -- the appended label archive ------------------------------------------------------------------


def _memory_limited(limit: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


@pytest.mark.parametrize("count,size_mib", [(200, 15), (2, 15)])
def test_a_label_archive_bomb_is_refused_under_a_memory_limit(colour_models, tmp_path, count, size_mib):
    """A 3 MB file whose archive claims 200 x 15 MiB (3 GB): refused from the central directory,
    in `info` and in `classify` (a file without an edgecls entry reads the archive's labels),
    in a child whose address space could not hold what the archive inflates to."""
    from hostile_tflite import labels_zip_bomb, tflite_metadata_only

    bomb = tflite_metadata_only(colour_models["uint8"].read_bytes(), labels_zip_bomb(count, size_mib << 20))
    model = tmp_path / "bomb.tflite"
    model.write_bytes(bomb)
    assert len(bomb) < 4 << 20
    image = tmp_path / "x.png"
    Image.fromarray(solid_image((200, 10, 10))).save(image)
    limit = 2 << 30  # the interpreter and numpy need well under 1 GiB; 200 x 15 MiB is 3 GiB
    for args in (["info", model], ["info", model, "--json"], ["classify", image, "-m", model]):
        out = edgecls(*args, preexec_fn=_memory_limited(limit))
        line = one_error_line(out.stderr)
        assert out.returncode == 2 and "appended archive" in line, line


def test_a_small_label_archive_still_reads(colour_models):
    from edgecls.edge_runtime.metadata import read_standard_metadata

    meta = read_standard_metadata(colour_models["uint8"].read_bytes())
    assert meta.labels == ["red", "green", "blue"] and meta.associated_files == ["labels.txt"]


# -- metadata values shown as they are -----------------------------------------------------------


def _model_with(tmp_path, colour_models, **fields) -> Path:
    """The float32 colour model with some of its metadata fields replaced."""
    from edgecls.edge_runtime.metadata import ModelMetadata, read_metadata, write_metadata

    original = colour_models["float32"].read_bytes()
    meta = ModelMetadata(**{**read_metadata(original).__dict__, **fields})
    path = tmp_path / "model.tflite"
    path.write_bytes(write_metadata(original, meta))
    return path


def test_a_non_numeric_target_sensitivity_is_shown_as_invalid(tmp_path, colour_models):
    groups = {"warm": ["red"]}
    point = {"group": "warm", "threshold": 0.5, "target_sensitivity": "ninety"}
    model = _model_with(tmp_path, colour_models, groups=groups, operating_point=point)
    out = runner.invoke(app, ["info", str(model)])
    assert out.exit_code == 0, out.output
    assert "target_sensitivity in the file is invalid: 'ninety'" in out.output


def test_info_json_is_valid_json_when_metadata_holds_nan(tmp_path, colour_models):
    model = _model_with(tmp_path, colour_models, metrics={"macro_auc": float("nan"), "accuracy": 0.9, "loss": float("inf")})
    out = runner.invoke(app, ["info", str(model), "--json"])
    assert out.exit_code == 0, out.output

    def no_constants(name):
        raise AssertionError(f"not JSON: {name}")

    doc = json.loads(out.stdout, parse_constant=no_constants)
    assert doc["metadata"]["metrics"] == {"macro_auc": None, "accuracy": 0.9, "loss": None}


# -- escaping: markup, ANSI, OSC, CR, bidi -------------------------------------------------------

HOSTILE_LABELS = ["re[/d]", "gr\x1b[31meen\x1b]0;pwned\x07", "bl\rue\u202e"]


def test_labels_and_file_names_are_printed_escaped(tmp_path):
    from tiny_models import colour_tflite

    model = tmp_path / "hostile.tflite"
    model.write_bytes(colour_tflite("float32", labels=HOSTILE_LABELS))
    folder = tmp_path / "in"
    folder.mkdir()
    names = ["lesion[left arm].png", "a\x1b[2Jb.png", "x\u202egnp.exe.png", "[red]warm.png"]
    colours = [(220, 10, 10), (10, 220, 10), (10, 10, 220), (220, 10, 10)]
    for name, colour in zip(names, colours):
        Image.fromarray(solid_image(colour)).save(folder / name)
    out = runner.invoke(app, ["classify", str(folder), "-m", str(model), "-k", "3"])
    assert out.exit_code == 0, out.output
    text = out.stdout
    for raw in ("\x1b", "\r", "\u202e", "\x07"):
        assert raw not in out.output
    for shown in ("lesion[left arm].png", "a\\x1b[2Jb.png", "x\\u202egnp.exe.png", "[red]warm.png", "re[/d]", "gr\\x1b[31meen\\x1b]0;pwned\\x07", "bl\\x0due\\u202e"):
        assert shown in text, (shown, text)

    info = runner.invoke(app, ["info", str(model)])
    assert info.exit_code == 0 and "\x1b" not in info.output and "gr\\x1b[31meen" in info.output

    as_json = runner.invoke(app, ["classify", str(folder / names[1]), "-m", str(model), "-f", "json"])
    record = json.loads(as_json.stdout)[0]
    assert record["path"].endswith("a\\x1b[2Jb.png") and record["label"] == HOSTILE_LABELS[1]  # data stays data
    assert "\x1b" not in as_json.stdout  # JSON escapes it (\u001b)


def test_error_lines_escape_file_names(tmp_path, colour_models):
    bad = tmp_path / "bad\x1b]0;title\x07.png"
    bad.write_bytes(b"not a png")
    out = runner.invoke(app, ["classify", str(bad), "-m", str(colour_models["float32"])])
    assert out.exit_code == 2 and "\x1b" not in out.output and "bad\\x1b]0;title\\x07.png" in out.output


# -- folders: special files and unsupported formats ----------------------------------------------


def test_special_files_in_a_folder_are_skipped_before_they_are_opened(tmp_path, colour_models):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(solid_image((220, 10, 10))).save(folder / "real.png")
    os.mkfifo(folder / "fifo.jpg")
    blocking = tmp_path / "no_writer"
    os.mkfifo(blocking)  # opening it for reading blocks until a writer comes: none will
    (folder / "link_to_fifo.jpg").symlink_to(blocking)
    (folder / "zero.jpg").symlink_to("/dev/zero")  # endless reads
    (folder / "kernel.jpg").symlink_to("/proc/self/status")  # "regular", but the kernel's
    server = socket.socket(socket.AF_UNIX)
    server.bind(os.fspath(folder / "sock.jpg"))
    try:
        out = edgecls("classify", folder, "-m", colour_models["float32"], "-f", "json", timeout=60)
    finally:
        server.close()
    assert out.returncode == 1, out.stderr
    assert [r["path"].rsplit("/", 1)[-1] for r in json.loads(out.stdout)] == ["real.png"]
    skipped = {line.split(": ", 2)[1].rsplit("/", 1)[-1]: line for line in out.stderr.splitlines() if line.startswith("edgecls: skipped")}
    assert set(skipped) == {"fifo.jpg", "link_to_fifo.jpg", "zero.jpg", "kernel.jpg", "sock.jpg"}
    assert all("not opened" in line for line in skipped.values())
    assert "a FIFO" in skipped["link_to_fifo.jpg"] and "a character device" in skipped["zero.jpg"] and "a socket" in skipped["sock.jpg"]


def test_unsupported_image_formats_get_a_skipped_row(tmp_path, colour_models):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(solid_image((220, 10, 10))).save(folder / "a.png")
    (folder / "b.heic").write_bytes(b"\0\0\0\x18ftypheic")
    (folder / "c.AVIF").write_bytes(b"\0\0\0\x1cftypavif")
    out = runner.invoke(app, ["classify", str(folder), "-m", str(colour_models["float32"])])
    assert out.exit_code == 1
    lines = [line for line in out.stderr.splitlines() if line.startswith("edgecls: skipped")]
    assert len(lines) == 2
    assert lines[0].endswith("b.heic: unsupported format (.heic), not read") and lines[1].endswith("c.AVIF: unsupported format (.avif), not read")
    assert "2 of 3 images could not be classified" in out.stderr


# -- --output ------------------------------------------------------------------------------------


def test_output_onto_a_fifo_or_a_link_to_one_is_refused(tmp_path, colour_models):
    image = tmp_path / "x.png"
    Image.fromarray(solid_image((220, 10, 10))).save(image)
    fifo = tmp_path / "sink"  # stands in for /dev/null: a node that is not a regular file
    os.mkfifo(fifo)
    link = tmp_path / "link.json"
    link.symlink_to(fifo)
    for target in (fifo, link, tmp_path):
        out = edgecls("classify", image, "-m", colour_models["float32"], "-f", "json", "-o", target, timeout=60)
        line = one_error_line(out.stderr)
        assert out.returncode == 2 and ("not a regular file (a FIFO)" in line or "is a folder" in line), line
    bench = edgecls("bench", colour_models["float32"], "-n", "1", "--warmup", "0", "-o", fifo, timeout=60)
    assert bench.returncode == 2 and "a FIFO" in one_error_line(bench.stderr)
    assert fifo.is_fifo() and link.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "sink", "x.png"]


def test_output_onto_an_input_is_refused(tmp_path, colour_models, images):
    named = images / "img_03.png"
    before = named.read_bytes()
    for args in (
        ["classify", str(named), "-m", str(colour_models["float32"]), "-f", "csv", "-o", str(named)],
        ["classify", str(images), "-m", str(colour_models["float32"]), "-f", "json", "-o", str(named)],
        ["bench", str(colour_models["float32"]), "-n", "1", "-o", str(colour_models["float32"])],
    ):
        out = runner.invoke(app, args)
        assert out.exit_code == 2 and ("is one of the inputs" in out.output or "inside the input folder" in out.output), out.output
    assert named.read_bytes() == before


def test_watchdog_calls_back_for_a_long_invoke_only():
    from edgecls.edge_runtime import watchdog

    fired = []
    dog = watchdog.bound_invokes(0.2, lambda seconds, what: fired.append((seconds, what)))
    try:
        dog.arm("quick")
        dog.disarm()
        time.sleep(0.5)
        assert fired == []
        dog.arm("slow")
        time.sleep(0.8)
        assert fired == [(0.2, "slow")]
    finally:
        watchdog.stop_bounding()
    assert watchdog.active is None

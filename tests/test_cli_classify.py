"""`edgecls classify` and `edgecls info` as a user runs them."""

from __future__ import annotations

import csv
import io
import json

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

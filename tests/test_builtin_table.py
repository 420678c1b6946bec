"""scripts/builtin_models_table.py: its table is its JSON's numbers, `--update` touches only the
marked block, what it measures is what the device runtime gives, and a missing data folder is one
line and exit code 2."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "builtin_models_table.py"


def _script():
    spec = importlib.util.spec_from_file_location("builtin_models_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _split(images, accuracy, bal, auc, ece, point=None) -> dict:
    out = {"images": images, "accuracy": accuracy, "balanced_accuracy": bal, "macro_auc": auc, "ece": ece}
    if point:
        out["operating_point"] = point
    return out


HAND_MADE = {
    "schema": "edgecls.builtin-models/1",
    "date": "2026-01-02T03:04:05+00:00",
    "edgecls_version": "9.8.7",
    "interpreter": "ai-edge-litert 0.0.1",
    "machine": {"cpu": "Test CPU 3000", "cores": 6, "int8_dot_product": [], "simd": "NEON", "system": "Linux",
                "arch": "aarch64", "python": "3.11.0"},
    "invoke": {"threads": 1, "warmup_rounds": 10, "rounds": 200, "reference": "big"},
    "models": [
        {"name": "big", "architecture": "edge-cnn-large", "dataset": "ham10000", "input_size": [94, 94],
         "file_size_bytes": 476259, "operating_point": {"group": "malignant", "threshold": 0.218212, "members": ["mel"]},
         "splits": {"val": _split(1278, 0.81234, 0.70111, 0.93456, 0.04321),
                    "test": _split(1276, 0.79876, 0.68765, 0.92987, 0.05678,
                                   {"sensitivity": 0.9123, "specificity": 0.7011, "positives": 10, "negatives": 20})},
         "invoke": {"p50_ms": 3.14159, "p90_ms": 4.0, "vs_reference": 1.0}},
        {"name": "small", "architecture": None, "dataset": "blood", "input_size": [64, 64],
         "file_size_bytes": 243993, "operating_point": None,
         "splits": {"val": _split(417, 0.986, 0.9855, None, 0.0061), "test": _split(416, 0.981, 0.978, 0.999, 0.0144)},
         "invoke": {"p50_ms": 0.3333, "p90_ms": 0.5, "vs_reference": 0.10611}},
    ],
}  # fmt: skip


def _rows(table: str) -> list[dict[str, str]]:
    """The markdown table's rows as header -> cell."""
    lines = [line for line in table.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]


def test_the_table_is_the_json_s_numbers():
    table = _script().markdown(HAND_MADE)
    rows = _rows(table)
    assert [row["model"] for row in rows] == ["`big`", "`small`"]
    for row, model in zip(rows, HAND_MADE["models"]):
        for split in ("val", "test"):
            m = model["splits"][split]
            assert float(row[f"{split} acc."]) == pytest.approx(100 * m["accuracy"], abs=0.05)
            assert float(row[f"{split} bal. acc."]) == pytest.approx(100 * m["balanced_accuracy"], abs=0.05)
            assert float(row[f"{split} ECE"]) == pytest.approx(m["ece"], abs=0.0005)
            if m["macro_auc"] is None:
                assert row[f"{split} macro AUC"] == "-"
            else:
                assert float(row[f"{split} macro AUC"]) == pytest.approx(m["macro_auc"], abs=0.0005)
        assert row["architecture"] == (model["architecture"] or "-")
        assert float(row["int8 file (MB)"]) == pytest.approx(model["file_size_bytes"] / 1e6, abs=0.005)
        assert float(row["invoke p50 (ms, 1 thread)"]) == pytest.approx(model["invoke"]["p50_ms"], abs=0.005)
        assert row["invoke vs reference"].endswith("x")
        assert float(row["invoke vs reference"][:-1]) == pytest.approx(model["invoke"]["vs_reference"], abs=0.005)
    sens, spec = (float(v) for v in rows[0]["test malignant sens. / spec."].split("/"))
    point = HAND_MADE["models"][0]["splits"]["test"]["operating_point"]
    assert (sens, spec) == (pytest.approx(100 * point["sensitivity"], abs=0.05), pytest.approx(100 * point["specificity"], abs=0.05))
    assert rows[1]["test malignant sens. / spec."] == "-"
    assert "`big` 1278 / 1276; `small` 417 / 416" in table
    assert "Test CPU 3000, 6 cores, int8 dot-product instructions: none (NEON only); 2026-01-02, edgecls 9.8.7" in table
    assert "`big` 0.218" in table and "reference `big`" in table


def test_update_rewrites_only_the_marked_block_and_is_idempotent(tmp_path):
    data = tmp_path / "models.json"
    data.write_text(json.dumps(HAND_MADE), encoding="utf-8")
    before = "# Title\r\n\r\nIntro with CRLF and ünïcode.\r\n\n"
    after = "\n\nMore text | with | pipes\n<!-- speed-tables: x -->\nend without newline"
    readme = tmp_path / "README.md"
    readme.write_bytes((before + "<!-- builtin-models-table -->\n| old | table |\n<!-- /builtin-models-table -->" + after).encode("utf-8"))
    readme.chmod(0o644)
    script = _script()

    assert script.main(["--markdown-from", str(data), "--update", str(readme)]) == 0
    first = readme.read_bytes()
    assert first.startswith(before.encode("utf-8")) and first.endswith(after.encode("utf-8"))
    block = first[len(before.encode("utf-8")) : len(first) - len(after.encode("utf-8"))].decode("utf-8")
    assert block == f"<!-- builtin-models-table -->\n\n{script.markdown(HAND_MADE)}\n\n<!-- /builtin-models-table -->"
    assert "| old | table |" not in block
    assert oct(readme.stat().st_mode & 0o777) == oct(0o644)

    assert script.main(["--markdown-from", str(data), "--update", str(readme)]) == 0
    assert readme.read_bytes() == first
    assert {p.name for p in tmp_path.iterdir()} == {"models.json", "README.md"}  # no temporary file left


def test_update_without_the_markers_is_refused_and_leaves_the_page(tmp_path, capsys):
    data = tmp_path / "models.json"
    data.write_text(json.dumps(HAND_MADE), encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n", encoding="utf-8")
    assert _script().main(["--markdown-from", str(data), "--update", str(readme)]) == 2
    assert readme.read_text(encoding="utf-8") == "no markers here\n"
    assert "builtin-models-table" in capsys.readouterr().err


# -- measuring on a tiny dataset -------------------------------------------------------------------
# The colour model's answer is the dominant channel; the labels below are partly wrong on purpose
# (and some colours mixed), so accuracy is neither 0 nor 1 and a wrong split or label order shows.
COLOURS = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}


def _tiny_dataset(folder: Path, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    names = list(COLOURS)
    for i in range(48):
        label = names[i % 3]
        split = ("train", "val", "test", "val", "test")[i % 5]
        colour = np.array(COLOURS[label], float)
        if i % 4 == 0:  # a mixed colour: the model's answer may be another class
            colour = 0.5 * colour + 0.5 * np.array(COLOURS[names[(i + 1) % 3]])
        if i % 7 == 0:  # a wrong label
            label = names[(i + 2) % 3]
        pixels = np.clip(colour + rng.normal(0, 30, (20, 24, 3)), 0, 255).astype(np.uint8)
        key = f"shots/{label}/img_{i:03d}.png"
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / key)
        rows.append({"key": key, "label": label, "split": split})
    return rows


def _with_metadata(source: Path, target: Path, **changes) -> None:
    from edgecls.edge_runtime.metadata import read_metadata, write_metadata

    raw = source.read_bytes()
    meta = read_metadata(raw)
    for name, value in changes.items():
        setattr(meta, name, value)
    target.write_bytes(write_metadata(raw, meta))


def _device_figures(model: Path, folder: Path, rows: list[dict], split: str) -> dict:
    """The same figures computed independently: TFLiteClassifier.predict on load_image, numpy."""
    from edgecls.edge_runtime import TFLiteClassifier, load_image

    runtime = TFLiteClassifier(model, num_threads=1)
    chosen = [r for r in rows if r["split"] == split]
    truth = np.array([runtime.labels.index(r["label"]) for r in chosen])
    predictions = [runtime.predict(load_image(folder / r["key"], runtime.input_size, runtime.channels)) for r in chosen]
    probabilities = np.stack([p.probabilities for p in predictions])
    out = {"images": len(chosen), "accuracy": float(np.mean(probabilities.argmax(axis=1) == truth))}
    recalls = [np.mean(probabilities.argmax(axis=1)[truth == c] == c) for c in np.unique(truth)]
    out["balanced_accuracy"] = float(np.mean(recalls))
    point = runtime.metadata.operating_point
    if point:
        members = [runtime.labels.index(label) for label in runtime.metadata.groups[point["group"]]]
        positive = np.isin(truth, members)
        flagged = probabilities[:, members].sum(axis=1) >= point["threshold"]
        out["sensitivity"] = float(flagged[positive].mean())
        out["specificity"] = float((~flagged[~positive]).mean())
    return out


def test_it_measures_what_the_device_runtime_gives(colour_models, tmp_path, capsys):
    data_root, models = tmp_path / "data", tmp_path / "models"
    folder = data_root / "colours"
    folder.mkdir(parents=True)
    models.mkdir()
    rows = _tiny_dataset(folder)
    # "colour-int8" names its dataset and is the edge-cnn-large (so the default reference), with a
    # temperature and a "warm" group whose threshold the device flags at; "colour-float" names no
    # dataset and is found by the name-prefix mapping.
    _with_metadata(colour_models["uint8"], models / "colour-int8.tflite", dataset="colours", name="edge-cnn-large",
                   temperature=1.7, groups={"warm": ["red", "green"]},
                   operating_point={"group": "warm", "threshold": 0.6})  # fmt: skip
    _with_metadata(colour_models["float32"], models / "colour-float.tflite", dataset="", name="colour-test")
    for name in ("colour-int8", "colour-float"):
        with open(models / f"{name}.split.csv", "w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, ["key", "label", "split", "extra"])
            writer.writeheader()
            writer.writerows([r | {"extra": "ignored"} for r in rows])
    output = tmp_path / "out" / "table.json"
    script = _script()
    script.DATASET_FOLDERS["colour-float"] = "colours"
    try:
        code = script.main([str(data_root), "--models-dir", str(models), "--output", str(output), "--warmup", "2", "--rounds", "9"])
    finally:
        del script.DATASET_FOLDERS["colour-float"]
    assert code == 0
    data = json.loads(output.read_text(encoding="utf-8"))
    assert capsys.readouterr().out.strip() == script.markdown(data)
    by_name = {m["name"]: m for m in data["models"]}
    assert set(by_name) == {"colour-int8", "colour-float"}
    for name, model in by_name.items():
        path = models / f"{name}.tflite"
        assert model["file_size_bytes"] == path.stat().st_size
        assert model["input_size"] == [16, 16]
        for split in ("val", "test"):
            measured, expected = model["splits"][split], _device_figures(path, folder, rows, split)
            assert measured["images"] == expected["images"] == sum(r["split"] == split for r in rows)
            assert measured["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-12)
            assert measured["balanced_accuracy"] == pytest.approx(expected["balanced_accuracy"], abs=1e-12)
            assert 0.0 < measured["accuracy"] < 1.0
            assert 0.0 <= measured["ece"] <= 1.0 and 0.0 <= measured["macro_auc"] <= 1.0
            if name == "colour-int8":
                point = measured["operating_point"]
                assert point["sensitivity"] == pytest.approx(expected["sensitivity"])
                assert point["specificity"] == pytest.approx(expected["specificity"])
            else:
                assert "operating_point" not in measured
        assert model["invoke"]["p50_ms"] > 0
    assert by_name["colour-int8"]["architecture"] == "edge-cnn-large"
    assert by_name["colour-int8"]["temperature"] == 1.7
    assert data["invoke"]["reference"] == "colour-int8" and data["invoke"]["rounds"] == 9
    assert by_name["colour-int8"]["invoke"]["vs_reference"] == 1.0
    assert by_name["colour-float"]["invoke"]["vs_reference"] == pytest.approx(
        by_name["colour-float"]["invoke"]["p50_ms"] / by_name["colour-int8"]["invoke"]["p50_ms"])
    assert data["machine"]["cores"] == os.cpu_count()
    assert [p.name for p in output.parent.iterdir()] == ["table.json"]  # no temporary file left


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_a_missing_data_folder_is_one_line_and_exit_2(tmp_path):
    output = tmp_path / "out.json"
    done = _run(str(tmp_path / "no-data"), "--output", str(output))
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "no such data folder" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not done.stdout and not output.exists()


def test_a_missing_split_file_is_one_line_and_exit_2(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(ROOT / "src" / "edgecls" / "models" / "all-blood.tflite", models / "all-blood.tflite")
    (tmp_path / "blood").mkdir()
    done = _run(str(tmp_path), "--models-dir", str(models), "--output", str(tmp_path / "out.json"))
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "all-blood.split.csv: no split file" in done.stderr, done.stderr

"""The README's Python blocks run, so they cannot rot (issue 13).

Every ```python block of README.md is one test case. They run in README order in one shared
namespace, as the cells of a notebook do (a later block may use `model` or `data` from an earlier
one), with the working directory set to a temporary folder that holds what the blocks name:

| README name           | what this module puts there                                                |
|-----------------------|----------------------------------------------------------------------------|
| `"HAM10000/"`         | HAM10000 as downloaded: HAM10000_metadata.csv and HAM10000_images_part_1/, |
|                       | 3 dx classes of 16 generated 40x40 JPEGs, two images per lesion            |
| `"smears/"`           | one folder per class, 3 classes of 16 generated PNGs                        |
| `"lesion.jpg"`        | a generated 600x450 JPEG                                                    |
| `"photos/"`           | 4 generated 600x450 JPEGs                                                   |
| `"model_int8.tflite"` | a copy of the built-in `ham10000` model (for the MediaPipe block)           |

SUBSTITUTIONS (README text -> the text that runs) make training and conversion take seconds
instead of hours; every one must still be found in the README, so a README edit that drops one
fails here rather than silently running the slow version. A block that imports mediapipe is
skipped, with the reason shown, where mediapipe is not installed.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"
BUILTIN_HAM10000 = Path(__file__).resolve().parents[1] / "src" / "edgecls" / "models" / "ham10000.tflite"

# README text -> what runs instead (small model, 32 px, 1 epoch; QAT of 1 epoch, PTQ for the second model).
SUBSTITUTIONS = {
    'edgecls.TrainOptions(model="edge-cnn", epochs=30)':
        'edgecls.TrainOptions(model="edge-cnn-small", epochs=1, image_size=32, batch_size=16, augment="none", tensorboard=False)',
    'modes=["float32", "qat"])': 'modes=["float32", "qat"], qat_epochs=1, calibration_size=32, progress=False)',
    'output="smears_convert")': 'output="smears_convert", modes=["float32", "ptq-int8"], calibration_size=32, progress=False)',
}  # fmt: skip

COLOURS = {"bkl": (170, 120, 90), "mel": (60, 40, 40), "nv": (200, 150, 150)}


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, code) of every ```python block, in order."""
    blocks = []
    for match in re.finditer(r"^```python[ \t]*\n(.*?)^```[ \t]*$", text, re.MULTILINE | re.DOTALL):
        blocks.append((text.count("\n", 0, match.start()) + 1, match.group(1)))
    return blocks


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def _noisy(colour, size, rng) -> np.ndarray:
    return np.clip(np.array(colour) + rng.normal(0, 30, (*size, 3)), 0, 255).astype(np.uint8)


def make_workspace(root: Path) -> None:
    rng = np.random.default_rng(0)
    ham, rows = root / "HAM10000", []
    (ham / "HAM10000_images_part_1").mkdir(parents=True)
    for dx, colour in COLOURS.items():
        for i in range(16):
            image_id = f"ISIC_{dx}{i:03d}"
            Image.fromarray(_noisy(colour, (40, 40), rng)).save(ham / "HAM10000_images_part_1" / f"{image_id}.jpg", quality=95)
            rows.append({"lesion_id": f"HAM_{dx}{i // 2:03d}", "image_id": image_id, "dx": dx, "dx_type": "histo",
                         "age": 50, "sex": "female", "localization": "back"})  # fmt: skip
    pd.DataFrame(rows).to_csv(ham / "HAM10000_metadata.csv", index=False)
    for name, colour in zip(("blast", "lymphocyte", "neutrophil"), COLOURS.values()):
        (root / "smears" / name).mkdir(parents=True)
        for i in range(16):
            Image.fromarray(_noisy(colour, (40, 40), rng)).save(root / "smears" / name / f"{i:03d}.png")
    Image.fromarray(_noisy(COLOURS["mel"], (450, 600), rng)).save(root / "lesion.jpg")
    (root / "photos").mkdir()
    for i in range(4):
        Image.fromarray(_noisy(list(COLOURS.values())[i % 3], (450, 600), rng)).save(root / "photos" / f"{i}.jpg")
    shutil.copy(BUILTIN_HAM10000, root / "model_int8.tflite")


@pytest.fixture(scope="module")
def notebook(tmp_path_factory):
    """The shared namespace of the blocks and their working folder; the edgecls logger is put back
    as it was afterwards (a block calls enable_logging)."""
    root = tmp_path_factory.mktemp("readme")
    make_workspace(root)
    logger = logging.getLogger("edgecls")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield {"__name__": "__readme__"}, root
    for handler in [h for h in logger.handlers if h not in handlers]:
        logger.removeHandler(handler)
    logger.setLevel(level)
    logger.propagate = propagate


def test_the_workflow_opens_with_a_python_example():
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## The real workflow") :]
    assert section.index("```python") < section.index("```bash"), "the workflow should open with the Python API"
    first = section[section.index("```python") :]
    for name in ("edgecls.load_dataset(", "edgecls.train_classifier(", "edgecls.convert_classifier(", "edgecls.Classifier("):
        assert name in first[: first.index("\n```\n")], name


def test_every_substitution_still_matches_the_readme():
    code = "".join(block for _, block in BLOCKS)
    for old in SUBSTITUTIONS:
        assert old in code, f"README no longer contains {old!r}: update SUBSTITUTIONS in {__file__}"


@pytest.mark.parametrize("line, code", BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_python_block(line, code, notebook, monkeypatch):
    namespace, root = notebook
    if re.search(r"^\s*(import|from)\s+mediapipe\b", code, re.MULTILINE):
        pytest.importorskip("mediapipe", reason="this README block needs mediapipe (pip install 'mediapipe>=1.2.3,<1.3')")
    for old, new in SUBSTITUTIONS.items():
        code = code.replace(old, new)
    monkeypatch.chdir(root)
    exec(compile(code, f"{README}:{line}", "exec"), namespace)  # noqa: S102 - the README's own code


def test_the_speed_tables_are_what_the_kept_benchmark_run_prints():
    """The README's speed tables are `scripts/readme_tables.py speed docs/benchmarks-readme.json`,
    character for character: a figure typed by hand, or a table left from another run, fails."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    tables = subprocess.run([sys.executable, str(root / "scripts" / "readme_tables.py"), "speed", str(root / "docs" / "benchmarks-readme.json")],
                            capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert tables.count("\n") > 20
    assert tables in (root / "README.md").read_text(encoding="utf-8")

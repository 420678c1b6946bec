"""The documentation's Python blocks run, so they cannot rot.

Every ```python block of README.md and of every page under docs/ is one test case. The blocks of
one page run in page order in one namespace, as the cells of a notebook do (a later block may use
`model` or `data` from an earlier one); each page has its own namespace, so a page never depends on
another. They run with the working directory set to one temporary folder that holds what the
blocks name:

| name in the blocks    | what this module puts there                                                |
|-----------------------|----------------------------------------------------------------------------|
| `"HAM10000/"`         | HAM10000 as downloaded: HAM10000_metadata.csv and HAM10000_images_part_1/, |
|                       | 3 dx classes of 16 generated 40x40 JPEGs, two images per lesion            |
| `"smears/"`           | one folder per class, 3 classes of 16 generated PNGs                        |
| `"lesion.jpg"`        | a generated 600x450 JPEG                                                    |
| `"photos/"`           | 4 generated 600x450 JPEGs                                                   |
| `"model_int8.tflite"` | a copy of the built-in `ham10000` model (for the MediaPipe block)           |

SUBSTITUTIONS (page text -> the text that runs) make training and conversion take seconds instead
of hours; every one must still be found in some block, so an edit that drops one fails here rather
than silently running the slow version. A block that imports mediapipe is skipped, with the reason
shown, where mediapipe is not installed.
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

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
SPEED_PAGE = ROOT / "docs" / "guides" / "speed.md"
BUILTIN_HAM10000 = ROOT / "src" / "edgecls" / "models" / "ham10000.tflite"

# Page text -> what runs instead (small model, 32 px, 1 epoch; QAT of 1 epoch; PTQ and 2 epochs for
# the Keras 3 model of the bring-your-own-model guide).
SUBSTITUTIONS = {
    'edgecls.TrainOptions(model="edge-cnn", epochs=30)':
        'edgecls.TrainOptions(model="edge-cnn-small", epochs=1, image_size=32, batch_size=16, augment="none", tensorboard=False)',
    'modes=["float32", "qat"])': 'modes=["float32", "qat"], qat_epochs=1, calibration_size=32, progress=False)',
    'output="smears_convert")': 'output="smears_convert", modes=["float32", "ptq-int8"], calibration_size=32, progress=False)',
    'epochs=20, verbose=0)': 'epochs=2, verbose=0)',
}  # fmt: skip

COLOURS = {"bkl": (170, 120, 90), "mel": (60, 40, 40), "nv": (200, 150, 150)}


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, code) of every ```python block, in order."""
    blocks = []
    for match in re.finditer(r"^```python[ \t]*\n(.*?)^```[ \t]*$", text, re.MULTILINE | re.DOTALL):
        blocks.append((text.count("\n", 0, match.start()) + 1, match.group(1)))
    return blocks


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


# (page, line, code) of every block, README first, then docs/ in path order.
BLOCKS = [(_name(page), line, code) for page in PAGES for line, code in python_blocks(page.read_text(encoding="utf-8"))]


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
    """One namespace per page (created on its first block) and the blocks' working folder; the
    edgecls logger is put back as it was afterwards (a block calls enable_logging)."""
    root = tmp_path_factory.mktemp("readme")
    make_workspace(root)
    logger = logging.getLogger("edgecls")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield {}, root
    for handler in [h for h in logger.handlers if h not in handlers]:
        logger.removeHandler(handler)
    logger.setLevel(level)
    logger.propagate = propagate


def test_the_workflow_opens_with_a_python_example():
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## The workflow") :]
    assert section.index("```python") < section.index("```bash"), "the workflow should open with the Python API"
    first = section[section.index("```python") :]
    for name in ("edgecls.load_dataset(", "edgecls.train_classifier(", "edgecls.convert_classifier(", "edgecls.Classifier("):
        assert name in first[: first.index("\n```\n")], name


def test_the_guides_have_python_blocks():
    pages = {page for page, _, _ in BLOCKS}
    assert "README.md" in pages and any(page.startswith("docs/guides/") for page in pages), pages


def test_every_substitution_still_matches_a_block():
    code = "".join(block for _, _, block in BLOCKS)
    for old in SUBSTITUTIONS:
        assert old in code, f"no page contains {old!r} any more: update SUBSTITUTIONS in {__file__}"


@pytest.mark.parametrize("page, line, code", BLOCKS, ids=[f"{page}:{line}" for page, line, _ in BLOCKS])
def test_python_block(page, line, code, notebook, monkeypatch):
    namespaces, root = notebook
    namespace = namespaces.setdefault(page, {"__name__": "__docs__"})
    if re.search(r"^\s*(import|from)\s+mediapipe\b", code, re.MULTILINE):
        pytest.importorskip("mediapipe", reason=f"this block of {page} needs mediapipe (pip install 'mediapipe>=1.2.3,<1.3')")
    for old, new in SUBSTITUTIONS.items():
        code = code.replace(old, new)
    monkeypatch.chdir(root)
    exec(compile(code, f"{ROOT / page}:{line}", "exec"), namespace)  # noqa: S102 - the documentation's own code


def _readme_tables():
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "scripts" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_speed_tables_are_what_the_kept_benchmark_runs_print():
    """Each machine's tables in the speed guide are `scripts/readme_tables.py speed` of the
    benchmark JSON its marker names, character for character: a figure typed by hand, or a table
    left from another run, fails. Every kept docs/benchmarks-*.json has its block."""
    import subprocess
    import sys

    tables = _readme_tables()
    text = SPEED_PAGE.read_text(encoding="utf-8")
    blocks = tables.SPEED_BLOCK.findall(text)
    named = {json_path for _, json_path, _, _ in blocks}
    kept = {path.relative_to(ROOT).as_posix() for path in (ROOT / "docs").glob("benchmarks-*.json")}
    assert kept and named == kept, f"speed guide blocks {sorted(named)} != kept benchmark JSONs {sorted(kept)}"
    for _, json_path, body, _ in blocks:
        printed = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_tables.py"), "speed", str(ROOT / json_path)],
                                 capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        assert printed.count("\n") > 20
        assert body.strip() == printed, f"the speed guide's tables for {json_path} are not what readme_tables.py prints: run " \
                                        "python scripts/readme_tables.py speed-page docs/guides/speed.md"  # fmt: skip
    assert tables.speed_page(text) == text


def test_the_speed_guide_names_the_int8_instructions_of_each_machine():
    tables = _readme_tables()
    for _, json_path, body, _ in tables.SPEED_BLOCK.findall(SPEED_PAGE.read_text(encoding="utf-8")):
        assert "int8 dot-product instructions: " in body, json_path


def test_readme_tables_names_a_cpu_without_int8_dot_product(tmp_path):
    """A machine whose CPU has AVX2 but no VNNI is said to have no int8 dot-product instructions."""
    import json

    tables = _readme_tables()
    data = json.loads((ROOT / "docs" / "benchmarks-xeon-vnni.json").read_text(encoding="utf-8"))
    data["machine_info"]["cpu"]["flags"] = ["avx", "avx2", "fma", "sse4_2"]
    path = tmp_path / "avx2.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert "int8 dot-product instructions: none (AVX2 only)." in tables.speed(path)
    assert "int8 dot-product instructions: AVX-512 VNNI" in tables.speed(ROOT / "docs" / "benchmarks-xeon-vnni.json")


def test_a_new_machines_json_gets_its_own_section(tmp_path):
    """`readme_tables.py speed-page` adds a heading and a block for a kept JSON that has none, once,
    and leaves the blocks it has as they are."""
    import json

    tables = _readme_tables()
    (tmp_path / "docs").mkdir()
    xeon = tmp_path / "docs" / "benchmarks-xeon-vnni.json"
    shutil.copy(ROOT / "docs" / "benchmarks-xeon-vnni.json", xeon)
    data = json.loads(xeon.read_text(encoding="utf-8"))
    data["machine_info"]["cpu"] |= {"flags": ["avx", "avx2"], "brand_raw": "AMD EPYC"}
    new = tmp_path / "docs" / "benchmarks-epyc-avx2.json"
    new.write_text(json.dumps(data), encoding="utf-8")
    text = SPEED_PAGE.read_text(encoding="utf-8")
    page = tables.speed_page(text, [xeon, new], root=tmp_path)
    assert page.count("### 2-core AMD EPYC (AVX2 only)") == 1
    assert "<!-- speed-tables: docs/benchmarks-epyc-avx2.json -->" in page
    assert "int8 dot-product instructions: none (AVX2 only)." in page
    assert page.index("AMD EPYC") < page.index(tables.NEW_MACHINES)
    assert tables.speed_page(page, [xeon, new], root=tmp_path) == page
    assert page.replace(page[page.index("### 2-core AMD EPYC") : page.index(tables.NEW_MACHINES)], "") == text


def test_the_builtin_models_table_is_what_the_kept_measurement_prints():
    """The side-by-side table of the built-in models (README, results page) is the render of
    docs/builtin-models.json (`scripts/builtin_models_table.py`), character for character, and
    that JSON measured exactly the models the package ships."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("builtin_models_table", ROOT / "scripts" / "builtin_models_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    kept = json.loads((ROOT / "docs" / "builtin-models.json").read_text(encoding="utf-8"))
    shipped = {path.stem for path in (ROOT / "src" / "edgecls" / "models").glob("*.tflite")}
    assert {model["name"] for model in kept["models"]} == shipped, "rerun: python scripts/builtin_models_table.py --update README.md"
    for page in (README, ROOT / "docs" / "results.md"):
        text = page.read_text(encoding="utf-8")
        assert "<!-- builtin-models-table -->" in text, page
        assert table.update_page(text, table.markdown(kept)) == text, \
            f"{page.name}'s built-in models table is not the render of docs/builtin-models.json: " \
            f"python scripts/builtin_models_table.py --markdown-from docs/builtin-models.json --update {page.relative_to(ROOT)}"  # fmt: skip

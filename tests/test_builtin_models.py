"""The int8 models shipped in the package: listed, self-describing, and still accurate on real data."""

from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest
from conftest import REPO_ROOT, shared_dataset
from typer.testing import CliRunner

from edgecls.cli import app
from edgecls.edge_runtime import TFLiteClassifier, load_image
from edgecls.edge_runtime.builtin import builtin_models, resolve_model

runner = CliRunner()
class Shipped(NamedTuple):
    dataset: str  # folder in ../shared/data
    labels: list[str]
    floor: float  # accuracy floor on 300 validation images
    max_bytes: int  # the file's size bound
    pretrained: bool  # started from ImageNet weights, whose licence must travel with the file


HAM10000 = ("ham10000", ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"])
BLOOD = ("blood", ["Benign", "[Malignant] Pre-B", "[Malignant] Pro-B", "[Malignant] early Pre-B"])
SHIPPED = {
    "ham10000": Shipped(*HAM10000, 0.74, 5 * 1024 * 1024, True),
    "ham10000-small": Shipped(*HAM10000, 0.70, 500 * 1024, False),
    "all-blood": Shipped(*BLOOD, 0.95, 5 * 1024 * 1024, True),
    "all-blood-small": Shipped(*BLOOD, 0.90, 500 * 1024, False),
}


def _shipped(name: str):
    if name not in builtin_models():
        pytest.skip(f"built-in model {name} is not in this checkout (build: scripts/build_builtin_models.sh)")
    return resolve_model(name)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_describes_itself(name):
    path = _shipped(name)
    clf = TFLiteClassifier(path)
    meta = clf.metadata
    assert clf.labels == SHIPPED[name].labels
    # uint8 in and out: what MediaPipe Tasks and Android load (they refuse int8), input = the pixel.
    assert clf.input_details["dtype"] == np.uint8 and clf.output_details["dtype"] == np.uint8
    assert clf.input_details["quantization"] == pytest.approx((1 / 255, 0)) and tuple(meta.input_size) == (94, 94)
    standard = clf.standard_metadata
    assert standard.labels == SHIPPED[name].labels and standard.license == meta.provenance["licence"]
    assert "not a medical device" in standard.description and standard.mean == meta.mean and standard.std == meta.std
    assert "not a medical device" in meta.provenance["intended_use"]
    assert meta.provenance["licence"] and meta.provenance["data_source"]
    assert path.stat().st_size <= SHIPPED[name].max_bytes
    assert (path.parent / f"{name}.md").is_file(), "every built-in model has a model card"
    card = (path.parent / f"{name}.md").read_text(encoding="utf-8")
    if SHIPPED[name].pretrained:  # the ImageNet weights' licence and attribution travel with the file and its card
        assert "Apache-2.0" in meta.provenance["pretrained_weights_license"]
        assert "EfficientNet-Lite0" in meta.provenance["pretrained_weights"]
        initial = next(line for line in card.splitlines() if line.startswith("- Initial weights:"))
        assert "EfficientNet-Lite0 ImageNet" in initial and "Apache-2.0" in initial and "ML Illustrated" in initial
    else:
        assert "pretrained_weights" not in meta.provenance


def test_models_command_lists_them():
    if not builtin_models():
        pytest.skip("no built-in models in this checkout")
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0
    for name in builtin_models():
        assert name in result.stdout


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_is_accurate_on_its_validation_split(name):
    path = _shipped(name)
    folder, labels, floor = SHIPPED[name][:3]
    data = shared_dataset(folder)
    split = pd.read_csv(REPO_ROOT / "src" / "edgecls" / "models" / f"{name}.split.csv")
    val = split[split["split"] == "val"].sample(n=300, random_state=0, replace=False)
    clf = TFLiteClassifier(path)
    buffer = clf.new_input_buffer()
    hits = [clf.predict(load_image(data / key, clf.input_size), buffer=buffer).label == label for key, label in zip(val["key"], val["label"])]
    assert np.mean(hits) >= floor, f"{name}: accuracy {np.mean(hits):.3f} on 300 validation images"


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_classify_by_builtin_name(name, tmp_path):
    _shipped(name)
    folder, labels = SHIPPED[name][:2]
    data = shared_dataset(folder)
    image = next(p for p in sorted(data.rglob("*.jpg")))
    result = runner.invoke(app, ["classify", "--model", name, str(image), "--format", "json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)[0]
    assert record["label"] in labels and 0 < record["probability"] <= 1

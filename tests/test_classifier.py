"""The TFLite classifier on models whose answers are known from their weights."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from tiny_models import COLOUR_LABELS, solid_image

from edgecls.edge_runtime import TFLiteClassifier, load_image
from edgecls.errors import EdgeclsError

COLOURS = {"red": (230, 20, 20), "green": (20, 230, 20), "blue": (20, 20, 230)}


@pytest.mark.parametrize("mode", ["float32", "int8", "uint8"])
def test_known_answers_in_every_tensor_type(colour_models, mode):
    clf = TFLiteClassifier(colour_models[mode])
    assert clf.labels == COLOUR_LABELS
    for name, rgb in COLOURS.items():
        image = np.asarray(Image.fromarray(solid_image(rgb)).resize((16, 16)))
        pred = clf.predict(image, top_k=3)
        assert pred.label == name
        assert pred.probability > 0.9
        assert [label for label, _ in pred.top_k][0] == name
        assert abs(float(pred.probabilities.sum()) - 1.0) < 0.02


def test_quantized_and_float_paths_agree(colour_models):
    rng = np.random.default_rng(7)
    clfs = {m: TFLiteClassifier(colour_models[m]) for m in ("float32", "int8", "uint8")}
    for _ in range(20):
        image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        image[..., rng.integers(0, 3)] //= 4  # make one channel clearly lower so the answer is stable
        probs = {m: clf.predict(image).probabilities for m, clf in clfs.items()}
        assert np.argmax(probs["int8"]) == np.argmax(probs["float32"]) == np.argmax(probs["uint8"])
        assert np.max(np.abs(probs["int8"] - probs["float32"])) < 0.05


def test_int8_input_is_exactly_pixel_minus_128(colour_models):
    clf = TFLiteClassifier(colour_models["int8"])
    image = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    model_input = clf.to_input(image)
    assert model_input.dtype == np.int8
    np.testing.assert_array_equal(model_input[0].astype(int), image.astype(int) - 128)


def test_model_without_metadata_runs_with_index_labels_and_a_warning(colour_models):
    with pytest.warns(UserWarning, match="no metadata"):
        clf = TFLiteClassifier(colour_models["bare"])
    assert clf.labels == ["0", "1", "2"]
    assert clf.predict(np.full((16, 16, 3), (250, 5, 5), np.uint8)).label == "0"


def test_wrong_image_shape_is_rejected(colour_models):
    clf = TFLiteClassifier(colour_models["float32"])
    with pytest.raises(EdgeclsError, match="image must be uint8"):
        clf.predict(np.zeros((8, 8, 3), np.uint8))


def test_describe_reports_tensors_and_metadata(colour_models):
    info = TFLiteClassifier(colour_models["int8"]).describe()
    assert info["input"]["dtype"] == "int8" and info["input"]["shape"] == [1, 16, 16, 3]
    assert info["input"]["quantization"]["zero_point"] == -128
    assert info["metadata"]["labels"] == COLOUR_LABELS
    assert info["file_size_bytes"] == colour_models["int8"].stat().st_size


@pytest.mark.parametrize(
    "mode,expected",
    [("RGB", (200, 0, 0)), ("RGBA", (200, 0, 0)), ("L", (60, 60, 60)), ("CMYK", None), ("P", (200, 0, 0))],
)
def test_load_image_accepts_any_mode(tmp_path, mode, expected):
    rgb = Image.fromarray(solid_image((200, 0, 0), size=(50, 40)))
    img = rgb.convert(mode)
    path = tmp_path / ("x.jpg" if mode in ("RGB", "L", "CMYK") else "x.png")
    img.save(path)
    out = load_image(path, (10, 12))
    assert out.shape == (10, 12, 3) and out.dtype == np.uint8
    if expected is not None:
        assert np.allclose(out.mean(axis=(0, 1)), expected, atol=6)


def test_load_image_rescales_16_bit(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((20, 20), 65535 // 2, dtype=np.uint16)).save(path)
    out = load_image(path, (8, 8))
    assert abs(int(out.mean()) - 127) <= 1


def test_load_image_applies_exif_orientation(tmp_path):
    # Left half red, right half blue; EXIF orientation 3 (rotate 180) must swap them.
    array = np.zeros((40, 60, 3), np.uint8)
    array[:, :30] = (255, 0, 0)
    array[:, 30:] = (0, 0, 255)
    img = Image.fromarray(array)
    exif = img.getexif()
    exif[0x0112] = 3
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif, quality=95)
    out = load_image(path, (20, 20))
    assert out[:, :5, 2].mean() > 200 and out[:, -5:, 0].mean() > 200

"""Property-based tests (hypothesis) of everything that parses untrusted bytes on the device.

- `load_image` on arbitrary bytes and on mutated valid images: a uint8 array of exactly the
  requested shape, or `ImageError`; never another exception.
- `read_metadata` on arbitrary and mutated model bytes: metadata, None, or `EdgeclsError`.
- `TFLiteClassifier(bytes)` (and one prediction) on mutated models: a working classifier or
  `EdgeclsError`. The interpreter is native code and a damaged model can segfault it (an
  out-of-range zero point, a zero scale, an op input of -1, no subgraph; see
  edge_runtime/interpreter.py), so these examples run in a child process: a crash fails the
  test with the offending file kept for inspection instead of killing pytest.

Bounded: about 150 examples each, no example database, a few seconds in all. For a longer
hunt, scale every example count: EDGECLS_FUZZ_SCALE=50 pytest tests/test_fuzz.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import malformed as M
from edgecls.edge_runtime.metadata import ModelMetadata, read_metadata
from edgecls.edge_runtime.preprocess import ImageError, load_image, prepare_image
from edgecls.errors import EdgeclsError

SCALE = max(1, int(os.environ.get("EDGECLS_FUZZ_SCALE", "1")))
FUZZ = settings(
    max_examples=150 * SCALE,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
MODEL_EXAMPLES = 150 * SCALE


def seed_images() -> dict[str, bytes]:
    """Small valid files of every format and odd mode the loader handles."""
    noisy = M.noisy(M.RED, (24, 16))
    return {
        "jpeg": M.encode(noisy, "JPEG", quality=80),
        "progressive": M.encode(noisy, "JPEG", progressive=True),
        "png": M.encode(noisy, "PNG"),
        "gif": M.animated_gif(),
        "bmp": M.encode(M.solid(M.GREEN, (6, 5)), "BMP"),
        "tiff": M.encode(M.solid(M.BLUE, (6, 5)), "TIFF"),
        "webp": M.encode(noisy, "WEBP"),
        "ppm": M.encode(M.solid(M.RED, (6, 5)), "PPM"),
        "exif": M.exif_rotated_jpeg(),
        "cmyk": M.cmyk_jpeg(),
        "palette": M.palette_png(True),
        "i16": M.sixteen_bit_png(1234),
        "float": M.float_tiff(0.5),
        "la": M.encode(M.Image.new("LA", (6, 5), (90, 200)), "PNG"),
    }


SEEDS = seed_images()
MAGIC = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"RIFF\x00\x00\x00\x00WEBP", b"P6\n", b""]

sizes = st.tuples(st.integers(1, 40), st.integers(1, 40))
channels = st.sampled_from([1, 3])


EDITS = ("byte", "flip", "u16", "u32", "cut", "insert", "delete")
# Flatbuffers address everything by offset: an insertion or deletion just breaks the structure
# (which the interpreter's verifier catches), in-place edits reach the values behind it.
IN_PLACE = ("byte", "flip", "u16", "u32", "u32", "u32")


@st.composite
def mutated(draw, seeds: dict[str, bytes], edits=EDITS, keep: int = 0) -> bytes:
    """A valid file with a few byte-level edits: overwrite, bit flip, 16/32-bit field, cut, insert,
    delete; the first `keep` bytes are left alone (a TFLite file's root offset and identifier)."""
    data = bytearray(seeds[draw(st.sampled_from(sorted(seeds)))])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(edits))
        at = draw(st.integers(min(keep, len(data) - 1), max(0, len(data) - 1)))
        if kind in ("u16", "u32"):
            at &= ~(1 if kind == "u16" else 3)  # flatbuffer fields are aligned
        if kind == "byte" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind in ("u16", "u32"):
            width = 2 if kind == "u16" else 4
            value = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]))
            data[at : at + width] = (value & ((1 << 8 * width) - 1)).to_bytes(width, draw(st.sampled_from(["little", "big"])))
        elif kind == "cut":
            del data[max(1, at) :]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
    return bytes(data)


def _check_load(path: Path, data: bytes, size, chans) -> None:
    path.write_bytes(data)
    try:
        image = load_image(path, size, chans)
    except ImageError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)
        return
    assert isinstance(image, np.ndarray)
    assert image.dtype == np.uint8 and image.shape == (*size, chans)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "input.img"


# -- images -------------------------------------------------------------------------------
@FUZZ
@given(prefix=st.sampled_from(MAGIC), body=st.binary(max_size=2048), size=sizes, chans=channels)
def test_load_image_on_arbitrary_bytes(scratch, prefix, body, size, chans):
    _check_load(scratch, prefix + body, size, chans)


@settings(FUZZ, max_examples=250 * SCALE)
@given(data=mutated(SEEDS), size=sizes, chans=channels)
def test_load_image_on_mutated_images(scratch, data, size, chans):
    _check_load(scratch, data, size, chans)


@FUZZ
@given(
    dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64, np.bool_]),
    shape=st.tuples(st.integers(1, 12), st.integers(1, 12), st.sampled_from([None, 1, 3, 4])),
    size=sizes,
    chans=channels,
    fill=st.sampled_from(["random", "nan", "inf", "huge", "negative"]),
)
def test_prepare_image_on_arrays(dtype, shape, size, chans, fill):
    """Arrays of any dtype and channel count (what dataset loaders hand over) become uint8 images."""
    h, w, c = shape
    full = (h, w) if c is None else (h, w, c)
    array = np.random.default_rng(h * 100 + w).random(full) * 300
    array.flat[0] = {"random": 0.5, "nan": np.nan, "inf": np.inf, "huge": 1e300, "negative": -5.0}[fill]
    with np.errstate(all="ignore"):
        array = np.nan_to_num(array, nan=0.0) if not np.issubdtype(dtype, np.floating) else array
        array = array.astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy RuntimeWarning leaks to the user either
        image = prepare_image(array, size, chans)
    assert image.dtype == np.uint8 and image.shape == (*size, chans)


@FUZZ
@given(shape=st.tuples(st.integers(1, 12), st.integers(1, 12)), chans=channels, seed=st.integers(0, 2**16))
def test_prepare_image_keeps_uint8_pixels_at_their_own_size(shape, chans, seed):
    """No resize, no conversion: the pixels come back untouched, whatever the geometry (1xN included)."""
    full = (*shape, chans)
    array = np.random.default_rng(seed).integers(0, 256, full, dtype=np.uint8)
    assert np.array_equal(prepare_image(array, shape, chans), array)


# -- metadata -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_seeds(colour_models) -> dict[str, bytes]:
    return {mode: path.read_bytes() for mode, path in colour_models.items()}


@FUZZ
@given(data=st.binary(max_size=512), identifier=st.booleans())
def test_read_metadata_on_arbitrary_bytes(data, identifier):
    if identifier:
        data = data[:4].ljust(4, b"\0") + b"TFL3" + data[4:]
    _check_metadata(data)


def _check_metadata(data: bytes) -> None:
    try:
        meta = read_metadata(data)
    except EdgeclsError as exc:
        assert "\n" not in str(exc)
        return
    assert meta is None or isinstance(meta, ModelMetadata)


@settings(FUZZ, max_examples=250 * SCALE)
@given(data=st.data())
def test_read_metadata_on_mutated_models(model_seeds, data):
    _check_metadata(data.draw(mutated(model_seeds, IN_PLACE, keep=8)))


@FUZZ
@given(doc=st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
), fields=st.dictionaries(
    st.sampled_from(["labels", "input_size", "channels", "mean", "std", "output", "metrics", "provenance", "name"]),
    st.none() | st.integers(-2, 300) | st.floats() | st.text(max_size=3) | st.lists(st.integers(-1, 300) | st.floats() | st.text(max_size=2), max_size=4),
    max_size=9,
))
def test_metadata_json_is_validated(model_seeds, doc, fields):
    """Any JSON document in the metadata slot: a usable ModelMetadata or one clear EdgeclsError."""
    import json

    base = {"labels": ["r", "g", "b"], "input_size": [16, 16]}
    for payload in (doc, base | fields):
        model = M.embed_raw_metadata(model_seeds["bare"], json.dumps(payload, allow_nan=True).encode())
        try:
            meta = read_metadata(model)
        except EdgeclsError as exc:
            assert "\n" not in str(exc)
            continue
        assert isinstance(meta, ModelMetadata)
        assert len(meta.input_size) == 2 and min(meta.input_size) >= 1
        assert meta.channels in (1, 3) and 0 not in meta.std
        assert all(np.isfinite(meta.mean)) and all(np.isfinite(meta.std))
        assert meta.output in ("probabilities", "logits")


# -- whole models, in a child process ------------------------------------------------------------
def test_classifier_on_mutated_models_never_crashes(colour_models, tmp_path):
    """Runs this file as a script (see `_child` below) so a segfault cannot take pytest down."""
    current = tmp_path / "current.tflite"
    seeds = [str(colour_models[m]) for m in ("int8", "uint8", "float32", "bare")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(current), str(MODEL_EXAMPLES), *seeds],
        capture_output=True, text=True, timeout=300 * SCALE, env=env,
    )  # fmt: skip
    tail = (proc.stdout + proc.stderr)[-4000:]
    if proc.returncode < 0:
        kept = Path(tempfile.gettempdir()) / "edgecls-fuzz-crash.tflite"
        kept.write_bytes(current.read_bytes())
        pytest.fail(f"the interpreter crashed (signal {-proc.returncode}) on a mutated model, kept at {kept}\n{tail}")
    assert proc.returncode == 0, tail
    assert "examples ok" in proc.stdout, tail


def _child(current: str, examples: int, seed_paths: list[str]) -> None:
    """Hypothesis in a child process: each example is written to `current` first, so the parent
    can report the exact file when the native interpreter takes the process down."""
    seeds = {Path(p).stem: Path(p).read_bytes() for p in seed_paths}
    from edgecls.edge_runtime.classifier import TFLiteClassifier

    warnings.simplefilter("ignore")  # "no edgecls metadata" for the bare model
    counts = {"ok": 0, "refused": 0}

    @settings(FUZZ, max_examples=examples)
    @given(data=mutated(seeds, IN_PLACE, keep=8))
    def run(data):
        with open(current, "wb") as f:
            f.write(data)
        try:
            classifier = TFLiteClassifier(data, num_threads=1)
            image = np.full((*classifier.input_size, classifier.channels), 127, np.uint8)
            prediction = classifier.predict(image)
        except EdgeclsError as exc:
            assert "\n" not in str(exc), str(exc)
            counts["refused"] += 1
            return
        assert prediction.label in classifier.labels
        counts["ok"] += 1

    run()
    print(f"{examples} examples ok: {counts}")


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--child":
    _child(sys.argv[2], int(sys.argv[3]), sys.argv[4:])


# -- .keras files: evaluate and convert load whatever a user points them at ---------------------
KERAS_EXAMPLES = 40 * SCALE
LAYER_EDITS = st.one_of(
    st.sampled_from(["Lambda", "TFOpLambda", "__main__>Evil", "builtins.eval", "", "Dense", "Conv2D"]).map(lambda v: ("class_name", v)),
    st.tuples(st.sampled_from(["config", "module", "registered_name", "inbound_nodes"]),
              st.one_of(st.none(), st.integers(), st.text(max_size=8), st.lists(st.integers(), max_size=3))),  # fmt: skip
)


@pytest.fixture(scope="module")
def keras_zips(tmp_path_factory) -> dict[str, bytes]:
    """A plain model, and one with a Lambda layer (Python bytecode inside its config.json)."""
    from test_robustness import keras_colour_model
    from tiny_models import colour_keras_model

    folder = tmp_path_factory.mktemp("keras")
    colour_keras_model(8).save(folder / "plain.keras")
    keras_colour_model(with_lambda=True).save(folder / "lambda.keras")
    return {name: (folder / f"{name}.keras").read_bytes() for name in ("plain", "lambda")}


def _rezip(data: bytes, config: dict) -> bytes:
    import io
    import json
    import zipfile

    source, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            target.writestr(name, json.dumps(config) if name == "config.json" else source.read(name))
    return out.getvalue()


@st.composite
def mutated_keras(draw, seeds: dict[str, bytes]) -> bytes:
    """A saved model with its architecture JSON edited (layers renamed to Lambda or to unknown
    classes, fields replaced with junk), its bytes flipped, or both."""
    import io
    import json
    import zipfile

    data = seeds[draw(st.sampled_from(sorted(seeds)))]
    if draw(st.booleans()):
        config = json.loads(zipfile.ZipFile(io.BytesIO(data)).read("config.json"))
        layers = config["config"]["layers"]
        for _ in range(draw(st.integers(1, 3))):
            key, value = draw(LAYER_EDITS)
            layers[draw(st.integers(0, len(layers) - 1))][key] = value
        data = _rezip(data, config)
    if draw(st.booleans()):
        data = draw(mutated({"keras": data}, edits=("byte", "flip", "cut")))
    return data


def test_keras_loading_of_damaged_files_fails_cleanly_and_unpickles_nothing(keras_zips, tmp_path, monkeypatch):
    """`load_keras_model` on damaged or hostile `.keras` files: a model or one EdgeclsError
    line, never another exception, and never a call into pickle or into Keras' `func_load`,
    which unmarshals a Lambda's bytecode (safe mode refuses it before that)."""
    import pickle

    from tf_keras.src.utils import generic_utils

    from edgecls.core.runs import load_keras_model
    from edgecls.core.tf_env import import_tf

    import_tf()
    deserialised: list[str] = []

    def refuse(name):
        def call(*args, **kwargs):
            deserialised.append(name)
            raise RuntimeError(f"{name} called while loading an untrusted model")

        return call

    for module, name in ((pickle, "loads"), (pickle, "load"), (generic_utils, "func_load")):
        monkeypatch.setattr(module, name, refuse(f"{module.__name__}.{name}"))
    path = tmp_path / "model.keras"

    @given(data=mutated_keras(keras_zips))
    @settings(FUZZ, max_examples=KERAS_EXAMPLES)
    def check(data):
        path.write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                model = load_keras_model(path)
            except EdgeclsError as exc:
                assert "\n" not in str(exc) and str(exc).startswith(str(path))
            else:
                assert model.output_shape[-1] == 3
                assert not any(type(layer).__name__ == "Lambda" for layer in model.layers)
        assert not deserialised, deserialised

    check()


# Keras rebuilds a functional model by deferring each node until its inputs exist: a node whose
# input never comes makes tf_keras' load_model loop forever (a layer with no inbound nodes, or a
# missing node, hangs tf_keras 2.21), so each damage below must be refused before loading.
GRAPH_DAMAGE = {
    "no inbound nodes": lambda gap, dense: gap.update(inbound_nodes=[]),
    "junk inbound_nodes": lambda gap, dense: gap.update(inbound_nodes=None),
    "missing layer": lambda gap, dense: dense.update(inbound_nodes=[[["no_such_layer", 0, 0, {}]]]),
    "missing node": lambda gap, dense: dense.update(inbound_nodes=[[[gap["name"], 3, 0, {}]]]),
    "cycle": lambda gap, dense: gap.update(inbound_nodes=[[[dense["name"], 0, 0, {}]]]),
}


@pytest.mark.parametrize("damage", sorted(GRAPH_DAMAGE))
def test_a_layer_graph_keras_cannot_rebuild_is_refused_not_hung(keras_zips, tmp_path, damage):
    """Refused in one line before Keras sees it; loaded in a child process with a time limit, so
    a regression fails here instead of hanging the suite."""
    import io
    import json
    import subprocess
    import sys
    import zipfile

    config = json.loads(zipfile.ZipFile(io.BytesIO(keras_zips["plain"])).read("config.json"))
    _, gap, dense, _ = config["config"]["layers"]  # the colour model: Input, GAP, Dense, Softmax
    GRAPH_DAMAGE[damage](gap, dense)
    path = tmp_path / "damaged.keras"
    path.write_bytes(_rezip(keras_zips["plain"], config))
    code = (
        "import sys\nfrom edgecls.core.runs import load_keras_model\nfrom edgecls.errors import EdgeclsError\n"
        "try:\n    load_keras_model(sys.argv[1])\nexcept EdgeclsError as exc:\n    print(exc)\nelse:\n    print('loaded')"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=180)
    assert out.stdout.strip().startswith(f"{path}: cannot load Keras model (its layer graph is damaged: "), out.stdout + out.stderr[-500:]

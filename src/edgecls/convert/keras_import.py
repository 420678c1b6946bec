"""Bring your own model: the Keras models people have, made ready for `edgecls convert`.

    imported = load_user_model("m.keras", input_range=None)
    imported.model          # a tf_keras model (QAT works), or a float function (PTQ only)
    imported.normalization  # what the converted files take: (pixel - mean) / std

Accepted: a Keras 3 `.keras` (TensorFlow's default `tf.keras` since 2.16), a `tf_keras` /
Keras 2 `.keras`, a legacy HDF5 `.h5` from either, and a TensorFlow SavedModel folder
(`tf_keras` `model.save(dir)`, or Keras 3 `model.export(dir)`).

tensorflow-model-optimization works on `tf_keras` models only, so a Keras 3 model is rebuilt
layer by layer in `tf_keras` from its own config, its weights copied, and the rebuilt model's
outputs checked against the original's on sample images. A layer with no `tf_keras`
counterpart is named, and the original Keras 3 model is converted as it is, with calibrated
post-training int8 in place of QAT. A SavedModel without Keras metadata is a graph only: it
converts as a float function, also without QAT.

Input normalisation: a Rescaling or Normalization layer at the model's input means the model
itself takes raw pixels. Such leading layers are folded into the recorded normalisation (and
dropped from the model), so the int8 file's input quantization carries them and tfmot, which
cannot wrap them, never sees them. Otherwise `--input-range` says what the model takes, or
edgecls assumes pixel / 255 and says so.

Loading stays safe (`edgecls.core.model_safety`, docs/safety.md): every config and every
SavedModel op is checked against an allow-list before anything is deserialised, and Keras
loads `.keras` files in safe mode too. Custom layers load only from code the user passes
(`custom_objects`).
"""

from __future__ import annotations

import inspect
import json
import math
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgecls.core.keras_graph import check_layer_graph
from edgecls.core.model_safety import (
    MAX_MODEL_BYTES,
    bounded_call,
    check_keras_config,
    check_saved_model,
    load_custom_objects,
    read_h5_config,
    read_keras_archive,
)
from edgecls.core.tf_env import import_tf
from edgecls.edge_runtime.normalization import PIXEL_UNIT, InputNormalization, range_name
from edgecls.errors import EdgeclsError, first_line

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
PREPROCESSING_LAYERS = ("Rescaling", "Normalization")
MODEL_CLASSES = ("Functional", "Sequential", "Model")
# Keras preprocessing-augmentation layers are the identity at inference (RandomCrop is not: it
# centre-crops), so the rebuilt model leaves them out.
_AUGMENTATION = re.compile(r"^Random(?!Crop$)\w+$")
MAX_SAVED_MODEL_BYTES = MAX_MODEL_BYTES
VERIFY_IMAGES = 8
VERIFY_TOLERANCE = 1e-4  # max |difference| of outputs, relative to max(1, |output|)


class NoCounterpart(Exception):
    """A Keras 3 layer (or graph construct) that tf_keras cannot reproduce; the message names it."""


@dataclass
class ImportedModel:
    """A user's model, ready to convert."""

    model: Any  # a tf_keras model, or a FloatFunction (no Keras layers: no QAT)
    normalization: InputNormalization  # what `model` takes: (pixel - mean) / std
    name: str
    format: str = "in-memory model"
    range_source: str = "convention"  # "option" (--input-range), "detected", "assumed", "convention"
    outside: InputNormalization = PIXEL_UNIT  # what the original model's own input takes
    fold: tuple[np.ndarray, np.ndarray] | None = None  # affine (scale, offset) of the folded layers
    folded_layers: list[str] = field(default_factory=list)  # "Rescaling 'rescaling'"
    qat_unavailable: str | None = None  # why QAT falls back to post-training int8
    original: Any = None  # the Keras 3 model a rebuild came from, kept as the parity cross-check
    notes: list[str] = field(default_factory=list)

    def normalization_for(self, input_range: str) -> InputNormalization:
        """What `model` would take if the original model's input were `input_range`."""
        outside = InputNormalization.from_range(input_range)
        return outside.then_affine(*self.fold) if self.fold is not None else outside


class FloatFunction:
    """A float model known only as a function from images to class scores: a SavedModel
    signature, or a Keras 3 model that could not be rebuilt in tf_keras. It offers what the
    float conversion modes and the parity reference use (`inputs`, `outputs`, `__call__`,
    `predict`) and no layers, so tfmot cannot wrap it."""

    layers: list = []

    def __init__(self, function, input_shape, num_classes: int, name: str, keep: Any = None):
        tf, _ = import_tf()
        self._function = function
        self._keep = keep  # the SavedModel or Keras object whose variables the function reads
        self.name = name
        self.inputs = [tf.TensorSpec((None, *input_shape), tf.float32)]
        self.outputs = [tf.TensorSpec((None, num_classes), tf.float32)]

    @property
    def variables(self) -> list:
        return list(getattr(self._keep, "variables", []) or [])

    def __call__(self, x, training: bool = False):
        tf, _ = import_tf()
        if not tf.executing_eagerly():  # traced into a graph (conversion): nothing runs yet
            return self._function(x)
        return bounded_call(lambda: self._function(x), self.name)

    def predict(self, x, batch_size: int = 64, verbose: int = 0) -> np.ndarray:
        tf, _ = import_tf()

        def batch(i: int) -> np.ndarray:
            return np.asarray(self._function(tf.constant(x[i : i + batch_size], tf.float32)))

        # Each batch under a wall-clock limit: a graph built to spin must not hang a conversion.
        parts = [bounded_call(lambda i=i: batch(i), self.name) for i in range(0, len(x), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.outputs[0].shape[1]), np.float32)


# -- loading ------------------------------------------------------------------------------------
def load_user_model(path: str | Path, input_range: str | None = None, custom_objects=None) -> ImportedModel:
    """Load a `.keras`, `.h5` or SavedModel folder and make it ready to convert (see module doc).

    `input_range`: "0-1", "0-255" or "-1-1", what the model's input takes when it has no
    Rescaling/Normalization layer to tell (None: detect, else assume 0-1 with a warning).
    `custom_objects`: the code of the model's custom layers, a `.py` file (imported: it runs)
    or a mapping of name -> class; without it a model with custom layers is refused, naming them.
    Every problem is one EdgeclsError line."""
    path = Path(path)
    if not path.exists():
        raise EdgeclsError(f"{path}: no such run folder or model file")
    custom = load_custom_objects(custom_objects)
    try:
        if path.is_dir():
            model, description = _load_saved_model(path, custom)
        elif path.suffix == ".keras" and zipfile.is_zipfile(path):
            model, description = _load_keras_zip(path, custom)
        elif _is_hdf5(path):
            model, description = _load_h5(path, custom)
        else:
            raise EdgeclsError(f"{path}: not a Keras model file (expected a run folder, a .keras or .h5 file, or a SavedModel folder)")
    except MemoryError:
        raise EdgeclsError(f"{path}: cannot load the model (out of memory)") from None
    convention = _edgecls_run_convention(path)
    if isinstance(model, FloatFunction):
        return _import_function(model, path, description, input_range)
    return import_keras_model(model, input_range, description=description, label=str(path), convention=convention)


def _is_hdf5(path: Path) -> bool:
    try:
        with open(path, "rb") as file:
            return file.read(8) == HDF5_SIGNATURE
    except OSError as exc:
        raise EdgeclsError(f"{path}: cannot read model ({exc.strerror or exc})") from None


def _major(version: str | None) -> int | None:
    match = re.match(r"\s*(\d+)", str(version or ""))
    return int(match.group(1)) if match else None


def _load_keras_zip(path: Path, custom: dict):
    """A `.keras` zip: Keras 3 or tf_keras by its metadata.json, both checked, then in safe mode."""
    config, metadata = read_keras_archive(path)
    if not isinstance(config, dict):
        raise EdgeclsError(f"{path}: cannot load Keras model (no config.json: not a whole saved model)")
    check_keras_config(config, path, custom)
    version = metadata.get("keras_version") if isinstance(metadata, dict) else None
    keras3 = _major(version) == 3 if version else _looks_keras3(config)
    if not keras3:
        from edgecls.core.runs import load_keras_model

        return load_keras_model(path, custom), f"tf_keras .keras (Keras {version or '2'})"  # checks the layer graph too
    check_layer_graph(config, path)
    keras = _keras3()
    try:
        model = keras.saving.load_model(path, custom_objects=custom or None, compile=False, safe_mode=True)
    except Exception as exc:  # deserialisation, h5, zip errors: "not a usable model"
        raise EdgeclsError(f"{path}: cannot load Keras model ({first_line(exc)})") from None
    return model, f"Keras 3 .keras (Keras {version or keras.__version__})"


def _load_h5(path: Path, custom: dict):
    """A legacy HDF5 model. Keras has no safe mode for these: the config is checked first."""
    config, version = read_h5_config(path)
    if config is None:
        raise EdgeclsError(f"{path}: HDF5 file without a model architecture (weights only?); save the whole model with model.save()")
    check_keras_config(config, path, custom)
    check_layer_graph(config, path)
    keras3 = _major(version) == 3 if version else _looks_keras3(config)
    try:
        if keras3:
            model = _keras3().saving.load_model(path, custom_objects=custom or None, compile=False)
        else:
            _, tf_keras = import_tf()
            model = tf_keras.models.load_model(path, custom_objects=custom or None, compile=False)
    except Exception as exc:
        raise EdgeclsError(f"{path}: cannot load Keras model ({first_line(exc)})") from None
    return model, f"{'Keras 3' if keras3 else 'Keras 2 / tf_keras'} HDF5 .h5 (Keras {version or '?'})"


def _load_saved_model(path: Path, custom: dict):
    """A SavedModel folder: the tf_keras model when it has Keras metadata, else its serving function."""
    if not (path / "saved_model.pb").is_file():
        raise EdgeclsError(f"{path}: not a SavedModel folder (no saved_model.pb) nor a run folder from `edgecls train` (no config.json)")
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    if size > MAX_SAVED_MODEL_BYTES:
        raise EdgeclsError(f"{path}: the SavedModel holds {size / 1024**3:.1f} GB; a TFLite file cannot exceed 2 GB")
    tf, tf_keras = import_tf()
    # A SavedModel is a program: every op of every function is checked before TensorFlow loads
    # any of it (loading runs resource creators and restore functions).
    check_saved_model(path, custom)
    if (path / "keras_metadata.pb").is_file():
        try:
            model = tf_keras.models.load_model(path, custom_objects=custom or None, compile=False)
        except Exception as exc:
            raise EdgeclsError(f"{path}: cannot load the SavedModel's Keras model ({first_line(exc)})") from None
        if isinstance(model, tf_keras.Model) and type(model).__name__ in MODEL_CLASSES:
            return model, "tf_keras SavedModel"
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        raise EdgeclsError(f"{path}: cannot load SavedModel ({first_line(exc)})") from None
    signatures = dict(getattr(loaded, "signatures", {}) or {})
    signature = signatures.get("serving_default") or (next(iter(signatures.values())) if len(signatures) == 1 else None)
    if signature is None:
        raise EdgeclsError(f"{path}: the SavedModel has no serving_default signature to convert (it has {', '.join(signatures) or 'none'})")
    _, inputs = signature.structured_input_signature
    outputs = signature.structured_outputs
    if len(inputs) != 1 or not isinstance(outputs, dict) or len(outputs) != 1:
        raise EdgeclsError(f"{path}: expected a classifier with 1 input and 1 output, got {len(inputs)} and {len(outputs) if isinstance(outputs, dict) else '?'}")
    (input_name, spec), ((output_name, output_spec),) = next(iter(inputs.items())), outputs.items()
    shape, out_shape = tuple(spec.shape), tuple(output_spec.shape)
    if len(shape) != 4 or shape[3] != 3 or shape[1] is None or shape[2] is None or spec.dtype != tf.float32:
        raise EdgeclsError(f"{path}: expected a float32 RGB image input of fixed size (None, H, W, 3), got {spec.dtype.name} {shape}")
    if len(out_shape) != 2 or out_shape[1] is None or out_shape[1] < 2:
        raise EdgeclsError(f"{path}: expected class scores of shape (None, N>=2), got {out_shape}")

    def function(x):
        return signature(**{input_name: x})[output_name]

    model = FloatFunction(function, shape[1:], int(out_shape[1]), name=path.name, keep=loaded)
    model.signature = signature
    return model, "SavedModel without Keras metadata (a graph: Keras 3 model.export() or tf.saved_model.save)"


def _keras3():
    import_tf()  # TF_USE_LEGACY_KERAS before TensorFlow: tf.keras stays tf_keras
    try:
        import keras
    except ImportError:
        raise EdgeclsError("loading a Keras 3 model needs the keras package (installed with TensorFlow): pip install keras") from None
    if _major(keras.__version__) != 3:
        raise EdgeclsError(f"loading a Keras 3 model needs Keras 3; `import keras` gives {keras.__version__}")
    return keras


def _looks_keras3(config: dict) -> bool:
    text = json.dumps(config)
    return '"batch_shape"' in text or '"DTypePolicy"' in text or '"__keras_tensor__"' in text


def _edgecls_run_convention(path: Path) -> bool:
    """A model.keras inside a run folder from `edgecls train` takes pixel / 255 by construction."""
    config = path.parent / "config.json"
    if path.name != "model.keras" or not config.is_file():
        return False
    try:
        return "edgecls_version" in json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


# -- normalisation ------------------------------------------------------------------------------
def _outside_normalization(label: str, input_range: str | None, leading: list[str], convention: bool):
    """(what the original model's input takes, how that was decided)."""
    if input_range is not None:
        name = range_name(input_range)
        if leading and name != "0-255":
            from edgecls.convert.modes import notice

            notice(
                f"{label}: starts with {', '.join(leading)}, which usually means it takes raw pixels; "
                f"feeding it {InputNormalization.from_range(name).describe()} as --input-range {name} says"
            )
        return InputNormalization.from_range(name, f"--input-range {name}"), "option"
    if leading:
        return InputNormalization.from_range("0-255", f"detected: {', '.join(leading)} at the input: the model takes raw pixels"), "detected"
    if convention:
        return PIXEL_UNIT.with_source("edgecls train convention: pixel / 255"), "convention"
    from edgecls.convert.modes import notice

    notice(
        f"{label}: no Rescaling or Normalization layer at its input, so edgecls assumes it takes pixel / 255 (0..1); "
        "pass --input-range 0-255 or -1-1 if it was trained on other pixel values"
    )
    return PIXEL_UNIT.with_source("assumed: no Rescaling/Normalization layer and no --input-range"), "assumed"


def import_keras_model(model, input_range: str | None = None, *, description: str = "in-memory model", label: str | None = None,
                       convention: bool = False) -> ImportedModel:  # fmt: skip
    """Detect leading Rescaling/Normalization layers, fold them into the input normalisation,
    and give a tf_keras model (rebuilding a Keras 3 one), checked against the original."""
    _, tf_keras = import_tf()
    label = label or model.name
    keras3 = not isinstance(model, tf_keras.Model)
    _single_image_classifier(model, label)
    try:
        config = model.get_config()
        leading = _leading_preprocessing(model, config)
    except Exception:  # noqa: BLE001 - a subclassed model has no config to read layers from
        config, leading = None, []
    names = [f"{type(layer).__name__} '{layer.name}'" for layer in leading]
    outside, how = _outside_normalization(label, input_range, names, convention)
    fold_layers, scale, offset = [], np.ones(3), np.zeros(3)
    for layer in leading:  # the foldable prefix
        affine = _layer_affine(layer)
        if affine is None:
            break
        fold_layers.append(layer)
        scale, offset = affine[0] * scale, affine[0] * offset + affine[1]
    fold = (scale, offset) if fold_layers else None
    try:
        normalization = outside.then_affine(scale, offset) if fold else outside
    except ValueError:  # a negative scale cannot be a (pixel - mean) / std
        fold_layers, fold, normalization = [], None, outside
    folded = [f"{type(layer).__name__} '{layer.name}'" for layer in fold_layers]
    if folded:
        how_fed = "" if how == "detected" else f"; {outside.source} before them"
        normalization = normalization.with_source(f"detected: {', '.join(folded)} at the model's input, folded into this normalisation{how_fed}")
    imported = ImportedModel(model, normalization, model.name, description, how, outside, fold, folded)
    if not keras3 and not fold_layers:
        return imported  # a tf_keras model as it is
    if config is None:
        return _unrebuilt(imported, model, keras3, "it is a subclassed model, without a config to rebuild it from", label)
    skip = {layer.name for layer in fold_layers}
    what = "rebuilt as a tf_keras model" if keras3 else "rebuilt without its input preprocessing layers"
    try:
        rebuilt, dropped = rebuild_in_tf_keras(model, config, skip)
        difference = _max_difference(model, outside, rebuilt, normalization)
        if not difference <= VERIFY_TOLERANCE:
            raise NoCounterpart(f"the rebuilt model's outputs differ from the original's by up to {difference:.2g}")
    except NoCounterpart as exc:
        return _unrebuilt(imported, model, keras3, str(exc), label)
    except Exception as exc:  # noqa: BLE001 - a config this rebuild does not understand
        return _unrebuilt(imported, model, keras3, f"the rebuild failed ({first_line(exc)})", label)
    imported.model = rebuilt
    imported.original = model if keras3 else None
    imported.notes.append(f"{description} {what} (weights copied); outputs match the original within {difference:.1g} on {VERIFY_IMAGES} sample images")
    if folded:
        imported.notes.append(f"{', '.join(folded)} folded into the input normalisation: {normalization.describe()}")
    if dropped:
        imported.notes.append(f"left out (the identity at inference): {', '.join(dropped)}")
    return imported


def _unrebuilt(imported: ImportedModel, model, keras3: bool, reason: str, label: str) -> ImportedModel:
    """The original model, unfolded: as a float function (Keras 3) or as it is (tf_keras)."""
    from edgecls.convert.modes import notice

    imported.normalization = imported.outside
    imported.fold, imported.folded_layers = None, []
    if not keras3:
        imported.model = model
        imported.notes.append(f"input layers kept in the model ({reason})")
        return imported
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    imported.model = FloatFunction(lambda x: model(x, training=False), shape, int(model.outputs[0].shape[-1]), model.name, keep=model)
    imported.qat_unavailable = f"the Keras 3 model cannot be rebuilt in tf_keras, which tfmot needs: {reason}"
    message = f"{label}: {reason}; converting the Keras 3 model as it is (float, and post-training int8 instead of QAT)"
    notice(message)
    imported.notes.append(message)
    return imported


def _import_function(model: FloatFunction, path: Path, description: str, input_range: str | None) -> ImportedModel:
    leading = _leading_affine_ops(model)
    names = [f"the graph's {'/'.join(leading)} ops"] if leading else []
    outside, how = _outside_normalization(str(path), input_range, names, False)
    imported = ImportedModel(model, outside, model.name, description, how, outside)
    imported.qat_unavailable = "the SavedModel has no Keras layers (no keras_metadata.pb), and QAT needs them"
    imported.notes.append(f"{description}: converted as a float function; QAT unavailable (no Keras layers), post-training int8 instead")
    return imported


def _single_image_classifier(model, label: str) -> None:
    try:
        model.inputs[0], model.outputs[0]
    except (AttributeError, ValueError, TypeError, IndexError):
        raise EdgeclsError(f"{label}: the model has no defined input and output (build it with keras.Input((H, W, 3)))") from None
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise EdgeclsError(f"{label}: expected a classifier with 1 input and 1 output, got {len(model.inputs)} and {len(model.outputs)}")


def _max_difference(original, outside: InputNormalization, rebuilt, normalization: InputNormalization) -> float:
    """Largest |difference| of outputs, relative to their size, on random and flat images."""
    shape = tuple(int(d) for d in original.inputs[0].shape[1:])
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (VERIFY_IMAGES, *shape), dtype=np.uint8)
    pixels[0], pixels[1] = 0, 255
    expected = np.asarray(original(outside.apply(pixels), training=False), np.float64)
    got = np.asarray(rebuilt(normalization.apply(pixels), training=False), np.float64)
    if expected.shape != got.shape:
        return math.inf
    return float(np.max(np.abs(expected - got)) / max(1.0, float(np.max(np.abs(expected)))))


# -- leading preprocessing layers ------------------------------------------------------------------
def _leading_preprocessing(model, config: dict) -> list:
    """The Rescaling/Normalization layers the input goes through first, in order."""
    entries = config.get("layers", [])
    leading = []
    if type(model).__name__ == "Sequential":
        for entry in entries:
            if entry.get("class_name") == "InputLayer":
                continue
            if not _is_preprocessing(entry):
                break
            leading.append(model.get_layer(_entry_name(entry)))
        return leading
    consumers: dict[str, list[tuple[dict, int]]] = {}
    for entry in entries:
        for node in entry.get("inbound_nodes", []):
            for ref in _refs_in(_parse_node(node)):
                consumers.setdefault(ref[0], []).append((entry, ref[2]))
    inputs = _ref_list(config.get("input_layers", []))
    if len(inputs) != 1:
        return leading
    current = inputs[0][0]
    while True:
        users = consumers.get(current, [])
        if len(users) != 1 or not _is_preprocessing(users[0][0]) or len(users[0][0].get("inbound_nodes", [])) != 1:
            return leading
        entry = users[0][0]
        leading.append(model.get_layer(_entry_name(entry)))
        current = _entry_name(entry)


def _is_preprocessing(entry: dict) -> bool:
    return entry.get("class_name") in PREPROCESSING_LAYERS and _builtin(entry)


def _builtin(entry: dict) -> bool:
    module = entry.get("module")
    return not entry.get("registered_name") and (module is None or str(module).startswith(("keras.layers", "keras.src.layers")))


def _layer_affine(layer) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, offset) per channel such that the layer computes scale * x + offset, or None."""
    kind = type(layer).__name__
    if kind == "Rescaling":
        scale, offset = _per_channel(layer.scale), _per_channel(layer.offset)
        return None if scale is None or offset is None else (scale, offset)
    if kind == "Normalization":
        axis = layer.axis if isinstance(layer.axis, (tuple, list)) else (layer.axis,)
        if tuple(axis) not in ((-1,), (3,), (None,), ()):
            return None
        weights = {w.name.split("/")[-1].split(":")[0]: np.asarray(w) for w in layer.weights}
        mean = weights.get("mean", getattr(layer, "mean", None))
        variance = weights.get("variance", getattr(layer, "variance", None))
        mean, variance = _per_channel(mean), _per_channel(variance)
        if mean is None or variance is None:
            return None
        std = np.maximum(np.sqrt(variance), 1e-7)
        if getattr(layer, "invert", False):
            return std, mean
        return 1.0 / std, -mean / std
    return None


def _per_channel(value) -> np.ndarray | None:
    if value is None:
        return None
    array = np.asarray(value, np.float64)
    if array.size not in (1, 3) or any(d != 1 for d in array.shape[:-1]):
        return None
    return np.broadcast_to(array.ravel(), (3,)).copy()


def _leading_affine_ops(model: FloatFunction) -> list[str]:
    """The ops of a Rescaling/Normalization at a graph's input (from their names), if any: such
    a graph takes raw pixels. Empty when the graph starts any other way."""
    signature = getattr(model, "signature", None)
    if signature is None:
        return []
    try:
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        graph_def = convert_variables_to_constants_v2(signature).graph.as_graph_def()
    except Exception:  # noqa: BLE001 - detection is best-effort; the option and the warning remain
        return []
    consumers: dict[str, list] = {}
    for node in graph_def.node:
        for name in node.input:
            consumers.setdefault(name.split(":")[0].lstrip("^"), []).append(node)
    placeholders = [node for node in graph_def.node if node.op == "Placeholder"]
    if len(placeholders) != 1:
        return []
    current, found = placeholders[0].name, []
    # Keras numbers repeated names (rescaling_2) and its traced functions add more (rescaling_2_1).
    pattern = re.compile(r"(^|/)(rescaling|normalization)(_\d+)*/", re.I)
    for _ in range(16):
        users = consumers.get(current, [])
        if len(users) != 1:
            break
        node = users[0]
        if node.op in ("Identity", "Cast"):
            current = node.name
            continue
        if node.op in ("Mul", "AddV2", "Add", "Sub", "RealDiv") and pattern.search(node.name):
            found.append(node.name.split("/")[-2] + "/" + node.op)
            current = node.name
            continue
        break
    return sorted(set(name.split("/")[0] for name in found))


# -- rebuilding in tf_keras ------------------------------------------------------------------------
class _Ref:
    """A reference to a layer's output in a saved functional config: (layer, node, tensor)."""

    def __init__(self, layer: str, node: int, tensor: int):
        self.key = (layer, int(node), int(tensor))


def _entry_name(entry: dict) -> str:
    return entry.get("name") or entry.get("config", {}).get("name")


def _parse_node(node):
    """(args, kwargs) of one call, with _Ref for tensors; Keras 3 and tf_keras formats."""
    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        return _refs_from_keras3(node.get("args", [])), _refs_from_keras3(node.get("kwargs", {}))
    calls = [_Ref(*item[:3]) for item in node]  # tf_keras: [[layer, node, tensor, kwargs], ...]
    kwargs = node[0][3] if node and len(node[0]) > 3 and isinstance(node[0][3], dict) else {}
    return ((calls[0],) if len(calls) == 1 else (calls,)), kwargs


def _refs_from_keras3(value):
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            return _Ref(*value["config"]["keras_history"])
        return {key: _refs_from_keras3(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):  # live configs hold tuples, saved ones lists
        return [_refs_from_keras3(v) for v in value]
    return value


def _refs_in(value) -> Iterator[tuple]:
    if isinstance(value, _Ref):
        yield value.key
    elif isinstance(value, dict):
        for v in value.values():
            yield from _refs_in(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _refs_in(v)


def _resolve(value, produced: dict):
    if isinstance(value, _Ref):
        layer, node, tensor = value.key
        return produced[(layer, node)][tensor]  # KeyError: not made yet
    if isinstance(value, dict):
        return {key: _resolve(v, produced) for key, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_resolve(v, produced) for v in value)
    if isinstance(value, list):
        return [_resolve(v, produced) for v in value]
    return value


def _ref_list(value) -> list[tuple]:
    if value and isinstance(value[0], str):  # Keras 3 writes a single input as [name, 0, 0]
        return [tuple(value[:3])]
    return [tuple(item[:3]) for item in value]


def rebuild_in_tf_keras(source, config: dict, skip: set[str] = frozenset()):
    """(tf_keras model, names of layers left out): `source` (Keras 3 or tf_keras) rebuilt from
    its config without the layers in `skip` (which must sit at the input), weights copied."""
    _, tf_keras = import_tf()
    keras3 = not isinstance(source, tf_keras.Model)
    made: dict[str, tuple[Any, Any, str]] = {}
    dropped: list[str] = []

    def layer_for(entry: dict):
        name = _entry_name(entry)
        if name not in made:
            made[name] = _make_layer(entry, source.get_layer(name), keras3)
        return made[name][0]

    def left_out(entry: dict) -> bool:
        name = _entry_name(entry)
        if name in skip:
            return True
        if _AUGMENTATION.match(str(entry.get("class_name"))) and _builtin(entry):
            if name not in dropped:
                dropped.append(f"{entry['class_name']} '{name}'")
            return True
        return False

    shape = tuple(source.inputs[0].shape)
    entries = config.get("layers", [])
    if type(source).__name__ == "Sequential":
        inputs = tf_keras.Input(batch_shape=shape, name=_input_name(entries))
        x = inputs
        for entry in entries:
            if entry.get("class_name") == "InputLayer" or left_out(entry):
                continue
            x = layer_for(entry)(x)
        outputs = x
    else:
        produced: dict[tuple[str, int], list] = {}
        for entry in entries:
            if entry.get("class_name") == "InputLayer":
                name = _entry_name(entry)
                layer_shape = tuple(source.get_layer(name).output.shape)
                produced[(name, 0)] = [tf_keras.Input(batch_shape=layer_shape, name=name)]
        pending = [(entry, k, _parse_node(node)) for entry in entries if entry.get("class_name") != "InputLayer"
                   for k, node in enumerate(entry.get("inbound_nodes", []))]  # fmt: skip
        while pending:
            progressed = False
            for item in list(pending):
                entry, k, (args, kwargs) = item
                try:
                    call_args, call_kwargs = _resolve(args, produced), _resolve(kwargs, produced)
                except KeyError:
                    continue
                if left_out(entry):
                    out = call_args[0]
                else:
                    try:
                        out = layer_for(entry)(*call_args, **call_kwargs)
                    except NoCounterpart:
                        raise
                    except Exception as exc:
                        raise NoCounterpart(f"{entry.get('class_name')} '{_entry_name(entry)}' fails in tf_keras ({first_line(exc)})") from None
                produced[(_entry_name(entry), k)] = list(out) if isinstance(out, (list, tuple)) else [out]
                pending.remove(item)
                progressed = True
            if not progressed:
                raise NoCounterpart("the model's graph could not be followed (a layer's inputs are never produced)")
        ins = [produced[(name, node)][tensor] for name, node, tensor in _ref_list(config.get("input_layers", []))]
        outs = [produced[(name, node)][tensor] for name, node, tensor in _ref_list(config.get("output_layers", []))]
        inputs, outputs = (ins[0] if len(ins) == 1 else ins), (outs[0] if len(outs) == 1 else outs)
    rebuilt = tf_keras.Model(inputs, outputs, name=source.name)
    for name, (layer, original, kind) in made.items():
        if kind != "layer":
            continue  # nested models got their weights when they were rebuilt
        weights = original.get_weights()
        if [tuple(w.shape) for w in weights] != [tuple(w.shape) for w in layer.weights]:
            raise NoCounterpart(f"{type(original).__name__} '{name}': its weights do not fit the tf_keras layer")
        layer.set_weights(weights)
    return rebuilt, dropped


def _input_name(entries: list) -> str | None:
    for entry in entries:
        if entry.get("class_name") == "InputLayer":
            return _entry_name(entry)
    return None


def _make_layer(entry: dict, original, keras3: bool):
    """(tf_keras layer, the original layer, "layer" | "model" | "preset")."""
    class_name = str(entry.get("class_name"))
    if class_name in MODEL_CLASSES:
        nested, _ = rebuild_in_tf_keras(original, original.get_config())
        return nested, original, "model"
    if not keras3:
        return type(original).from_config(original.get_config()), original, "layer"
    return _translate_keras3_layer(entry, original), original, ("preset" if class_name == "Normalization" else "layer")


_BASE_LAYER_ARGS = {"name", "trainable", "dtype", "dynamic", "input_dim", "input_shape", "batch_input_shape", "batch_size",
                    "weights", "activity_regularizer", "autocast"}  # fmt: skip
_HARMLESS = {"use_cudnn"}  # Keras 3 options that change speed, never results


def _accepted_arguments(cls) -> set[str]:
    accepted = set(_BASE_LAYER_ARGS)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            accepted.update(name for name, p in inspect.signature(init).parameters.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))
    accepted.discard("self")
    return accepted


def _translate_keras3_layer(entry: dict, original):
    """The tf_keras layer for one Keras 3 layer config, or NoCounterpart naming it."""
    _, tf_keras = import_tf()
    class_name = str(entry.get("class_name"))
    config = dict(entry.get("config") or {})
    label = f"{class_name} '{config.get('name')}'"
    if not _builtin(entry):
        raise NoCounterpart(f"{label} is not a built-in Keras layer (from {entry.get('module') or entry.get('registered_name')})")
    cls = getattr(tf_keras.layers, class_name, None)
    if cls is None:
        raise NoCounterpart(f"{label} has no tf_keras counterpart")
    config["dtype"] = "float32"  # mixed precision or not, edgecls converts a float32 graph
    for key in [k for k in config if k.endswith(("_initializer", "_regularizer", "_constraint"))]:
        config.pop(key)  # initialisers do not matter for trained weights; regularisers only to training
    activation = config.get("activation")
    if activation is not None:
        try:
            tf_keras.activations.get(activation if isinstance(activation, str) else None)
        except Exception:  # noqa: BLE001 - unknown name
            activation = json.dumps(activation)
        if not isinstance(activation, str) or activation.startswith(("{", '"')):
            raise NoCounterpart(f"{label}: activation {str(activation)[:60]} has no tf_keras counterpart")
    if class_name == "Normalization":
        # Its statistics as constants: Keras 3 and tf_keras keep adapted ones in different variables.
        affine_mean = np.asarray(_weight(original, "mean", getattr(original, "mean", None)))
        affine_var = np.asarray(_weight(original, "variance", getattr(original, "variance", None)))
        config["mean"], config["variance"] = affine_mean.squeeze().tolist(), affine_var.squeeze().tolist()
    accepted = _accepted_arguments(cls)
    for key in [k for k in config if k not in accepted]:
        value = config.pop(key)
        if value not in (None, False, [], {}) and key not in _HARMLESS:
            raise NoCounterpart(f"{label}: option {key}={json.dumps(value)[:60]} has no tf_keras counterpart")
    try:
        return cls.from_config(config)
    except Exception as exc:
        raise NoCounterpart(f"{label} cannot be made in tf_keras ({first_line(exc)})") from None


def _weight(layer, name: str, default):
    for weight in layer.weights:
        if weight.name.split("/")[-1].split(":")[0] == name:
            return np.asarray(weight)
    return default

"""Input normalisation: leading Rescaling/Normalization layers found and folded into what the
converted files take, or the input range decided from `--input-range`, the edgecls run
convention or an assumption said out loud."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from edgecls.convert.keras_import.model import (
    PREPROCESSING_LAYERS,
    VERIFY_IMAGES,
    VERIFY_TOLERANCE,
    FloatFunction,
    ImportedModel,
    NoCounterpart,
)
from edgecls.convert.keras_import.rebuild import builtin, entry_name, parse_node, rebuild_in_tf_keras, ref_list, refs_in
from edgecls.core.tf_env import import_tf
from edgecls.edge_runtime.normalization import PIXEL_UNIT, InputNormalization, range_name
from edgecls.errors import EdgeclsError, first_line


def _outside_normalization(label: str, input_range: str | None, leading: list[str], convention: bool):
    """(what the original model's input takes, how that was decided)."""
    if input_range is not None:
        name = range_name(input_range)
        if leading and name != "0-255":
            from edgecls.log import notice

            notice(
                f"{label}: starts with {', '.join(leading)}, which usually means it takes raw pixels; "
                f"feeding it {InputNormalization.from_range(name).describe()} as --input-range {name} says"
            )
        return InputNormalization.from_range(name, f"--input-range {name}"), "option"
    if leading:
        return InputNormalization.from_range("0-255", f"detected: {', '.join(leading)} at the input: the model takes raw pixels"), "detected"
    if convention:
        return PIXEL_UNIT.with_source("edgecls train convention: pixel / 255"), "convention"
    from edgecls.log import notice

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
    from edgecls.log import notice

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


def import_function(model: FloatFunction, path: Path, description: str, input_range: str | None) -> ImportedModel:
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
            leading.append(model.get_layer(entry_name(entry)))
        return leading
    consumers: dict[str, list[tuple[dict, int]]] = {}
    for entry in entries:
        for node in entry.get("inbound_nodes", []):
            for ref in refs_in(parse_node(node)):
                consumers.setdefault(ref[0], []).append((entry, ref[2]))
    inputs = ref_list(config.get("input_layers", []))
    if len(inputs) != 1:
        return leading
    current = inputs[0][0]
    while True:
        users = consumers.get(current, [])
        if len(users) != 1 or not _is_preprocessing(users[0][0]) or len(users[0][0].get("inbound_nodes", [])) != 1:
            return leading
        entry = users[0][0]
        leading.append(model.get_layer(entry_name(entry)))
        current = entry_name(entry)


def _is_preprocessing(entry: dict) -> bool:
    return entry.get("class_name") in PREPROCESSING_LAYERS and builtin(entry)

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

"""The Keras 3 -> tf_keras rebuild: a model remade layer by layer in tf_keras from its own
config (tfmot, and so QAT, works on tf_keras models only), its weights copied; a layer with no
tf_keras counterpart raises `NoCounterpart` naming it."""

from __future__ import annotations

import inspect
import json
import re
from typing import Any, Iterator

import numpy as np

from edgecls.convert.keras_import.model import MODEL_CLASSES, NoCounterpart
from edgecls.core.tf_env import import_tf
from edgecls.errors import first_line

# Keras preprocessing-augmentation layers are the identity at inference (RandomCrop is not: it
# centre-crops), so the rebuilt model leaves them out.
_AUGMENTATION = re.compile(r"^Random(?!Crop$)\w+$")


def builtin(entry: dict) -> bool:
    module = entry.get("module")
    return not entry.get("registered_name") and (module is None or str(module).startswith(("keras.layers", "keras.src.layers")))



class _Ref:
    """A reference to a layer's output in a saved functional config: (layer, node, tensor)."""

    def __init__(self, layer: str, node: int, tensor: int):
        self.key = (layer, int(node), int(tensor))


def entry_name(entry: dict) -> str:
    return entry.get("name") or entry.get("config", {}).get("name")


def parse_node(node):
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


def refs_in(value) -> Iterator[tuple]:
    if isinstance(value, _Ref):
        yield value.key
    elif isinstance(value, dict):
        for v in value.values():
            yield from refs_in(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from refs_in(v)


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


def ref_list(value) -> list[tuple]:
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
        name = entry_name(entry)
        if name not in made:
            made[name] = _make_layer(entry, source.get_layer(name), keras3)
        return made[name][0]

    def left_out(entry: dict) -> bool:
        name = entry_name(entry)
        if name in skip:
            return True
        if _AUGMENTATION.match(str(entry.get("class_name"))) and builtin(entry):
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
                name = entry_name(entry)
                layer_shape = tuple(source.get_layer(name).output.shape)
                produced[(name, 0)] = [tf_keras.Input(batch_shape=layer_shape, name=name)]
        pending = [(entry, k, parse_node(node)) for entry in entries if entry.get("class_name") != "InputLayer"
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
                        raise NoCounterpart(f"{entry.get('class_name')} '{entry_name(entry)}' fails in tf_keras ({first_line(exc)})") from None
                produced[(entry_name(entry), k)] = list(out) if isinstance(out, (list, tuple)) else [out]
                pending.remove(item)
                progressed = True
            if not progressed:
                raise NoCounterpart("the model's graph could not be followed (a layer's inputs are never produced)")
        ins = [produced[(name, node)][tensor] for name, node, tensor in ref_list(config.get("input_layers", []))]
        outs = [produced[(name, node)][tensor] for name, node, tensor in ref_list(config.get("output_layers", []))]
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
            return entry_name(entry)
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
    if not builtin(entry):
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

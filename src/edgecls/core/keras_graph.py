"""Check a saved Keras model's layer graph before Keras rebuilds it.

Keras (tf_keras and Keras 3 alike) rebuilds a functional model from its config by calling each
layer on its inputs, deferring a node whose inputs do not exist yet and going round again until
none is left. A damaged or hostile config whose node waits for a layer that is missing, has no
such node, or waits on itself (a cycle) never gets its inputs: `load_model` then loops forever
instead of failing. So every `.keras` and `.h5` config is checked here first (one junk
`inbound_nodes` is enough to hang it; tests/test_fuzz.py mutates configs to find such cases).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from edgecls.errors import EdgeclsError

Node = tuple[str, int]  # (layer name, node index)


def check_layer_graph(config: Any, path: Path) -> None:
    """Raise EdgeclsError unless every functional model in `config` (nested ones too) can be
    rebuilt: each node's inputs are nodes of layers it has, and no node depends on itself."""
    for layers in _functional_layer_lists(config):
        _check_layers(layers, path)


def walk_dicts(obj: Any) -> Iterator[dict]:
    """Every dict in a JSON-like config, depth first (the config itself included)."""
    if isinstance(obj, dict):
        yield obj
        for value in obj.values():
            yield from walk_dicts(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from walk_dicts(value)


def _functional_layer_lists(config: Any) -> Iterator[list[dict]]:
    """Every `layers` list whose layers carry `inbound_nodes` (functional models, nested too)."""
    for node in walk_dicts(config):
        layers = node.get("layers")
        if isinstance(layers, list) and any(isinstance(layer, dict) and "inbound_nodes" in layer for layer in layers):
            yield layers


def _check_layers(layers: list, path: Path) -> None:
    nodes: dict[str, int] = {}  # layer name -> how many nodes rebuilding it makes
    inputs: dict[Node, list[Node]] = {}  # node -> the nodes it is called on
    for layer in layers:
        if not isinstance(layer, dict):
            raise _damaged(path, f"a layer entry is a {type(layer).__name__}, not an object")
        name = _layer_name(layer)
        inbound = layer.get("inbound_nodes")
        inbound = inbound if isinstance(inbound, list) else []
        nodes[name] = len(inbound) or (1 if layer.get("class_name") == "InputLayer" else 0)
        for index, node in enumerate(inbound):
            inputs[(name, index)] = list(_references(node))
    for node, sources in inputs.items():
        for source in sources:
            if source[1] >= nodes.get(source[0], 0):
                missing = "is not in the model" if source[0] not in nodes else f"has no node {source[1]}"
                raise _damaged(path, f"layer '{node[0]}' takes its input from layer '{source[0]}', which {missing}")
    _refuse_cycles(inputs, path)


def _layer_name(layer: dict) -> str:
    name = layer.get("name")
    if not isinstance(name, str) and isinstance(layer.get("config"), dict):
        name = layer["config"].get("name")
    return str(name)


def _references(node: Any) -> Iterator[Node]:
    """The (layer, node index) inputs of one inbound node, in either format: tf_keras lists
    [layer, node, tensor, kwargs], or Keras 3 `__keras_tensor__` objects with a keras_history."""
    if isinstance(node, dict):
        inner = node.get("config")
        history = inner.get("keras_history") if node.get("class_name") == "__keras_tensor__" and isinstance(inner, dict) else None
        if isinstance(history, list) and len(history) >= 2 and isinstance(history[0], str) and isinstance(history[1], int):
            yield history[0], history[1]
            return
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list):
        if len(node) >= 3 and isinstance(node[0], str) and isinstance(node[1], int) and isinstance(node[2], int):
            yield node[0], node[1]
            node = node[3:]  # call kwargs may hold more tensors
        for value in node:
            yield from _references(value)


def _refuse_cycles(inputs: dict[Node, list[Node]], path: Path) -> None:
    source = node_on_a_cycle(inputs)
    if source is not None:
        raise _damaged(path, f"layer '{source[0]}' depends on its own output")


def node_on_a_cycle(edges: Mapping[Any, Iterable[Any]]):
    """A node that reaches itself along `edges` (node -> the nodes it points to), or None.
    Depth-first without recursion: a hostile graph (a model file's layers, a SavedModel's
    function calls) may be deeper than Python's stack."""
    done: set = set()
    for start in edges:
        if start in done:
            continue
        on_path = {start}
        stack: list[tuple[Any, Iterator[Any]]] = [(start, iter(edges.get(start, ())))]
        while stack:
            node, pending = stack[-1]
            target = next(pending, None)
            if target is None:
                stack.pop()
                on_path.discard(node)
                done.add(node)
            elif target in on_path:
                return target
            elif target not in done:
                on_path.add(target)
                stack.append((target, iter(edges.get(target, ()))))
    return None


def _damaged(path: Path, why: str) -> EdgeclsError:
    return EdgeclsError(f"{path}: cannot load Keras model (its layer graph is damaged: {why})")

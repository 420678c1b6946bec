"""Per-layer quantization error of a full-integer file, named by the Keras layers the user wrote.

The int8 file runs with `experimental_preserve_all_tensors` (the TFLite interpreter's debugging
switch that keeps every intermediate tensor), the float Keras model runs on the same images, and
each int8 activation tensor is compared, dequantized, with the float model's output at the same
point. The error is cumulative: a tensor carries its own rounding plus everything upstream, as
the file computes it. TFLite's `QuantizationDebugger` measures each op on its quantized input
instead, but only for models it calibrates itself (not QAT models); this module covers both.

Mapping TFLite tensors to Keras layers: the converter names each op's output tensor after the
TensorFlow ops fused into it ("m/conv1_relu/Relu;m/conv1/Conv2D"), whose second path component is
the Keras layer (QAT wrappers add "quant_" to it). A tensor belongs to the latest layer, in model
order, that its name mentions; then to the BatchNormalization or ReLU layers right after it that
no tensor mentions (the converter folded them in: QAT names a conv+BN+ReLU op after the conv).
A layer with a built-in activation whose tensor name has no activation op is compared at its
pre-activation value (the softmax of a Dense head is a separate TFLite op).

Numbers, per layer, over all elements of all images: `rmse_steps`, the root-mean-square error in
units of the tensor's int8 step (rounding alone gives 1/sqrt(12) ~ 0.29); `relative_error`, the
RMSE over the float tensor's standard deviation (0.01: 1% of the spread; 1: the signal is gone);
`sqnr_db`, signal-to-quantization-noise ratio, 10 log10(mean float^2 / mean error^2);
`clipped`, the share of float values outside the int8 range; `added_error`, the relative error
this layer adds to that of the layers feeding it: what ranks the layers to blame.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecls.edge_runtime.normalization import InputNormalization
from edgecls.errors import EdgeclsError

ROUNDING_STEPS = 1 / math.sqrt(12)  # RMSE of uniform rounding, in steps
QAT_PREFIX = "quant_"
# TensorFlow op names of the activations a Keras layer applies itself (its `activation` argument).
_ACTIVATION_OPS = {"Relu", "Relu6", "Softmax", "Sigmoid", "Tanh", "Elu", "Selu", "LeakyRelu", "Gelu", "Softplus", "mul", "Minimum"}
# Layers the converter folds into the op before them: a tensor never names them.
_FOLDABLE = ("BatchNormalization", "ReLU", "Activation")
COLUMNS = ("layer", "type", "point", "shape", "scale", "rmse_steps", "relative_error", "sqnr_db", "clipped", "added_error", "tensor")


@dataclass
class LayerErrors:
    """The per-layer table of one full-integer file, in model order."""

    mode: str
    images: int
    image_source: str  # which images: "validation", "calibration"
    rows: list[dict[str, Any]] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)  # int8 activation tensors no Keras layer claimed

    def worst(self, count: int = 3) -> list[dict[str, Any]]:
        """The layers that add the most error, worst first (only those adding any)."""
        ranked = sorted((r for r in self.rows if r["added_error"] is not None), key=lambda r: -r["added_error"])
        return [r for r in ranked if r["added_error"] > 0][:count]

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "images": self.images, "image_source": self.image_source, "rows": self.rows,
                "unmapped": self.unmapped, "worst": [r["layer"] for r in self.worst()]}  # fmt: skip

    def describe_worst(self, count: int = 3) -> str:
        worst = self.worst(count)
        if not worst:
            return "no layer adds error"
        return ", ".join(f"{r['layer']} (relative error {r['relative_error']:.2f}, {r['rmse_steps']:.2f} int8 steps)" for r in worst)


def errors_from_dict(doc: dict[str, Any]) -> LayerErrors:
    return LayerErrors(doc["mode"], doc["images"], doc["image_source"], list(doc["rows"]), list(doc.get("unmapped", [])))


def name_layers(tensor_name: str, known: dict[str, int]) -> list[tuple[str, list[str]]]:
    """The Keras layers a TFLite tensor name mentions, each with the op names after it."""
    found: dict[str, list[str]] = {}
    for part in tensor_name.split(";"):
        pieces = part.split("/")
        for i, piece in enumerate(pieces):
            name = piece
            if name not in known and name.startswith(QAT_PREFIX) and name[len(QAT_PREFIX):] in known:
                name = name[len(QAT_PREFIX):]
            if name in known:
                found.setdefault(name, []).extend(pieces[i + 1 :])
    return list(found.items())


def _has_activation(layer) -> bool:
    activation = getattr(layer, "activation", None)
    return activation is not None and getattr(activation, "__name__", "") not in ("linear", "")


def _consumers(layer) -> list:
    return [node.outbound_layer for node in getattr(layer, "_outbound_nodes", [])]


def _producers(layer) -> list:
    nodes = getattr(layer, "_inbound_nodes", [])
    if not nodes:
        return []
    inbound = nodes[0].inbound_layers
    return list(inbound) if isinstance(inbound, (list, tuple)) else [inbound]


def _foldable(layer) -> bool:
    kind = type(layer).__name__
    if kind not in _FOLDABLE:
        return False
    if kind == "Activation":
        return getattr(layer.activation, "__name__", "") in ("relu", "relu6")
    return True


def map_tensors(model, tensors: list[dict]) -> dict[tuple[str, str], dict]:
    """(layer name, "output" | "pre-activation") -> the int8 tensor detail computing it."""
    layers = {layer.name: layer for layer in model.layers if type(layer).__name__ != "InputLayer"}
    order = {name: i for i, name in enumerate(layers)}
    claims: list[tuple[dict, str, list[str]]] = []
    mentioned: set[str] = set()
    for detail in tensors:
        found = name_layers(detail["name"], order)
        if not found:
            continue
        mentioned.update(name for name, _ in found)
        name, ops = max(found, key=lambda item: order[item[0]])
        claims.append((detail, name, ops))
    mapped: dict[tuple[str, str], dict] = {}
    for detail, name, ops in claims:
        layer = layers[name]
        # Absorb the folded BatchNormalization / ReLU layers right after it.
        while True:
            after = _consumers(layer)
            if len(after) != 1 or after[0].name not in layers or after[0].name in mentioned or not _foldable(after[0]):
                break
            layer = after[0]
        point = "output"
        if layer.name == name and _has_activation(layer) and not any(op.rstrip("0123456789") in _ACTIVATION_OPS for op in ops):
            point = "pre-activation"
        mapped[(layer.name, point)] = detail  # later ops overwrite: the last tensor of a layer is its output
    return mapped


def reference_model(model, points: list[tuple[str, str]]):
    """A model that outputs the float value at each (layer, point)."""
    from edgecls.core.tf_env import import_tf

    _, keras = import_tf()
    outputs = []
    for name, point in points:
        layer = model.get_layer(name)
        if point == "output":
            outputs.append(layer.output)
            continue
        config = {**layer.get_config(), "activation": "linear", "name": f"{name}__pre_activation"}
        linear = type(layer).from_config(config)
        value = linear(layer.input)
        linear.set_weights(layer.get_weights())
        outputs.append(value)
    return keras.Model(model.inputs, outputs)


CHUNK = 8  # images per Keras batch: every layer's output of a chunk is held at once


def measure_layer_errors(model, model_bytes: bytes, images: np.ndarray, normalization: InputNormalization, mode: str,
                         image_source: str = "validation") -> LayerErrors:  # fmt: skip
    """Compare every int8 activation tensor of `model_bytes` with `model`'s float value there, on
    uint8 `images` (N, H, W, 3). Streams: sums are kept per tensor, a few images' tensors at once."""
    from edgecls.edge_runtime.interpreter import find_interpreter

    if not len(images):
        raise EdgeclsError("the per-layer error report needs images (validation or calibration)")
    interpreter_class, _ = find_interpreter()
    with warnings.catch_warnings():  # "intended for debugging purposes only": that is the use here
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")
        interpreter = interpreter_class(model_content=model_bytes, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    details = interpreter.get_tensor_details()
    produced = _op_outputs(model_bytes)
    activations = [d for d in details if d["index"] in produced and d["dtype"] == np.int8 and _scale(d) > 0]
    mapped = map_tensors(model, activations)
    result = LayerErrors(mode, len(images), image_source)
    claimed = {detail["index"] for detail in mapped.values()}
    result.unmapped = [d["name"] for d in activations if d["index"] not in claimed]
    points = _model_order(model, mapped)
    if not points:
        return result
    reference = reference_model(model, points)
    shapes = [tuple(int(d) for d in output.shape[1:]) for output in reference.outputs]
    comparable = [i for i, p in enumerate(points) if tuple(mapped[p]["shape"][1:]) == shapes[i]]
    result.unmapped += [mapped[points[i]]["name"] for i in range(len(points)) if i not in comparable]
    sums = [_Sums() for _ in points]
    for start in range(0, len(images), CHUNK):
        chunk = images[start : start + CHUNK]
        floats = reference(normalization.apply(chunk).astype(np.float32), training=False)
        floats = [np.asarray(f) for f in (floats if isinstance(floats, (list, tuple)) else [floats])]
        for position, image in enumerate(chunk):
            _invoke(interpreter, image, normalization)
            for i in comparable:
                detail = mapped[points[i]]
                scale, zero_point = detail["quantization"]
                values = (interpreter.get_tensor(detail["index"]).astype(np.float64) - zero_point) * scale
                sums[i].add(np.asarray(floats[i][position], np.float64), values[0], scale, zero_point)
    relative: dict[str, float] = {}
    for i in comparable:
        (name, point), detail = points[i], mapped[points[i]]
        row = sums[i].row(name, point, type(model.get_layer(name)).__name__, detail, shapes[i])
        result.rows.append(row)
        if point == "output":
            relative[name] = row["relative_error"]
    for row in result.rows:
        upstream = _upstream_errors(model.get_layer(row["layer"]), relative)
        row["added_error"] = None if row["relative_error"] is None else row["relative_error"] - upstream
    return result


class _Sums:
    """Running sums of one tensor's float values and int8 errors over images."""

    def __init__(self):
        self.count = 0
        self.error2 = self.total = self.total2 = 0.0
        self.clipped = 0

    def add(self, reference: np.ndarray, values: np.ndarray, scale: float, zero_point: int) -> None:
        low, high = (-128 - zero_point) * scale, (127 - zero_point) * scale
        self.count += reference.size
        self.error2 += float(np.sum((values - reference) ** 2))
        self.total += float(np.sum(reference))
        self.total2 += float(np.sum(reference**2))
        self.clipped += int(np.sum((reference < low - scale / 2) | (reference > high + scale / 2)))

    def row(self, name: str, point: str, kind: str, detail: dict, shape: tuple[int, ...]) -> dict[str, Any]:
        scale = float(detail["quantization"][0])
        mse = self.error2 / self.count
        power = self.total2 / self.count
        spread = math.sqrt(max(power - (self.total / self.count) ** 2, 0.0))
        return {
            "layer": name,
            "type": kind,
            "point": point,
            "shape": "x".join(str(d) for d in shape),
            "scale": scale,
            "rmse_steps": math.sqrt(mse) / scale,
            "relative_error": math.sqrt(mse) / spread if spread > 0 else None,
            "sqnr_db": 10 * math.log10(power / mse) if mse > 0 and power > 0 else None,  # None: exact, or no signal
            "clipped": self.clipped / self.count,
            "added_error": None,
            "tensor": detail["name"],
        }


def _model_order(model, mapped: dict) -> list[tuple[str, str]]:
    order = [layer.name for layer in model.layers]
    return sorted(mapped, key=lambda p: (order.index(p[0]), p[1] == "output"))


def _upstream_errors(layer, relative: dict[str, float]) -> float:
    """The largest relative error among the nearest measured layers feeding `layer`."""
    worst, seen, stack = 0.0, set(), list(_producers(layer))
    while stack:
        producer = stack.pop()
        if producer.name in seen:
            continue
        seen.add(producer.name)
        if producer.name in relative and relative[producer.name] is not None:
            worst = max(worst, relative[producer.name])
        else:
            stack.extend(_producers(producer))
    return worst


def _op_outputs(model_bytes: bytes) -> set[int]:
    """Every tensor an operator of the main subgraph writes, read from the file's flatbuffer
    (LiteRT's interpreter has no public list of its ops)."""
    from edgecls.edge_runtime.metadata import tflite_schema

    model = tflite_schema().Model.GetRootAs(model_bytes, 0)
    graph = model.Subgraphs(0)
    return {int(i) for n in range(graph.OperatorsLength()) for i in graph.Operators(n).OutputsAsNumpy()}


def _scale(detail: dict) -> float:
    scales = detail["quantization_parameters"]["scales"]
    return float(scales[0]) if len(scales) == 1 else 0.0


def _invoke(interpreter, image: np.ndarray, normalization: InputNormalization) -> None:
    """One uint8 image through the int8 file, its input quantized as the file's input says."""
    (input_detail,) = interpreter.get_input_details()
    scale, zero_point = input_detail["quantization"]
    info = np.iinfo(input_detail["dtype"])
    x = normalization.apply(image[None]).astype(np.float64)
    q = np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(input_detail["dtype"])
    interpreter.set_tensor(input_detail["index"], q)
    interpreter.invoke()


def markdown_table(errors: LayerErrors) -> list[str]:
    lines = [
        f"Per-layer quantization error, {errors.mode}: {errors.images} {errors.image_source} images; each int8 tensor "
        "against the float Keras model's value at the same point, in model order.",
        "",
        "| layer | type | at | shape | RMSE (int8 steps) | relative error | SQNR dB | clipped | added error |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    worst = {r["layer"] for r in errors.worst()}
    for r in errors.rows:
        name = f"**{r['layer']}**" if r["layer"] in worst else r["layer"]
        lines.append(f"| {name} | {r['type']} | {r['point']} | {r['shape']} | {r['rmse_steps']:.2f} | {_num(r['relative_error'], 3)} | "
                     f"{_num(r['sqnr_db'], 1)} | {100 * r['clipped']:.1f}% | {_num(r['added_error'], 3)} |")  # fmt: skip
    lines += [
        "",
        f"RMSE (int8 steps): root-mean-square error over the tensor's int8 step; rounding alone gives about {ROUNDING_STEPS:.2f}, "
        "and error carried from upstream layers adds to it. relative error: RMSE over the float tensor's standard "
        "deviation (1 means the signal is gone). SQNR: 10 log10(mean float^2 / mean error^2). clipped: float values "
        "outside the tensor's int8 range. added error: relative error minus the largest of the layers feeding it; "
        f"the layers that add most are in bold (worst: {errors.describe_worst()}).",
    ]
    if errors.unmapped:
        lines += ["", f"int8 tensors no Keras layer output matches: {', '.join(errors.unmapped[:12])}"]
    return lines


def _num(value, digits: int) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def plot_layer_errors(errors: LayerErrors, path: Path) -> Path:
    """Relative error per layer, in model order, log scale; the added error beside it."""
    from matplotlib.figure import Figure

    from edgecls.files import atomic_path

    rows = [r for r in errors.rows if r["relative_error"] is not None]
    fig = Figure(figsize=(max(6.0, 0.35 * len(rows) + 2), 4.0), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    relative = np.array([r["relative_error"] for r in rows])
    added = np.array([r["added_error"] or 0.0 for r in rows])
    positive = np.concatenate([relative[relative > 0], added[added > 0]])
    floor = float(positive.min()) / 3 if len(positive) else 1e-6  # bars rise from here on the log axis
    ax.bar(x - 0.2, np.where(relative > 0, relative - floor, np.nan), 0.4, bottom=floor, label="relative error")
    ax.bar(x + 0.2, np.where(added > 0, added - floor, np.nan), 0.4, bottom=floor, label="added by the layer")  # none added: no bar
    ax.set_yscale("log")
    ax.set_ylim(bottom=floor)
    ax.set_xticks(x, [f"{r['layer']}{' (pre-act.)' if r['point'] != 'output' else ''}" for r in rows], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("RMSE / float std")
    ax.set_title(f"{errors.mode}: int8 vs float per layer ({errors.images} {errors.image_source} images)")
    ax.legend()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return path

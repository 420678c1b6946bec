"""Model files are data until proven otherwise: what edgecls checks before anything deserialises
a user's `.keras`, `.h5` or SavedModel (docs/safety.md).

Everything here works on the parsed structure (JSON parsed, protobufs read with TensorFlow's own
proto classes), never on matched bytes, and by allow-list: a Keras config may name only the
built-in layers, initializers, regularizers, constraints and activations listed below, with plain
configs; a SavedModel may hold only the side-effect-free ops listed below, in every function of
its library. Anything else is refused in one line naming it. A user who trusts a model's custom
layers passes their own code (`custom_objects`, `--custom-objects FILE.py`), which edgecls then
imports and runs: that, and only that, is how code gets in.

    check_keras_config(config, path, custom)      # a parsed config.json / model_config / metadata node
    config, metadata = read_keras_archive(path)   # a .keras zip, its sizes checked before reading
    config = read_h5_config(path)                 # an .h5's model_config attribute, size checked
    check_saved_model(path, custom)               # every op of every function, and keras_metadata.pb
    custom = load_custom_objects("layers.py")     # runs that file: the user's explicit choice
    bounded_call(function, seconds, what)         # a wall-clock limit on a call into a model
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import re
import sys
import threading
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from edgecls.errors import EdgeclsError, first_line

# -- limits -------------------------------------------------------------------------------------
# A TFLite flatbuffer holds at most 2 GB, so no bigger model can convert anyway.
MAX_MODEL_BYTES = 2 * 1024**3
# Real configs are kilobytes to a few megabytes (EfficientNetB7's is about 1 MB); parsing JSON
# takes some ten times its size in memory, so these bound what a hostile config can cost.
MAX_CONFIG_BYTES = 32 * 1024**2
MAX_METADATA_BYTES = 1024**2
MAX_ARCHIVE_MEMBERS = 10_000
MAX_CONFIG_DEPTH = 200  # nesting of a config's JSON; Keras models nest a few levels per sub-model
# A wall-clock limit on each call into an imported graph (a batch of parity images): a real
# classifier answers a batch in seconds; a graph built to spin (a huge loop) is stopped here.
def _call_seconds(default: float = 300.0) -> float:
    try:
        value = float(os.environ.get("EDGECLS_MODEL_CALL_SECONDS", default))
    except ValueError:
        return default
    return value if 0 < value <= 86400 else default  # NaN, inf and nonsense fall back


MODEL_CALL_SECONDS = _call_seconds()

# -- Keras: the allow-list ----------------------------------------------------------------------
_LAYERS = {
    "InputLayer", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
    "SeparableConv1D", "SeparableConv2D", "DepthwiseConv1D", "DepthwiseConv2D", "Dense", "EinsumDense",
    "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "ThresholdedReLU",
    "BatchNormalization", "LayerNormalization", "GroupNormalization", "UnitNormalization",
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout",
    "AlphaDropout", "ActivityRegularization", "Flatten", "Reshape", "Permute", "RepeatVector", "Identity",
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
    "UpSampling1D", "UpSampling2D", "UpSampling3D",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "MaxPool1D", "MaxPool2D", "MaxPool3D", "AvgPool1D", "AvgPool2D", "AvgPool3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalAvgPool3D", "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPool3D",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot",
    "Attention", "AdditiveAttention", "MultiHeadAttention",
    "Rescaling", "Normalization", "Resizing", "CenterCrop",
    "RandomFlip", "RandomRotation", "RandomZoom", "RandomContrast", "RandomTranslation", "RandomCrop",
    "RandomBrightness", "RandomHeight", "RandomWidth",
}  # fmt: skip
_MODELS = {"Functional", "Sequential", "Model"}
# Layers Keras' own applications define in their modules (ConvNeXt), accepted from there only.
_APPLICATION_LAYERS = {"LayerScale", "StochasticDepth"}
_APPLICATION_MODULES = ("keras.src.applications.", "keras.applications.", "tf_keras.src.applications.")
_INITIALIZERS = {
    "Zeros", "Ones", "Constant", "RandomNormal", "RandomUniform", "TruncatedNormal", "VarianceScaling",
    "GlorotUniform", "GlorotNormal", "HeUniform", "HeNormal", "LecunUniform", "LecunNormal", "Orthogonal", "Identity",
}  # fmt: skip
_REGULARIZERS = {"L1", "L2", "L1L2", "OrthogonalRegularizer"}
_CONSTRAINTS = {"MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "RadialConstraint"}
# Plain-data wrappers of the formats themselves: dtype policies, tensors between layers, shapes
# and specs that tf_keras writes into keras_metadata.pb, and the metrics it tracks there.
_FORMAT_OBJECTS = {
    "DTypePolicy", "FloatDTypePolicy", "Policy", "__keras_tensor__", "__tuple__", "__numpy__",
    "InputSpec", "TensorShape", "TypeSpec", "Mean", "Sum", "MeanMetricWrapper",
}  # fmt: skip
ALLOWED_CLASSES = _LAYERS | _MODELS | _INITIALIZERS | _REGULARIZERS | _CONSTRAINTS | _FORMAT_OBJECTS
ALLOWED_ACTIVATIONS = {
    "linear", "relu", "relu6", "sigmoid", "hard_sigmoid", "softmax", "log_softmax", "softplus", "softsign",
    "tanh", "selu", "elu", "exponential", "swish", "silu", "hard_swish", "hard_silu", "gelu", "leaky_relu", "mish",
}  # fmt: skip
_NAMED_OBJECTS = {  # config keys ending so -> the names a string value may take
    "_initializer": {re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() for name in _INITIALIZERS} | {name.lower() for name in _INITIALIZERS},
    "_regularizer": {"l1", "l2", "l1_l2", "orthogonal_regularizer"},
    "_constraint": {"max_norm", "min_max_norm", "non_neg", "unit_norm", "radial_constraint", "maxnorm", "nonneg", "unitnorm"},
}
_METRIC_FUNCTIONS = {
    "accuracy", "categorical_accuracy", "sparse_categorical_accuracy", "binary_accuracy", "top_k_categorical_accuracy",
    "sparse_top_k_categorical_accuracy", "categorical_crossentropy", "sparse_categorical_crossentropy",
    "binary_crossentropy", "mean_squared_error", "mean_absolute_error",
}  # fmt: skip
_TYPE_SPECS = {"tf.TensorSpec"}
# Written by compile() and never deserialised: edgecls loads every model uncompiled.
_UNREAD_KEYS = {"compile_config", "training_config"}
# Layers that hold Python code (bytecode, or a TensorFlow symbol to call by name).
_CODE_CLASSES = {"Lambda", "TFOpLambda", "SlicingOpLambda", "__lambda__", "function", "TFSMLayer"}


def check_keras_config(config: Any, path: Path | str, custom: Iterable[str] = ()) -> None:
    """Raise EdgeclsError (one line naming them) unless every object in a parsed Keras config is
    an allowed built-in with a plain config, or named in `custom` (the user's own code)."""
    custom = frozenset(custom)
    code: list[str] = []
    unknown: list[str] = []
    stack: list[tuple[Any, str, int]] = [(config, "", 0)]
    while stack:
        node, key, depth = stack.pop()
        if depth > MAX_CONFIG_DEPTH:
            raise EdgeclsError(f"{path}: refused: the model's config nests deeper than {MAX_CONFIG_DEPTH} levels")
        if isinstance(node, dict):
            if "class_name" in node:
                _check_object(node, custom, code, unknown)
            for child_key, value in node.items():
                if child_key in _UNREAD_KEYS:
                    continue
                if child_key in ("function", "function_type", "output_shape_type") and "__keras_tensor__" != node.get("class_name"):
                    if not _custom_entry(node, custom):
                        code.append(f"a 'function' entry in {_label(node)}")
                    continue
                if child_key == "fn" and not (isinstance(value, str) and (value in _METRIC_FUNCTIONS or value in custom)):
                    code.append(f"a metric function '{_shown(value, 40)}'")
                    continue
                if child_key == "type_spec" and value not in _TYPE_SPECS:
                    unknown.append(f"type spec '{_shown(value, 40)}'")
                    continue
                stack.append((value, str(child_key), depth + 1))
        elif isinstance(node, list):
            stack.extend((value, key, depth + 1) for value in reversed(node))
        elif isinstance(node, str):
            _check_string(node, key, custom, unknown)
    if code:
        holds = "holds" if len(set(code)) == 1 else "hold"
        raise EdgeclsError(f"{path}: refused: {_listed(code)} {holds} Python code, which edgecls never loads; rebuild the model with standard layers")
    if unknown:
        what = "is not a built-in Keras object" if len(set(unknown)) == 1 else "are not built-in Keras objects"
        raise EdgeclsError(
            f"{path}: refused: {_listed(unknown)} {what} edgecls loads; if it is your own code, "
            "pass it with `custom_objects` FILE.py, which imports and runs that file",
            fields="custom_objects",
        )


def _check_object(node: dict, custom: frozenset, code: list, unknown: list) -> None:
    class_name = node.get("class_name")
    if not isinstance(class_name, str):
        unknown.append(f"a class name {_shown(json.dumps(class_name), 40)}")
        return
    if _custom_entry(node, custom):
        return
    module, registered = node.get("module"), node.get("registered_name")
    if class_name in _CODE_CLASSES or str(registered).endswith(">Lambda"):
        code.append(_label(node))
    elif class_name in _APPLICATION_LAYERS and isinstance(module, str) and module.startswith(_APPLICATION_MODULES):
        return
    elif class_name not in ALLOWED_CLASSES:
        unknown.append(_label(node) + (f" (from {_shown(module or registered)})" if (module or registered) and module not in ("keras.layers",) else ""))
    elif module is not None and not (isinstance(module, str) and (module in ("keras", "tf_keras") or module.startswith(("keras.", "tf_keras.")))):
        unknown.append(f"{_label(node)} from module '{_shown(module)}'")
    elif registered not in (None, class_name):
        unknown.append(f"{_label(node)} registered as '{_shown(registered)}'")


def _custom_entry(node: dict, custom: frozenset) -> bool:
    if not custom:
        return False
    names = {node.get("class_name"), str(node.get("registered_name") or "").split(">")[-1]}
    if node.get("class_name") == "function" and isinstance(node.get("config"), str):
        names.add(node["config"])  # a custom activation function, by name
    return bool(names & custom)


def _check_string(value: str, key: str, custom: frozenset, unknown: list) -> None:
    text = value.strip()
    if text[:1] in ("{", "[") and "class_name" in text:
        unknown.append(f"a configuration hidden in the string '{_shown(key)}'")
        return
    if key.endswith("activation") and value not in ALLOWED_ACTIVATIONS and value not in custom:
        unknown.append(f"activation '{_shown(value, 40)}'")
    for suffix, names in _NAMED_OBJECTS.items():
        if key.endswith(suffix) and value not in names and value not in custom:
            unknown.append(f"{_shown(key)} '{_shown(value, 40)}'")


def _label(node: dict) -> str:
    class_name = _shown(node.get("class_name"))
    inner = node.get("config")
    if class_name in ("function", "__lambda__"):
        named = inner if isinstance(inner, str) else "lambda"
        return f"a Python function '{_shown(named)}'" + (f" from {_shown(node.get('module'))}" if node.get("module") else "")
    name = inner.get("name") if isinstance(inner, dict) else None
    name = name if isinstance(name, str) else node.get("name")
    kind = "layer" if class_name in _LAYERS or class_name in _CODE_CLASSES or name else "object"
    return f"{class_name} {kind} '{_shown(name)}'" if isinstance(name, str) else f"{class_name} {kind}"


def _shown(value: Any, limit: int = 60) -> str:
    """A name from a model file, as one printable line: control and format characters escaped
    (a hostile name must not break the one-line error, nor reach a terminal raw)."""
    text = str(value)[:limit]
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def _listed(items: list[str]) -> str:
    unique = list(dict.fromkeys(items))
    shown = ", ".join(unique[:4]) + (f" and {len(unique) - 4} more" if len(unique) > 4 else "")
    return shown


# -- reading configs within limits ----------------------------------------------------------------
def read_keras_archive(path: Path) -> tuple[Any, Any]:
    """(config.json, metadata.json) of a `.keras` zip, parsed; member counts and sizes are
    checked from the zip's directory before anything is inflated, and the bytes actually read
    are capped as well (a directory entry can lie)."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > MAX_ARCHIVE_MEMBERS:
                raise EdgeclsError(f"{path}: refused: the archive holds {len(members)} files; a Keras model has a handful")
            total = sum(member.file_size for member in members)
            if total > MAX_MODEL_BYTES:
                raise EdgeclsError(f"{path}: refused: the archive inflates to {total / 1024**3:.1f} GB; a TFLite model cannot exceed 2 GB")
            names = {member.filename for member in members}
            config = _read_member(archive, path, "config.json", MAX_CONFIG_BYTES) if "config.json" in names else None
            metadata = _read_member(archive, path, "metadata.json", MAX_METADATA_BYTES) if "metadata.json" in names else {}
    except EdgeclsError:
        raise
    except MemoryError:
        raise EdgeclsError(f"{path}: cannot load Keras model (out of memory reading it)") from None
    except (OSError, ValueError, zipfile.BadZipFile, KeyError, RuntimeError, EOFError, NotImplementedError) as exc:
        raise EdgeclsError(f"{path}: cannot load Keras model ({first_line(exc)})") from None
    return config, metadata


def _read_member(archive: zipfile.ZipFile, path: Path, name: str, limit: int) -> Any:
    info = archive.getinfo(name)
    if info.file_size > limit:
        raise EdgeclsError(f"{path}: refused: {name} inflates to {info.file_size / 1024**2:.0f} MB (at most {limit // 1024**2} MB)")
    with archive.open(info) as member:
        data = member.read(limit + 1)
    if len(data) > limit:
        raise EdgeclsError(f"{path}: refused: {name} inflates to more than {limit // 1024**2} MB")
    return _parse_json(data, path, name)


def _parse_json(data: bytes | str, path: Path, what: str) -> Any:
    try:
        return json.loads(data)
    except RecursionError:
        raise EdgeclsError(f"{path}: refused: {what} nests too deeply") from None
    except MemoryError:
        raise EdgeclsError(f"{path}: cannot load Keras model (out of memory parsing {what})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise EdgeclsError(f"{path}: cannot load Keras model (unreadable {what}: {first_line(exc)})") from None


def read_h5_config(path: Path) -> tuple[Any, str | None]:
    """(model_config, keras_version) of a legacy `.h5`, the attribute's size checked before it is read;
    model_config is None for a weights-only file."""
    import h5py

    try:
        with h5py.File(path, "r") as file:
            if "model_config" not in file.attrs:
                return None, None
            attr = file.attrs.get_id("model_config")
            size = attr.get_storage_size() if attr.dtype.kind != "O" else os.path.getsize(path)
            if size > MAX_CONFIG_BYTES:
                raise EdgeclsError(f"{path}: refused: its model_config is {size / 1024**2:.0f} MB (at most {MAX_CONFIG_BYTES // 1024**2} MB)")
            raw = file.attrs["model_config"]
            version = file.attrs.get("keras_version")
    except EdgeclsError:
        raise
    except MemoryError:
        raise EdgeclsError(f"{path}: cannot load Keras model (out of memory reading it)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EdgeclsError(f"{path}: cannot read HDF5 model ({first_line(exc)})") from None
    raw = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    version = version.decode("utf-8", "replace") if isinstance(version, bytes) else (str(version) if version is not None else None)
    return _parse_json(raw, path, "model_config"), version


# -- SavedModel -----------------------------------------------------------------------------------
# Side-effect-free ops: tensors in, tensors out, variables read and assigned in memory. No op that
# reads or writes files, prints, logs summaries, writes datasets, runs Python, or loops (a loop
# can be built never to end; no image classifier needs one).
SAFE_OPS = {
    # plumbing and variables
    "Const", "Identity", "IdentityN", "NoOp", "Placeholder", "PlaceholderWithDefault", "StopGradient",
    "PreventGradient", "StatefulPartitionedCall", "PartitionedCall", "If", "StatelessIf", "VarHandleOp",
    "ReadVariableOp", "AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp", "VarIsInitializedOp",
    "Cast", "Bitcast", "Shape", "ShapeN", "Size", "Rank", "Fill", "ZerosLike", "OnesLike", "EnsureShape",
    "CheckNumerics", "Assert",
    # arithmetic
    "Add", "AddV2", "AddN", "Sub", "Mul", "MulNoNan", "Div", "DivNoNan", "RealDiv", "FloorDiv", "FloorMod",
    "TruncateDiv", "Maximum", "Minimum", "Neg", "Abs", "Square", "Sqrt", "Rsqrt", "Exp", "Log", "Log1p", "Pow",
    "Reciprocal", "Inv", "Sign", "Floor", "Ceil", "Round", "Rint", "Tanh", "Sigmoid", "Erf", "Erfc",
    "SquaredDifference", "Sin", "Cos", "ClipByValue", "Cumsum", "L2Loss",
    # neural-network ops
    "Relu", "Relu6", "Elu", "Selu", "LeakyRelu", "Softplus", "Softsign", "Softmax", "LogSoftmax",
    "MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum", "BiasAdd", "Conv2D", "Conv3D",
    "Conv2DBackpropInput", "Conv3DBackpropInputV2", "DepthwiseConv2dNative", "MaxPool", "MaxPoolV2", "MaxPool3D",
    "AvgPool", "AvgPool3D", "FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3", "LRN",
    "FakeQuantWithMinMaxVars", "FakeQuantWithMinMaxVarsPerChannel", "FakeQuantWithMinMaxArgs",
    # reductions, comparisons, shapes
    "Mean", "Sum", "Max", "Min", "Prod", "ArgMax", "ArgMin", "All", "Any", "TopKV2", "OneHot",
    "Equal", "NotEqual", "Greater", "GreaterEqual", "Less", "LessEqual", "LogicalAnd", "LogicalOr", "LogicalNot",
    "IsNan", "IsInf", "IsFinite", "Select", "SelectV2", "Reshape", "Squeeze", "ExpandDims", "Transpose",
    "ConcatV2", "Concat", "Pack", "Unpack", "Split", "SplitV", "Slice", "StridedSlice", "Pad", "PadV2",
    "MirrorPad", "Tile", "Gather", "GatherV2", "GatherNd", "Range", "BroadcastTo", "BroadcastArgs", "Reverse",
    "ReverseV2",
    # images and the augmentation layers (the identity at inference, but traced into the graph)
    "ResizeBilinear", "ResizeNearestNeighbor", "ResizeBicubic", "ResizeArea", "CropAndResize",
    "AdjustContrastv2", "AdjustHue", "AdjustSaturation", "RGBToHSV", "HSVToRGB", "ImageProjectiveTransformV3",
    "RandomUniform", "RandomUniformInt", "RandomStandardNormal", "TruncatedNormal", "StatelessRandomUniformV2",
    "StatelessRandomUniformIntV2", "StatelessRandomNormalV2", "StatelessTruncatedNormalV2", "StatelessRandomGetKeyCounter",
    "StatelessRandomGetAlg", "StatelessRandomGetKeyCounterAlg", "StatelessRandomUniform", "StatelessRandomNormal",
    "RngReadAndSkip",
}  # fmt: skip
# The checkpoint plumbing tf.saved_model.save writes into every SavedModel: `__traced_save` and
# `__traced_restore`, the functions behind the MetaGraph's saver_def. They read and write the
# checkpoint files by design, so their IO ops are accepted there and nowhere else. Loading never
# runs them (TensorFlow 2 restores variables with its own Python-built reader, not the saved
# graph's saver), so a hostile copy of them stays inert; a function anything else calls is held
# to SAFE_OPS.
CHECKPOINT_OPS = {"SaveV2", "RestoreV2", "MergeV2Checkpoints", "ShardedFilename", "StringJoin", "StaticRegexFullMatch", "DisableCopyOnRead"}


def check_saved_model(path: Path, custom: Iterable[str] = ()) -> None:
    """Refuse a SavedModel folder unless every op in its graphs and in every function of their
    libraries (serving, restore, initialisers, tracked resources, whatever is there) is in
    SAFE_OPS, and its keras_metadata.pb (when present) passes `check_keras_config`."""
    from tensorflow.core.protobuf import saved_model_pb2
    from google.protobuf.message import DecodeError

    pb = path / "saved_model.pb"
    try:
        saved = saved_model_pb2.SavedModel.FromString(pb.read_bytes())
    except MemoryError:
        raise EdgeclsError(f"{path}: cannot load SavedModel (out of memory reading saved_model.pb)") from None
    except (OSError, DecodeError, ValueError, RuntimeError) as exc:
        raise EdgeclsError(f"{path}: cannot load SavedModel (unreadable saved_model.pb: {first_line(exc)})") from None
    if not saved.meta_graphs:
        raise EdgeclsError(f"{path}: cannot load SavedModel (saved_model.pb holds no graph)")
    for meta_graph in saved.meta_graphs:
        _check_meta_graph(meta_graph, path)
    if (path / "keras_metadata.pb").exists():
        check_keras_metadata(path / "keras_metadata.pb", custom)


def _check_meta_graph(meta_graph, path: Path) -> None:
    graph = meta_graph.graph_def
    functions = {function.signature.name: function for function in graph.library.function}
    saver_nodes = {name.split(":")[0] for name in (meta_graph.saver_def.save_tensor_name, meta_graph.saver_def.restore_op_name) if name}
    saver = _closure({name for node in graph.node if node.name in saver_nodes for name in _called(node)}, functions)
    roots = {name for node in graph.node if node.name not in saver_nodes for name in _called(node)}
    roots |= set(functions) - saver
    roots |= set(meta_graph.object_graph_def.concrete_functions)
    for obj in meta_graph.object_graph_def.nodes:
        kind = obj.WhichOneof("kind")
        if kind == "function":
            roots |= set(obj.function.concrete_functions)
        elif kind == "bare_concrete_function":
            roots.add(obj.bare_concrete_function.concrete_function_name)
    held = _closure(roots, functions)  # everything loading or serving may run
    cycle = _calls_itself(functions)
    if cycle:
        raise EdgeclsError(f"{path}: refused: the SavedModel's function '{_shown(cycle)}' calls itself (a recursion can be built never to end)")
    refused: dict[str, set[str]] = {}
    for node in graph.node:
        allowed = SAFE_OPS | (CHECKPOINT_OPS if node.name in saver_nodes else set())
        if node.op not in allowed:
            refused.setdefault(node.op, set()).add("the graph")
    for name, function in functions.items():
        allowed = SAFE_OPS if name in held else SAFE_OPS | CHECKPOINT_OPS
        for node in function.node_def:
            if node.op not in allowed:
                refused.setdefault(node.op, set()).add(name)
    if refused:
        ops = [_shown(op) for op in sorted(refused)]
        where = sorted({_shown(place) for op in refused for place in refused[op]})
        raise EdgeclsError(
            f"{path}: refused: the SavedModel uses {', '.join(ops[:8])}{' and more' if len(ops) > 8 else ''} "
            f"(in {', '.join(where[:3])}{', ...' if len(where) > 3 else ''}), not among the side-effect-free ops "
            "edgecls runs (no file, print, debug, summary, dataset-writer, Python or loop ops)"
        )


def _called(node) -> Iterable[str]:
    """The functions a node refers to in its attributes (calls, branches, loop bodies)."""
    for value in node.attr.values():
        if value.HasField("func"):
            yield value.func.name
        for function in value.list.func:
            yield function.name


def _calls_itself(functions: Mapping) -> str | None:
    """A function that reaches itself through calls, if any."""
    from edgecls.core.keras_graph import node_on_a_cycle

    calls = {name: {called for node in function.node_def for called in _called(node) if called in functions}
             for name, function in functions.items()}  # fmt: skip
    return node_on_a_cycle(calls)


def _closure(names: set[str], functions: Mapping) -> set[str]:
    seen: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        pending.extend(called for node in functions[name].node_def for called in _called(node))
    return seen


def check_keras_metadata(path: Path, custom: Iterable[str] = ()) -> None:
    """Every node of a SavedModel's keras_metadata.pb (read with tf_keras' own proto class; each
    node's metadata is JSON) through `check_keras_config`."""
    from google.protobuf.message import DecodeError

    try:
        from tf_keras.protobuf import saved_metadata_pb2
    except ImportError:  # pragma: no cover - tf_keras is a dependency
        raise EdgeclsError("reading a SavedModel's Keras metadata needs tf_keras: pip install tf_keras") from None
    try:
        if path.stat().st_size > MAX_MODEL_BYTES:
            raise EdgeclsError(f"{path}: refused: {path.stat().st_size / 1024**3:.1f} GB of Keras metadata")
        metadata = saved_metadata_pb2.SavedMetadata.FromString(path.read_bytes())
    except EdgeclsError:
        raise
    except MemoryError:
        raise EdgeclsError(f"{path}: cannot load the SavedModel's Keras model (out of memory reading its metadata)") from None
    except (OSError, DecodeError, ValueError, RuntimeError) as exc:
        raise EdgeclsError(f"{path}: cannot load the SavedModel's Keras model (unreadable metadata: {first_line(exc)})") from None
    for node in metadata.nodes:
        if len(node.metadata) > MAX_CONFIG_BYTES:
            raise EdgeclsError(f"{path.parent}: refused: Keras metadata node '{_shown(node.node_path)}' holds {len(node.metadata) / 1024**2:.0f} MB")
        check_keras_config(_parse_json(node.metadata, path.parent, f"Keras metadata of {_shown(node.node_path)}"), path.parent, custom)


# -- the user's own code ----------------------------------------------------------------------------
def load_custom_objects(source: Any) -> dict[str, Any]:
    """The classes and functions a user hands over for their model's custom layers: a `.py` file
    (imported, which runs it: the user's explicit choice) or a mapping of name -> object."""
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return {str(name): value for name, value in source.items()}
    path = Path(os.fspath(source))
    if path.suffix != ".py" or not path.is_file():
        raise EdgeclsError(f"{path}: `custom_objects` takes a Python file (.py) defining the model's custom layers", fields="custom_objects")
    name = "edgecls_custom_objects_" + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise EdgeclsError(f"{path}: cannot import it as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's code: any failure is theirs, in one line
        sys.modules.pop(name, None)
        raise EdgeclsError(f"{path}: importing it failed ({type(exc).__name__}: {first_line(exc)})") from None
    objects = {key: value for key, value in vars(module).items()
               if not key.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))
               and getattr(value, "__module__", None) == name}  # fmt: skip
    if not objects:
        raise EdgeclsError(f"{path}: defines no classes or functions to use as custom objects")
    return objects


# -- calls into an imported graph ---------------------------------------------------------------------
def bounded_call(function: Callable[[], Any], what: str, seconds: float | None = None) -> Any:
    """`function()` in a helper thread, waited for at most `seconds`; its run-time failures
    (a failed assertion, an allocation too big, a timeout) become one EdgeclsError line. A call
    that overruns is abandoned: TensorFlow cannot stop a running graph, so the thread is left to
    end with the process."""
    seconds = MODEL_CALL_SECONDS if seconds is None else seconds
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = function()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="edgecls-model-call", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise EdgeclsError(f"{what}: refused: one call into the model ran longer than {seconds:g} s")
    error = outcome.get("error")
    if error is None:
        return outcome.get("value")
    if isinstance(error, EdgeclsError):
        raise error
    if isinstance(error, MemoryError):
        raise EdgeclsError(f"{what}: the model ran out of memory") from None
    if isinstance(error, Exception):
        raise EdgeclsError(f"{what}: the model failed when run ({type(error).__name__}: {_runtime_message(error)})") from None
    raise error


def _runtime_message(error: Exception) -> str:
    """The line of a TensorFlow run-time error that says what went wrong: its message opens
    with "Graph execution error:" and a node's whereabouts, and ends with hints."""
    lines = [line.strip() for line in str(getattr(error, "message", None) or error).splitlines()]
    boilerplate = ("Graph execution error", "Detected at node", "<stack traces", "[[", "Hint:", "[Op:", "(most recent call")
    useful = [line for line in lines if line and not line.startswith(boilerplate)]
    return (useful[0] if useful else first_line(error))[:200]

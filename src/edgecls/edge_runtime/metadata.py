"""Labels, input size, normalisation and provenance, stored inside the `.tflite` file itself.

TFLite models have a `metadata` list in their flatbuffer (name -> buffer). edgecls stores one
JSON document there under METADATA_NAME, so a device needs only the model file, and writes the
standard TFLite Model Metadata beside it (standard_metadata.py) for MediaPipe Tasks and Android.
Reading uses the small `flatbuffers` runtime directly (no TensorFlow), so it works with any
interpreter package; writing uses the TFLite schema's object API.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

from flatbuffers import encode, number_types, table

from edgecls.errors import EdgeclsError, first_line

METADATA_NAME = "edgecls_metadata"
SCHEMA_VERSION = 1
TFLITE_IDENTIFIER = b"TFL3"

# Field slots of the TFLite schema (tensorflow/compiler/mlir/lite/schema/schema.fbs):
# vtable offset = 4 + 2 * field index.
_MODEL_SUBGRAPHS = 4 + 2 * 2
_MODEL_BUFFERS = 4 + 2 * 4
_MODEL_METADATA = 4 + 2 * 6
_METADATA_NAME = 4 + 2 * 0
_METADATA_BUFFER = 4 + 2 * 1
_BUFFER_DATA = 4 + 2 * 0
_BUFFER_OFFSET = 4 + 2 * 1
_BUFFER_SIZE = 4 + 2 * 2


@dataclass
class ModelMetadata:
    """What a device needs to run a classifier and a reader needs to trust it."""

    labels: list[str]
    input_size: tuple[int, int]  # (height, width)
    channels: int = 3
    # The model's float input is (pixel - mean) / std, per channel; pixels are 0..255.
    mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    std: list[float] = field(default_factory=lambda: [255.0, 255.0, 255.0])
    output: str = "probabilities"  # or "logits": the runtime applies softmax
    name: str = ""
    dataset: str = ""
    quantization: str = ""
    created: str = ""
    edgecls_version: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    # Applied by the device to the scores (calibration.apply_temperature), fitted on held-out data.
    temperature: float = 1.0
    # Named sets of labels read together, e.g. {"malignant": ["akiec", "bcc", "mel"]}: the device
    # reports each group's probability (the sum of its members').
    groups: dict[str, list[str]] = field(default_factory=dict)
    # A group's decision threshold chosen on validation data: {"group": "malignant", "threshold":
    # 0.21, "target_sensitivity": 0.9, ...}; the device flags images at or above it.
    operating_point: dict[str, Any] = field(default_factory=dict)
    # The name of a second output tensor holding the logits (the softmax's input) of a quantized
    # model: the device computes the probabilities from it, with no 1/256 steps; other runtimes
    # read the first output, the probabilities (convert.retype_io.add_logits_output).
    logits_output: str = ""

    def to_json(self) -> str:
        doc = dataclasses.asdict(self)
        doc["input_size"] = list(self.input_size)
        doc["schema_version"] = SCHEMA_VERSION
        return json.dumps(doc, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> "ModelMetadata":
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise ValueError(f"expected a JSON object, got a JSON {type(doc).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in doc.items() if k in known}
        if not isinstance(kwargs.get("labels"), list) or not isinstance(kwargs.get("input_size"), list):
            raise ValueError("'labels' and 'input_size' must both be lists")
        kwargs["input_size"] = tuple(int(v) for v in kwargs["input_size"])
        kwargs["labels"] = [str(label) for label in kwargs["labels"]]
        meta = cls(**kwargs)
        meta.check()
        return meta

    def check(self) -> None:
        """Raise ValueError for values no model can use (what a hand-edited or damaged file has)."""
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise ValueError(f"input_size must be [height, width], got {list(self.input_size)}")
        if type(self.channels) is not int or self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels!r}")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if (
                not isinstance(values, list)
                or len(values) not in (1, self.channels)
                or not all(type(v) in (int, float) and math.isfinite(v) for v in values)
            ):
                raise ValueError(f"{name} must be 1 or {self.channels} finite numbers, got {values!r:.80}")
        if 0 in self.std:
            raise ValueError(f"std must not contain 0, got {self.std}")
        if self.output not in ("probabilities", "logits"):
            raise ValueError(f"output must be 'probabilities' or 'logits', got {self.output!r:.40}")
        for name in ("metrics", "provenance", "groups", "operating_point"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} must be a JSON object")
        if not isinstance(self.logits_output, str):
            raise ValueError(f"logits_output must be a tensor name, got {self.logits_output!r:.40}")
        if type(self.temperature) not in (int, float) or not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be a positive number, got {self.temperature!r:.40}")
        for group, members in self.groups.items():
            if not isinstance(members, list) or not members or not set(members) <= set(self.labels):
                raise ValueError(f"group {group!r:.40} must list some of the model's labels, got {members!r:.80}")
        if self.operating_point:
            point = self.operating_point
            threshold = point.get("threshold")
            if point.get("group") not in self.groups or type(threshold) not in (int, float) or not 0 <= threshold <= 1:
                raise ValueError(f"operating_point must name a group and a threshold in [0, 1], got {point!r:.80}")


def is_tflite(model_bytes: bytes) -> bool:
    return len(model_bytes) >= 8 and bytes(model_bytes[4:8]) == TFLITE_IDENTIFIER


def subgraph_count(model_bytes: bytes) -> int:
    """How many subgraphs the flatbuffer lists; 0 when it cannot be read (a damaged file)."""
    if not is_tflite(model_bytes):
        return 0
    buf = memoryview(model_bytes)
    try:
        model = table.Table(buf, encode.Get(number_types.UOffsetTFlags.packer_type, buf, 0))
        offset = model.Offset(_MODEL_SUBGRAPHS)
        return model.VectorLen(offset) if offset else 0
    except (IndexError, ValueError, TypeError, struct.error, OverflowError):
        return 0


def read_metadata_entries(model_bytes: bytes) -> dict[str, bytes]:
    """All metadata entries of a TFLite flatbuffer, name -> raw bytes."""
    if not is_tflite(model_bytes):
        raise EdgeclsError("not a TFLite model (no TFL3 identifier)")
    buf = memoryview(model_bytes)
    try:
        root = encode.Get(number_types.UOffsetTFlags.packer_type, buf, 0)
        model = table.Table(buf, root)
        entries: dict[str, bytes] = {}
        meta_off = model.Offset(_MODEL_METADATA)
        buffers_off = model.Offset(_MODEL_BUFFERS)
        if not meta_off or not buffers_off:
            return entries
        meta_vec, meta_len = model.Vector(meta_off), model.VectorLen(meta_off)
        buf_vec, buf_len = model.Vector(buffers_off), model.VectorLen(buffers_off)
        for i in range(meta_len):
            meta = table.Table(buf, model.Indirect(meta_vec + 4 * i))
            name_off = meta.Offset(_METADATA_NAME)
            index_off = meta.Offset(_METADATA_BUFFER)
            if not name_off or not index_off:
                continue
            name = meta.String(meta.Pos + name_off).decode("utf-8", "replace")
            index = meta.Get(number_types.Uint32Flags, meta.Pos + index_off)
            if index < buf_len:
                entries[name] = _buffer_bytes(model_bytes, model, table.Table(buf, model.Indirect(buf_vec + 4 * index)))
        return entries
    except (IndexError, ValueError, UnicodeDecodeError, TypeError, struct.error, OverflowError) as exc:
        # struct.error: an offset pointing outside the file (a truncated or damaged copy).
        raise EdgeclsError(f"corrupt TFLite flatbuffer ({exc})") from None


def _buffer_bytes(model_bytes: bytes, model: table.Table, buffer: table.Table) -> bytes:
    data_off = buffer.Offset(_BUFFER_DATA)
    if data_off:
        start, length = buffer.Vector(data_off), buffer.VectorLen(data_off)
        return bytes(model_bytes[start : start + length])
    # Large models keep buffers after the flatbuffer, addressed by offset and size.
    off, size = buffer.Offset(_BUFFER_OFFSET), buffer.Offset(_BUFFER_SIZE)
    if off and size:
        start = buffer.Get(number_types.Uint64Flags, buffer.Pos + off)
        length = buffer.Get(number_types.Uint64Flags, buffer.Pos + size)
        return bytes(model_bytes[start : start + length])
    return b""


def read_metadata(model_bytes: bytes) -> ModelMetadata | None:
    """The edgecls metadata of a model, or None when it has none."""
    raw = read_metadata_entries(model_bytes).get(METADATA_NAME)
    if raw is None:
        return None
    try:
        return ModelMetadata.from_json(raw)
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:
        raise EdgeclsError(f"model metadata '{METADATA_NAME}' is unreadable ({first_line(exc)})") from None


def write_metadata(model_bytes: bytes, metadata: ModelMetadata) -> bytes:
    """Return a copy of the model with `metadata` embedded twice over: edgecls's JSON entry, and
    the standard TFLite Model Metadata with its label file (standard_metadata.py), so MediaPipe
    Tasks and Android's tools read the same labels and normalisation. Earlier entries of either
    kind, and an earlier appended label archive, are replaced."""
    import numpy as np

    from edgecls.edge_runtime.standard_metadata import STANDARD_METADATA_NAME, append_associated_files, build_standard_metadata

    schema = tflite_schema()
    # Unpacking and packing again drops whatever was appended after the flatbuffer (an earlier
    # label archive), so the archive written below is the only one.
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    subgraph = model.subgraphs[0]
    standard, files = build_standard_metadata(
        metadata, subgraph.tensors[subgraph.inputs[0]].type, subgraph.tensors[subgraph.outputs[0]].type
    )
    entries = {METADATA_NAME: metadata.to_json().encode("utf-8"), STANDARD_METADATA_NAME: standard}
    model.metadata = [m for m in (model.metadata or []) if _name(m.name) not in entries]
    _drop_unused_buffers(model)  # the replaced entries' payloads: rewriting must not grow the file
    for name, payload in entries.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(payload, dtype=np.uint8)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = name
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    return append_associated_files(pack_model(model, len(model_bytes) + sum(map(len, entries.values()))), files)


def _drop_unused_buffers(model) -> None:
    """Remove buffers nothing refers to (no tensor, metadata entry or legacy metadata_buffer),
    renumbering the references; buffer 0, the empty sentinel, stays."""
    buffers = list(model.buffers or [])
    tensors = [t for subgraph in model.subgraphs or [] for t in subgraph.tensors or []]
    legacy = [int(i) for i in (model.metadataBuffer if model.metadataBuffer is not None else [])]
    used = {0, *(t.buffer for t in tensors), *(m.buffer for m in model.metadata or []), *legacy}
    kept = [i for i in range(len(buffers)) if i in used]
    new_index = {old: new for new, old in enumerate(kept)}
    model.buffers = [buffers[i] for i in kept]
    for tensor in tensors:
        tensor.buffer = new_index[tensor.buffer]
    for entry in model.metadata or []:
        entry.buffer = new_index[entry.buffer]
    if legacy:
        model.metadataBuffer = [new_index[i] for i in legacy]


def read_standard_metadata(model_bytes: bytes):
    """The standard TFLite Model Metadata of a model (a StandardMetadata), or None without it."""
    from edgecls.edge_runtime.standard_metadata import STANDARD_METADATA_NAME
    from edgecls.edge_runtime.standard_metadata import read_standard_metadata as parse

    raw = read_metadata_entries(model_bytes).get(STANDARD_METADATA_NAME)
    if raw is None:
        return None
    try:
        return parse(raw, model_bytes)
    except ValueError as exc:
        raise EdgeclsError(f"model metadata '{STANDARD_METADATA_NAME}' is unreadable ({exc})") from None


def _name(value: str | bytes | None) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else (value or "")


def pack_model(model, size_hint: int = 0) -> bytes:
    """A `tflite_schema().ModelT` (unpacked with `ModelT.InitFromPackedBuf`, then edited) back to
    `.tflite` bytes. Whatever was appended after the flatbuffer (a label archive) is not kept."""
    import flatbuffers

    builder = flatbuffers.Builder(size_hint + 1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def builtin_code(operator_code) -> int:
    """An `OperatorCodeT`'s builtin operator: newer schemas moved codes > 127 to `builtinCode` and
    kept the old field for old readers; whichever is set is the larger."""
    return max(operator_code.builtinCode, operator_code.deprecatedBuiltinCode)


def tflite_schema():
    """The TFLite flatbuffer schema's object API (ModelT, BufferT...), as LiteRT ships it.

    Only writing metadata and checking a converted file's ops need it, both on the workstation,
    where ai-edge-litert is installed with edgecls; reading metadata does not.
    """
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        raise EdgeclsError("editing or checking a .tflite file needs the ai-edge-litert package: pip install ai-edge-litert") from None
    return schema_py_generated

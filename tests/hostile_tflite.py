"""Hostile `.tflite` files and archives, built by the tests themselves (nothing binary is committed).

- `loop_tflite(iterations)`: a 16x16 RGB "classifier" whose graph holds a tf.while_loop; with
  `iterations=None` its condition never turns false (the loop runs forever).
- `with_operator_code(model, code, custom)`: a copy whose first operator code is replaced.
- `labels_zip_bomb(count, size)`: a zip of `count` deflated members of `size` zero bytes each,
  made from one compressed chunk (so a 3 GB archive costs the test milliseconds).
- `tflite_metadata_only(model, archive)`: a model carrying only the standard TFLite metadata
  (no edgecls entry, so `classify` reads the appended archive too), with `archive` appended.
"""

from __future__ import annotations

import os
import struct
import zlib

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from edgecls.edge_runtime.metadata import ModelMetadata, pack_model, tflite_schema, write_metadata

LOOP_LABELS = ["a", "b", "c"]


def loop_tflite(iterations: int | None, size: int = 16) -> bytes:
    """A model with a WHILE op: `iterations` rounds of a loop before the softmax, or an endless
    loop (`None`). The loop's bounds depend on the input, so the converter cannot fold it away."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32)])
    def classify(image):
        peak = tf.reduce_max(image)  # 0..1 for any image
        start = tf.cast(peak * 0.0, tf.int32)
        if iterations is None:
            # peak >= 0 > -1 for every image, and multiplying by 1 keeps it there: never false.
            _, peak = tf.while_loop(lambda i, v: v > -1.0, lambda i, v: (i + 1, v * 1.0), [start, peak])
        else:
            _, peak = tf.while_loop(lambda i, v: i < iterations, lambda i, v: (i + 1, v * 1.0), [start, peak])
        return tf.nn.softmax(tf.reduce_mean(image, axis=[1, 2]) + peak * 0.0)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([classify.get_concrete_function()], classify)
    raw = converter.convert()
    meta = ModelMetadata(labels=list(LOOP_LABELS), input_size=(size, size), name="loop-test")
    return write_metadata(raw, meta)


def with_operator_code(model_bytes: bytes, builtin: int, custom: str | None = None) -> bytes:
    schema = tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    code = model.operatorCodes[0]
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.customCode = custom
    return pack_model(model, len(model_bytes))


def labels_zip_bomb(count: int, size: int) -> bytes:
    """A zip archive of `count` members `labels_<i>.txt`, each `size` zero bytes deflated."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b"\0" * (1 << 20)
    data = b"".join(compressor.compress(chunk) for _ in range(size >> 20)) + compressor.compress(b"\0" * (size & ((1 << 20) - 1)))
    data += compressor.flush()
    crc = 0
    for _ in range(size >> 20):
        crc = zlib.crc32(chunk, crc)
    crc = zlib.crc32(b"\0" * (size & ((1 << 20) - 1)), crc)
    local, central = bytearray(), bytearray()
    for i in range(count):
        name = f"labels_{i}.txt".encode()
        offset = len(local)
        local += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data), size, len(name), 0) + name + data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(data), size, len(name),
                               0, 0, 0, 0, 0, offset) + name  # fmt: skip
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(central), len(local), 0)
    return bytes(local + central + end)


def tflite_metadata_only(model_bytes: bytes, archive: bytes) -> bytes:
    """`model_bytes` (with edgecls metadata) keeping only its TFLITE_METADATA entry, `archive`
    appended where the label file's archive was."""
    from edgecls.edge_runtime.metadata import METADATA_NAME, read_metadata_entries

    assert METADATA_NAME in read_metadata_entries(model_bytes)
    schema = tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    model.metadata = [m for m in model.metadata if m.name not in (METADATA_NAME, METADATA_NAME.encode())]
    return pack_model(model, len(model_bytes)) + archive

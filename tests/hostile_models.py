"""Hostile model files, built on the spot (nothing committed as a binary): each one that would run
code writes `marker` when it does, so a test can assert that it never ran.

Each builder returns the path of a model a user could be handed; the payloads are live: loading
them without edgecls' checks writes the marker (test_untrusted_models checks that too, so a
payload that stopped working would show).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

SIZE = 16


def _tf():
    from edgecls.core.tf_env import import_tf

    return import_tf()


def tf_keras_cnn(classes: int = 4):
    _, tf_keras = _tf()
    inputs = tf_keras.Input((SIZE, SIZE, 3), name="image")
    x = tf_keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = tf_keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = tf_keras.layers.Dense(classes, activation="softmax", name="scores")(x)
    return tf_keras.Model(inputs, outputs, name="cnn")


def _rewrite_config(path: Path, edit) -> Path:
    """A `.keras` zip with its config.json replaced by edit(config)."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["config.json"] = json.dumps(edit(json.loads(members["config.json"]))).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def tfop_lambda_keras(folder: Path, marker: Path) -> Path:
    """A tf_keras `.keras` whose extra TFOpLambda layer calls tf.print into the file `marker`
    while the model is rebuilt (a constant input makes the call run there and then, eagerly)."""
    path = folder / "tfoplambda.keras"
    tf_keras_cnn().save(path)

    def edit(config):
        config["config"]["layers"].append({
            "module": "tf_keras.src.layers.core.tf_op_layer", "class_name": "TFOpLambda", "registered_name": None,
            "name": "tf.print",
            "config": {"name": "tf.print", "trainable": True, "dtype": "float32", "function": "print"},
            "inbound_nodes": [[["_CONSTANT_VALUE", -1, "ran", {"output_stream": f"file://{marker}"}]]],
        })  # fmt: skip
        return config

    return _rewrite_config(path, edit)


def _marker_lambda(marker: Path):
    # The marker's path is a constant of the lambda's own bytecode, which Keras marshals.
    return eval(f"lambda t: __import__('pathlib').Path({str(marker)!r}).write_text('ran') and t")  # noqa: S307


def lambda_keras(folder: Path, marker: Path) -> Path:
    """A tf_keras `.keras` with a plain Lambda layer that writes the marker when called."""
    _, tf_keras = _tf()
    inputs = tf_keras.Input((SIZE, SIZE, 3), name="image")
    x = tf_keras.layers.Lambda(_marker_lambda(marker), name="scale")(inputs)
    x = tf_keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = tf_keras.layers.Dense(4, activation="softmax", name="scores")(x)
    marker.unlink(missing_ok=True)  # tracing it above ran it once
    path = folder / "lambda.keras"
    tf_keras.Model(inputs, outputs).save(path)
    marker.unlink(missing_ok=True)
    return path


def escaped_lambda_saved_model(folder: Path, marker: Path) -> Path:
    """A tf_keras SavedModel with a Lambda layer whose class name in keras_metadata.pb is
    written with a JSON escape, "L\\u0061mbda": the same JSON, other bytes."""
    from tf_keras.protobuf import saved_metadata_pb2

    _, tf_keras = _tf()
    inputs = tf_keras.Input((SIZE, SIZE, 3), name="image")
    x = tf_keras.layers.Lambda(_marker_lambda(marker), name="scale")(inputs)
    x = tf_keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = tf_keras.layers.Dense(4, activation="softmax", name="scores")(x)
    path = folder / "escaped_savedmodel"
    tf_keras.Model(inputs, outputs).save(str(path))
    marker.unlink(missing_ok=True)
    metadata = saved_metadata_pb2.SavedMetadata.FromString((path / "keras_metadata.pb").read_bytes())
    for node in metadata.nodes:
        node.metadata = node.metadata.replace('"class_name": "Lambda"', '"class_name": "L\\u0061mbda"')
    assert b'"Lambda"' not in metadata.SerializeToString()
    (path / "keras_metadata.pb").write_bytes(metadata.SerializeToString())
    return path


def _save_module(module, path: Path, serving) -> Path:
    tf, _ = _tf()
    tf.saved_model.save(module, str(path), signatures={"serving_default": serving})
    return path


def resource_saved_model(folder: Path, marker: Path) -> Path:
    """A SavedModel whose tracked resource's creator writes the marker: it runs at
    tf.saved_model.load, before any signature is called."""
    tf, _ = _tf()

    class Writer(tf.saved_model.experimental.TrackableResource):
        def _create_resource(self):
            tf.io.write_file(str(marker), "ran")
            return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="")

        def _initialize(self):
            tf.io.write_file(str(marker), "ran")

    module = tf.Module()
    module.writer = Writer()
    module.w = tf.Variable(tf.ones((3, 4)))

    @tf.function(input_signature=[tf.TensorSpec((None, SIZE, SIZE, 3), tf.float32)])
    def serve(x):
        return {"scores": tf.nn.softmax(tf.reduce_mean(x, axis=(1, 2)) @ module.w)}

    module.serve = serve
    path = _save_module(module, folder / "resource_savedmodel", serve)
    marker.unlink(missing_ok=True)  # creating it above ran it
    return path


def serving_saved_model(folder: Path, name: str, body) -> Path:
    """A SavedModel whose serving function is softmax(mean(x) @ w) with `body(x)` (a tensor of
    shape (batch,)) added: what the hostile op does, the classifier around it is ordinary."""
    tf, _ = _tf()
    module = tf.Module()
    module.w = tf.Variable(tf.ones((3, 4)))

    @tf.function(input_signature=[tf.TensorSpec((None, SIZE, SIZE, 3), tf.float32)])
    def serve(x):
        logits = tf.reduce_mean(x, axis=(1, 2)) @ module.w
        return {"scores": tf.nn.softmax(logits + tf.reshape(body(x), (-1, 1)))}

    module.serve = serve
    return _save_module(module, folder / name, serve)


def debug_identity(marker_dir: Path):
    tf, _ = _tf()

    def body(x):
        zero = tf.reduce_sum(x, axis=(1, 2, 3)) * 0.0
        return tf.raw_ops.DebugIdentityV2(input=zero, tfdbg_context_id="x", op_name="x", output_slot=0,
                                          tensor_debug_mode=2, debug_urls=[f"file://{marker_dir}"])  # fmt: skip

    return body


def dataset_writer(marker: Path):
    tf, _ = _tf()

    def body(x):
        zero = tf.reduce_sum(x, axis=(1, 2, 3)) * 0.0
        dataset = tf.data.Dataset.from_tensors(tf.strings.as_string(tf.reduce_sum(zero)))
        tf.raw_ops.DatasetToTFRecord(input_dataset=dataset._variant_tensor, filename=str(marker), compression_type="")
        return zero

    return body


def endless_loop(x):
    tf, _ = _tf()
    zero = tf.reduce_sum(x, axis=(1, 2, 3)) * 0.0
    count = tf.while_loop(lambda i: i < tf.constant(2**62, tf.int64), lambda i: i + 1, [tf.constant(0, tf.int64)])
    return zero + tf.cast(count, tf.float32) * 0.0


def failing_assert(x):
    tf, _ = _tf()
    total = tf.reduce_sum(x, axis=(1, 2, 3))
    with tf.control_dependencies([tf.debugging.Assert(tf.reduce_all(total < -1.0), ["hostile assertion"])]):
        return total * 0.0


def oversized_fill(x):
    tf, _ = _tf()
    total = tf.reduce_sum(x, axis=(1, 2, 3))
    size = tf.cast(tf.reduce_max(total) * 0.0, tf.int64) + 2**40  # depends on the input: nothing folds it early
    return total * 0.0 + tf.reduce_sum(tf.fill(tf.stack([size, 2**20]), 1.0)) * 0.0


def config_bomb(folder: Path, inflated: int, lie: bool = False) -> Path:
    """A `.keras` zip whose config.json inflates to `inflated` bytes (a megabyte or so on disk);
    `lie`: its directory entry claims 100 bytes."""
    path = folder / f"bomb{'-lying' if lie else ''}.keras"
    chunk = b" " * (16 * 1024**2)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "2.21.0"}))
        with archive.open("config.json", "w") as member:
            written = 0
            while written < inflated:
                member.write(chunk[: inflated - written])
                written += len(chunk)
    if lie:
        data = bytearray(path.read_bytes())
        entry = data.index(b"PK\x01\x02")
        while True:  # the central directory entry of config.json; its uncompressed size is at +24
            name_length = int.from_bytes(data[entry + 28 : entry + 30], "little")
            if data[entry + 46 : entry + 46 + name_length] == b"config.json":
                data[entry + 24 : entry + 28] = (100).to_bytes(4, "little")
                break
            entry = data.index(b"PK\x01\x02", entry + 4)
        path.write_bytes(bytes(data))
    return path


CUSTOM_LAYER_SOURCE = '''
"""A user's own layer, and a marker that says this file ran."""
from pathlib import Path

import tf_keras

Path({marker!r}).write_text("imported")


class Scale(tf_keras.layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, inputs):
        return inputs * self.factor

    def get_config(self):
        return {{**super().get_config(), "factor": self.factor}}
'''


def custom_layer_keras(folder: Path, marker: Path) -> tuple[Path, Path]:
    """(a tf_keras `.keras` with the custom layer `Scale`, the .py file defining it)."""
    import importlib.util

    source = folder / "my_layers.py"
    source.write_text(CUSTOM_LAYER_SOURCE.format(marker=str(marker)))
    spec = importlib.util.spec_from_file_location("my_layers", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    marker.unlink()
    _, tf_keras = _tf()
    inputs = tf_keras.Input((SIZE, SIZE, 3), name="image")
    x = module.Scale(0.5, name="half")(inputs)
    x = tf_keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    x = tf_keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = tf_keras.layers.Dense(4, activation="softmax", name="scores")(x)
    path = folder / "custom.keras"
    tf_keras.Model(inputs, outputs).save(path)
    return path, source

"""Loading a user's `.keras`, `.h5` or SavedModel folder, each checked by
`edgecls.core.model_safety` before anything is deserialised (docs/safety.md)."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

from edgecls.convert.keras_import.model import HDF5_SIGNATURE, MAX_SAVED_MODEL_BYTES, MODEL_CLASSES, FloatFunction, ImportedModel
from edgecls.convert.keras_import.normalization import import_function, import_keras_model
from edgecls.core.keras_graph import check_layer_graph
from edgecls.core.model_safety import (
    check_keras_config,
    check_saved_model,
    load_custom_objects,
    read_h5_config,
    read_keras_archive,
)
from edgecls.core.tf_env import import_tf
from edgecls.errors import EdgeclsError, first_line


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
        return import_function(model, path, description, input_range)
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

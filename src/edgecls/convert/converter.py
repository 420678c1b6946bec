"""Keras model -> TFLite bytes, one function per conversion mode's converter settings."""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from typing import Sequence

import numpy as np

from edgecls.convert.options import DYNAMIC, FLOAT16, FLOAT32, FULL_INTEGER_MODES
from edgecls.convert.retype_io import add_logits_output
from edgecls.core.tf_env import import_tf
from edgecls.edge_runtime.normalization import PIXEL_UNIT, InputNormalization
from edgecls.errors import EdgeclsError


def convert_to_tflite(model, mode: str, io_type: str = "uint8", calibration: np.ndarray | None = None,
                      normalization: InputNormalization = PIXEL_UNIT, keep_float: Sequence[str] = ()) -> bytes:  # fmt: skip
    """Convert with the settings of `mode`. Full-integer modes need `calibration`: uint8
    images (N, H, W, 3) that set the activation ranges (for QAT models, those it did not learn),
    fed to the model as `normalization` says. `keep_float`: Keras layer names whose ops stay
    float (post-training int8 only) inside an otherwise int8 file, with QUANTIZE/DEQUANTIZE
    around them."""
    tf, _ = import_tf()
    with _quiet_converter():
        converter = _fixed_batch_converter(tf, model)
    io_dtype = None
    if keep_float and mode not in FULL_INTEGER_MODES:
        raise EdgeclsError(f"`keep_float` applies to full-integer files, not {mode}", fields="keep_float")
    if mode == FLOAT16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == DYNAMIC:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode in FULL_INTEGER_MODES:
        if calibration is None or not len(calibration):
            raise EdgeclsError(f"{mode}: full-integer conversion needs calibration images")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative_dataset(calibration, normalization)
        # Integer kernels only: the converter errors (rather than falls back to float) where
        # an op has no int8 kernel at all; verify.check_ops catches the float islands it keeps.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_dtype = tf.uint8 if io_type == "uint8" else tf.int8
        converter.inference_input_type = io_dtype
        converter.inference_output_type = io_dtype
    elif mode != FLOAT32:
        raise EdgeclsError(f"unknown conversion mode {mode!r}")
    try:
        with _quiet_converter():
            if keep_float:
                model_bytes = _convert_keeping_float(tf, converter, model, keep_float, io_dtype)
            else:
                model_bytes = bytes(converter.convert())
    except EdgeclsError:
        raise
    except Exception as exc:  # ConverterError, RuntimeError (calibration), ValueError
        raise EdgeclsError(f"{mode}: the TFLite converter failed ({converter_error_summary(exc)})") from None
    if mode in FULL_INTEGER_MODES:
        # The quantized softmax reads small probabilities as 0; the runtime reads the logits.
        model_bytes = add_logits_output(model_bytes, required=False)
    return model_bytes


def _convert_keeping_float(tf, converter, model, keep_float: Sequence[str], io_dtype) -> bytes:
    """Post-training int8 with some layers' ops left float: calibrate (what `convert()` does
    first), then quantize with those ops' output tensors denylisted, as TFLite's
    QuantizationDebugger makes its selectively quantized models (`mlir_quantize`)."""
    from tensorflow.lite.python import convert as tflite_convert

    converter._experimental_calibrate_only = True  # noqa: SLF001 - the debugger's documented recipe
    calibrated = converter.convert()
    nodes = float_nodes(calibrated, model, keep_float)
    missing = [name for name in keep_float if not nodes.get(name)]
    if missing:
        raise EdgeclsError(f"`keep_float`: no TFLite op computes {', '.join(missing)} (layers of this model: "
                           f"{', '.join(layer_names(model)[:12])})", fields="keep_float")  # fmt: skip
    return bytes(tflite_convert.mlir_quantize(
        calibrated,
        disable_per_channel=converter._experimental_disable_per_channel,  # noqa: SLF001
        input_data_type=io_dtype,
        output_data_type=io_dtype,
        denylisted_nodes=sorted({node for names in nodes.values() for node in names}),
        disable_per_channel_for_dense_layers=converter._experimental_disable_per_channel_quantization_for_dense_layers,  # noqa: SLF001
    ))  # fmt: skip


def layer_names(model) -> list[str]:
    return [layer.name for layer in model.layers if type(layer).__name__ != "InputLayer"]


def float_nodes(model_bytes: bytes, model, keep_float: Sequence[str]) -> dict[str, list[str]]:
    """Keras layer name -> the output tensor names of the TFLite ops computing it (ops whose
    output name mentions the layer, QAT's "quant_" prefix allowed)."""
    from edgecls.convert.layer_error import name_layers
    from edgecls.edge_runtime.metadata import tflite_schema

    unknown = [name for name in keep_float if name not in layer_names(model)]
    if unknown:
        raise EdgeclsError(f"`keep_float`: no layer named {', '.join(unknown)} in the model (its layers: "
                           f"{', '.join(layer_names(model)[:12])}{', ...' if len(layer_names(model)) > 12 else ''})",
                           fields="keep_float")  # fmt: skip
    known = {name: i for i, name in enumerate(layer_names(model))}
    parsed = tflite_schema().ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    subgraph = parsed.subgraphs[0]
    nodes: dict[str, list[str]] = {name: [] for name in keep_float}
    for op in subgraph.operators or []:
        for index in op.outputs if op.outputs is not None else []:
            tensor_name = _text(subgraph.tensors[index].name)
            for layer, _ in name_layers(tensor_name, known):
                if layer in nodes:
                    nodes[layer].append(tensor_name)
    return nodes


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fixed_batch_converter(tf, model):
    # A batch of exactly 1 is what the device runs, and static shapes let the converter
    # fuse LSTMs and fold the shape arithmetic of reshapes (GroupNormalization) to constants.
    height, width, channels = (int(d) for d in model.inputs[0].shape[1:])
    spec = tf.TensorSpec([1, height, width, channels], tf.float32, name="image")
    function = tf.function(lambda image: model(image, training=False), input_signature=[spec])
    if not _has_recurrent_layers(model):
        # Frozen-graph path: variables become constants. 3-5x faster than the SavedModel path
        # below (tf_keras traces every layer again to save a Keras model) and the same bytes.
        return tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()])
    # RNNs need the SavedModel path: frozen, an LSTM stays a WHILE loop instead of fusing into
    # UNIDIRECTIONAL_SEQUENCE_LSTM. A bare tf.Module holding the variables skips Keras' tracing.
    module = tf.Module()
    module.model_variables = list(model.variables)
    module.serve = function
    return tf.lite.TFLiteConverter.from_concrete_functions([module.serve.get_concrete_function()], module)


def _has_recurrent_layers(model) -> bool:
    from edgecls.convert.keras_model import all_layers

    _, keras = import_tf()
    recurrent = (keras.layers.RNN, keras.layers.Bidirectional)  # LSTM, GRU, SimpleRNN are RNNs
    return any(isinstance(layer, recurrent) for layer in all_layers(model))


def _representative_dataset(images: np.ndarray, normalization: InputNormalization):
    def generate():
        for image in images:
            yield [normalization.apply(image[None])]

    return generate


@contextlib.contextmanager
def _quiet_converter():
    # Silence the converter's Python-side chatter (deprecated-path notice, "statistics for
    # quantized inputs were expected" for QAT models): edgecls reports what matters itself.
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"tensorflow\.lite\..*")
            yield
    finally:
        absl_logger.setLevel(level)


def converter_error_summary(exc: BaseException) -> str:
    """The first `error:` line of a converter message (they run to pages of MLIR locations)."""
    text = str(exc)
    match = re.search(r"error: ([^\n]+)", text)
    line = match.group(1) if match else (text.strip().splitlines() or [type(exc).__name__])[0]
    return line.strip()[:300]

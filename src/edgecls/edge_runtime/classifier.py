"""Run a TFLite image classifier on uint8 images: quantize in, dequantize out, top-k labels."""

from __future__ import annotations

import functools
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecls.edge_runtime import watchdog as _watchdog
from edgecls.edge_runtime.calibration import FLOAT_FLOOR, UNCERTAIN, apply_temperature, group_probability
from edgecls.edge_runtime.interpreter import make_interpreter
from edgecls.edge_runtime.metadata import ModelMetadata, is_tflite, read_metadata
from edgecls.errors import EdgeclsError, first_line

_SUPPORTED_INPUT_TYPES = (np.float32, np.int8, np.uint8)


@dataclass
class Prediction:
    """One image's classification.

    `label`: the top class (or "uncertain" below `min_confidence`); `probability`: its
    probability; `top_k`: [(label, probability), ...], best first; `probabilities`: every class's
    probability, in the model's `labels` order (calibrated by the file's temperature, when it has
    one); `latency_ms`: the model's time for this image (its share of a batch); `groups`: each
    class group's probability, e.g. {"malignant": 0.31}, for models that define groups; `flag`:
    whether the operating-point group's probability reached the model's threshold (None without one).
    """

    label: str
    probability: float
    top_k: list[tuple[str, float]]
    probabilities: np.ndarray = field(repr=False)
    latency_ms: float = 0.0
    groups: dict[str, float] = field(default_factory=dict)  # e.g. {"malignant": 0.31}
    flag: bool | None = None  # the operating point's group probability reached its threshold


def flips(image: np.ndarray) -> tuple[np.ndarray, ...]:
    """The image and its horizontal, vertical and double flips (views: no copies)."""
    return (image, image[:, ::-1], image[::-1], image[::-1, ::-1])


def default_threads() -> int:
    # XNNPACK scales to about 4 threads for models this small; more only adds contention.
    return max(1, min(4, os.cpu_count() or 1))


class TFLiteClassifier:
    """An image classifier in one `.tflite` file, with labels and normalisation from its metadata."""

    def __init__(self, model: str | os.PathLike | bytes, num_threads: int | None = None, *, allow_control_flow: bool = False):
        if isinstance(model, (bytes, bytearray)):
            self.path: Path | None = None
            model_bytes = bytes(model)
        else:
            self.path = Path(model)
            model_bytes = _read_model_file(self.path)
        if not is_tflite(model_bytes):
            raise EdgeclsError(f"{self.path or 'model'}: not a TFLite model (no TFL3 identifier)")
        self.file_size = len(model_bytes)
        self.num_threads = num_threads or default_threads()
        # WHILE/IF/CALL_ONCE: refused unless asked for (ops.check_operators); the batch
        # interpreter of a folder run is built under the same rule.
        self.allow_control_flow = allow_control_flow
        self.interpreter, self.interpreter_package = make_interpreter(model_bytes, self.num_threads, allow_control_flow)
        self._check_signature()
        stored = read_metadata(model_bytes)
        self.has_metadata = stored is not None
        # Kept: the standard TFLite metadata is parsed only when it is needed (no edgecls entry),
        # so a one-image classify of an edgecls file pays nothing for it; and a folder run builds
        # its batch interpreter from the same bytes.
        self.model_bytes = model_bytes
        self.metadata_source = "edgecls" if stored is not None else "none"
        if stored is None:
            stored = self._metadata_from_standard()
        self.metadata = stored or self._default_metadata()
        self._select_output()  # before the warning below: a model it refuses gets one line, not two
        if stored is None:
            warnings.warn(
                f"{self.path or 'model'} has no metadata (neither edgecls nor TFLite): labels are class indices and "
                "inputs are scaled to 0..1",
                stacklevel=2,
            )
        self._validate_metadata()
        self._input_lut = self._make_input_lut()
        self._input_mode = self._fast_input_mode()

    # -- model inspection -------------------------------------------------------------
    def _check_signature(self) -> None:
        try:
            inputs = self.interpreter.get_input_details()
            outputs = self.interpreter.get_output_details()
        except ValueError as exc:  # e.g. a tensor name that is not UTF-8: a damaged file
            raise EdgeclsError(f"the model file is corrupt: cannot read its inputs and outputs ({exc})") from None
        # A second output is allowed when it is the logits beside the probabilities (metadata
        # `logits_output`); _select_output decides once the metadata is read.
        if len(inputs) != 1 or len(outputs) not in (1, 2):
            raise EdgeclsError(
                f"expected an image classifier with 1 input and 1 output, got {len(inputs)} and {len(outputs)}"
            )
        self.input_details, self.output_details = inputs[0], outputs[0]
        self._outputs = outputs
        shape = tuple(int(d) for d in self.input_details["shape"])
        if len(shape) != 4 or shape[0] != 1 or min(shape) < 1 or shape[3] not in (1, 3):
            raise EdgeclsError(f"expected an image input of shape [1, H, W, 1 or 3], got {list(shape)}")
        if self.input_details["dtype"] not in _SUPPORTED_INPUT_TYPES:
            raise EdgeclsError(f"unsupported input type {np.dtype(self.input_details['dtype']).name}")
        out_shape = tuple(int(d) for d in self.output_details["shape"])
        if len(out_shape) != 2 or out_shape[0] != 1 or out_shape[1] < 2:
            raise EdgeclsError(f"expected class scores of shape [1, N>=2], got {list(out_shape)}")
        if self.output_details["dtype"] != np.float32 and not self.output_details["quantization"][0]:
            # Dequantizing with scale 0 would turn every answer into zeros, silently.
            raise EdgeclsError(f"quantized {np.dtype(self.output_details['dtype']).name} output tensor has no scale")
        self.input_shape = shape
        self.num_classes = out_shape[1]

    def _select_output(self) -> None:
        """Read the logits output when the metadata names one (exact small probabilities), else
        the only output."""
        self.reads_logits = self.metadata.output == "logits"
        if len(self._outputs) == 1:
            if self.metadata.logits_output and self.metadata.logits_output != self.output_details["name"]:
                raise EdgeclsError(f"the metadata names a logits output {self.metadata.logits_output!r} the model does not have")
            return
        named = [o for o in self._outputs if o["name"] == self.metadata.logits_output] if self.metadata.logits_output else []
        if not named:
            raise EdgeclsError(
                f"expected an image classifier with 1 input and 1 output (or a second output its metadata names as the logits), "
                f"got 1 and {len(self._outputs)}"
            )
        self.output_details, self.reads_logits = named[0], True
        if tuple(int(d) for d in self.output_details["shape"]) != (1, self.num_classes):
            raise EdgeclsError(f"the logits output has shape {list(self.output_details['shape'])}, not [1, {self.num_classes}]")
        if self.output_details["dtype"] != np.float32 and not self.output_details["quantization"][0]:
            raise EdgeclsError(f"quantized {np.dtype(self.output_details['dtype']).name} logits tensor has no scale")

    def _default_metadata(self) -> ModelMetadata:
        channels = self.input_shape[3]
        return ModelMetadata(
            labels=[str(i) for i in range(self.num_classes)],
            input_size=(self.input_shape[1], self.input_shape[2]),
            channels=channels,
            mean=[0.0] * channels,
            std=[255.0] * channels,
        )

    def _metadata_from_standard(self) -> ModelMetadata | None:
        """Labels and normalisation from the standard TFLite Model Metadata (a model made by
        MediaPipe Model Maker, a TF Hub export), read the way MediaPipe Tasks reads them."""
        standard = self.standard_metadata
        if standard is None:
            return None
        meta = self._default_metadata()
        meta.name, meta.provenance = standard.name, {"metadata": "TFLite Model Metadata", "author": standard.author}
        if standard.labels:
            meta.labels = list(standard.labels)
        dtype, (scale, zero_point) = self.input_details["dtype"], self.input_details["quantization"]
        if dtype == np.uint8 and scale:
            # A uint8 image input is the pixel itself for MediaPipe and the Task Library, whatever
            # the normalisation says (it describes the float model the file was quantized from).
            meta.mean, meta.std = [float(zero_point)] * meta.channels, [1.0 / float(scale)] * meta.channels
        elif standard.mean and standard.std:
            meta.mean, meta.std = list(standard.mean), list(standard.std)
        try:
            meta.check()
        except ValueError as exc:
            raise EdgeclsError(f"the model's TFLite metadata is unusable ({exc})") from None
        self.metadata_source = "tflite"
        return meta

    @functools.cached_property
    def standard_metadata(self):
        """The standard TFLite Model Metadata (a StandardMetadata), or None."""
        from edgecls.edge_runtime.metadata import read_standard_metadata

        return read_standard_metadata(self.model_bytes)

    def _validate_metadata(self) -> None:
        meta = self.metadata
        if len(meta.labels) != self.num_classes:
            raise EdgeclsError(
                f"model metadata lists {len(meta.labels)} labels but the model outputs {self.num_classes} classes"
            )
        if tuple(meta.input_size) != self.input_shape[1:3] or meta.channels != self.input_shape[3]:
            raise EdgeclsError(
                f"model metadata says input {list(meta.input_size)}x{meta.channels} but the tensor is "
                f"{list(self.input_shape[1:])}"
            )

    @property
    def input_size(self) -> tuple[int, int]:
        return self.metadata.input_size

    @property
    def channels(self) -> int:
        return self.metadata.channels

    @property
    def labels(self) -> list[str]:
        return self.metadata.labels

    def _make_input_lut(self) -> np.ndarray:
        """A (channels, 256) table from pixel value to the model's input value.

        Normalising and quantising become one gather per image: no float maths, no
        allocation beyond the input itself.
        """
        channels = self.channels
        mean = np.broadcast_to(np.asarray(self.metadata.mean, np.float64), (channels,))
        std = np.broadcast_to(np.asarray(self.metadata.std, np.float64), (channels,))
        pixels = np.arange(256, dtype=np.float64)
        real = (pixels[None, :] - mean[:, None]) / std[:, None]
        dtype = self.input_details["dtype"]
        if dtype == np.float32:
            return real.astype(np.float32)
        scale, zero_point = self.input_details["quantization"]
        if not scale:
            raise EdgeclsError("quantized input tensor has no scale")
        info = np.iinfo(dtype)
        return np.clip(np.round(real / scale + zero_point), info.min, info.max).astype(dtype)

    def _fast_input_mode(self) -> str:
        """The cheapest operation that reproduces the lookup table exactly, checked on all 256 values.

        "xor": int8 input = pixel - 128 (the DESIGN.md full-int8 convention): flip the top bit of
        the uint8 view, ~10x faster than a gather. "copy": uint8 input = pixel. "affine": float
        input = (pixel - mean) / std in float32 arithmetic, ~4x faster than a gather. "take1": one
        table for all channels, one contiguous gather. "take": a gather per channel.
        """
        lut, pixels = self._input_lut, np.arange(256, dtype=np.uint8)
        if lut.dtype == np.int8 and all(np.array_equal(row.view(np.uint8), pixels ^ 0x80) for row in lut):
            return "xor"
        if lut.dtype == np.uint8 and all(np.array_equal(row, pixels) for row in lut):
            return "copy"
        if not all(np.array_equal(row, lut[0]) for row in lut[1:]):
            return "take"
        if lut.dtype == np.float32 and len(set(self.metadata.mean)) == 1 and len(set(self.metadata.std)) == 1:
            self._affine = (np.float32(self.metadata.mean[0]), np.float32(self.metadata.std[0]))
            with np.errstate(all="ignore"):
                probe = self._apply_affine(pixels, np.empty(256, np.float32))
            if np.isfinite(self._affine).all() and np.array_equal(probe, lut[0]):
                return "affine"
        return "take1"

    def _apply_affine(self, image: np.ndarray, out: np.ndarray) -> np.ndarray:
        mean, std = self._affine
        if mean:
            np.subtract(image, mean, out=out, dtype=np.float32)
            return np.divide(out, std, out=out)
        return np.divide(image, std, out=out, dtype=np.float32)

    # -- inference --------------------------------------------------------------------
    def new_input_buffer(self) -> np.ndarray:
        """A reusable input tensor, so a batch run allocates nothing per image."""
        return np.empty(self.input_shape, dtype=self._input_lut.dtype)

    def to_input(self, image: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Map a uint8 HxWxC image to the model's input tensor (into `out` when given)."""
        if image.shape != (*self.input_size, self.channels) or image.dtype != np.uint8:
            raise EdgeclsError(
                f"image must be uint8 {(*self.input_size, self.channels)}, got {image.dtype} {image.shape}"
            )
        if out is None:
            out = self.new_input_buffer()
        mode = self._input_mode if out.dtype == self._input_lut.dtype else "take"
        if mode == "xor":
            np.bitwise_xor(image, 0x80, out=out[0].view(np.uint8))
        elif mode == "copy":
            np.copyto(out[0], image)
        elif mode == "affine":
            self._apply_affine(image, out[0])
        elif mode == "take1":
            np.take(self._input_lut[0], image, out=out[0])
        else:
            for c in range(self.channels):
                np.take(self._input_lut[c], image[..., c], out=out[0, ..., c])
        return out

    def scores(self, model_input: np.ndarray) -> np.ndarray:
        """Invoke on a prepared input tensor; return class probabilities as float32."""
        watchdog = _watchdog.active  # the CLI's time bound on each invoke, if any
        try:
            self.interpreter.set_tensor(self.input_details["index"], model_input)
            if watchdog is not None:
                watchdog.arm()
            self.interpreter.invoke()
            raw = self.interpreter.get_tensor(self.output_details["index"])[0]
        except (RuntimeError, ValueError) as exc:  # a kernel that refuses this (damaged) model
            raise EdgeclsError(f"the interpreter cannot run this model ({first_line(exc)})") from None
        finally:
            if watchdog is not None:
                watchdog.disarm()
        return self.output_to_probabilities(raw)

    def output_to_probabilities(self, raw: np.ndarray) -> np.ndarray:
        """Rows of the output tensor (one row, or a batch's rows) -> class probabilities as float32
        along the last axis (scores() and batch runs)."""
        if raw.dtype != np.float32:
            scale, zero_point = self.output_details["quantization"]
            raw = (raw.astype(np.float32) - zero_point) * np.float32(scale)
        temperature = self.metadata.temperature
        if self.reads_logits:
            shifted = np.exp((raw - raw.max(axis=-1, keepdims=True)) / temperature)
            raw = shifted / shifted.sum(axis=-1, keepdims=True)
        elif temperature != 1.0:
            raw = apply_temperature(raw, temperature, self.probability_floor)
        raw = raw.astype(np.float32, copy=False)
        if not np.isfinite(raw).all():  # NaN would sort anywhere and write invalid JSON
            raise EdgeclsError("the model returned NaN or infinite scores: its weights are probably damaged")
        return raw

    def predict(self, image: np.ndarray, top_k: int = 3, buffer: np.ndarray | None = None, *, tta: bool = False,
                min_confidence: float = 0.0) -> Prediction:  # fmt: skip
        """Classify one uint8 image already at the model's input size.

        `tta`: average the probabilities over the image and its horizontal, vertical and double
        flips (4 invokes; lesions and smears have no up or left). `min_confidence`: below this top
        probability the label is "uncertain" (the probabilities are still given).
        """
        start = time.perf_counter()
        if tta:
            probabilities = np.mean([self.scores(self.to_input(view, buffer)) for view in flips(image)], axis=0)
        else:
            probabilities = self.scores(self.to_input(image, buffer))
        latency_ms = (time.perf_counter() - start) * 1000.0
        return self.to_prediction(probabilities, top_k, latency_ms, min_confidence=min_confidence)

    def to_prediction(self, probabilities: np.ndarray, top_k: int = 3, latency_ms: float = 0.0, *,
                      min_confidence: float = 0.0) -> Prediction:  # fmt: skip
        """Class probabilities -> the Prediction predict() returns (top-k labels, groups, flag)."""
        return self.to_predictions(probabilities[None], top_k, latency_ms, min_confidence=min_confidence)[0]

    def to_predictions(self, probabilities: np.ndarray, top_k: int = 3, latency_ms: float = 0.0, *,
                       min_confidence: float = 0.0) -> list[Prediction]:  # fmt: skip
        """Rows of class probabilities (N x classes) -> N Predictions. A batch's rows go through
        numpy together: in a folder run this thread shares the cores (and the GIL) with decoding,
        so its per-image work is kept small."""
        k = max(1, min(top_k, self.num_classes))
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        top_values = np.take_along_axis(probabilities, order, axis=1).tolist()
        group_sums = {name: group_probability(probabilities, members).tolist() for name, members in self._group_members.items()}
        point = self.metadata.operating_point
        predictions = []
        for row, (indices, values) in enumerate(zip(order.tolist(), top_values)):
            top = [(self.labels[i], value) for i, value in zip(indices, values)]
            label = top[0][0] if top[0][1] >= min_confidence else UNCERTAIN
            row_groups = {name: sums[row] for name, sums in group_sums.items()}
            flag = row_groups[point["group"]] >= point["threshold"] if point else None
            predictions.append(Prediction(label, top[0][1], top, probabilities[row], latency_ms, row_groups, flag))
        return predictions

    @functools.cached_property
    def probability_floor(self) -> float:
        """The smallest probability the output can tell from 0: half a quantization step for a
        quantized output, where a 0 may hide anything up to it (calibration.apply_temperature)."""
        if self.reads_logits:  # probabilities computed here in float: nothing is hidden
            return FLOAT_FLOOR
        scale = self.output_details["quantization"][0] if self.output_details["dtype"] != np.float32 else 0.0
        return 0.5 * float(scale) if scale else FLOAT_FLOOR

    @functools.cached_property
    def _group_members(self) -> dict[str, list[int]]:
        return {name: [self.labels.index(label) for label in members] for name, members in self.metadata.groups.items()}

    def describe(self) -> dict:
        """Tensor shapes, types and quantization: what `edgecls info` prints."""

        def tensor(details: dict) -> dict:
            scale, zero_point = details["quantization"]
            return {
                "name": details["name"],
                "shape": [int(d) for d in details["shape"]],
                "dtype": np.dtype(details["dtype"]).name,
                "quantization": {"scale": float(scale), "zero_point": int(zero_point)} if scale else None,
            }

        return {
            "path": str(self.path) if self.path else None,
            "file_size_bytes": self.file_size,
            "interpreter": self.interpreter_package,
            "has_metadata": self.has_metadata,
            "metadata_source": self.metadata_source,
            "tflite_metadata": self.standard_metadata.to_dict() if self.standard_metadata else None,
            "input": tensor(self.input_details),
            "output": tensor(self.output_details),  # the one edgecls reads (the logits when the file has them)
            "outputs": [tensor(o) for o in self._outputs],
            "metadata": self.metadata.__dict__ | {"input_size": list(self.metadata.input_size)},
        }


def _read_model_file(path: Path) -> bytes:
    if not path.exists():
        raise EdgeclsError(f"{path}: no such model file")
    if path.is_dir():
        raise EdgeclsError(f"{path}: is a directory, not a .tflite model")
    if not path.is_file():  # reading a named pipe would block forever
        raise EdgeclsError(f"{path}: not a regular file (a pipe, socket or device), not a .tflite model")
    try:
        with open(path, "rb") as file:
            head = file.read(8)
            if not is_tflite(head):  # don't read a multi-GB video into a Pi's memory to say so
                raise EdgeclsError(f"{path}: not a TFLite model (no TFL3 identifier)")
            return head + file.read()
    except OSError as exc:
        raise EdgeclsError(f"{path}: cannot read model ({exc.strerror or exc})") from None
    except MemoryError:
        raise EdgeclsError(f"{path}: too large to load as a model") from None

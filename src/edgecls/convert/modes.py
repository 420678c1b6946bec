"""Produce the TFLite bytes of each conversion mode, with the details worth recording.

Float modes convert the model as it is. Full-integer modes first swap in int8-friendly
layers (rewrite.py) and calibrate on a class-balanced training sample; QAT fine-tunes a
quantization-aware copy before converting, and falls back to post-training int8, saying why,
when tfmot cannot build or the converter cannot export the QAT model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable

from edgecls.convert.converter import convert_to_tflite
from edgecls.convert.options import FULL_INTEGER_MODES, PTQ_INT8, QAT, ConvertOptions
from edgecls.convert.qat import (
    QatUnavailable,
    calibrate_activation_ranges,
    fine_tune,
    freeze_batch_norm,
    quantization_aware_model,
)
from edgecls.convert.qat_data import qat_data
from edgecls.convert.rewrite import integer_friendly
from edgecls.convert.samples import ConversionData, LabelledImages
from edgecls.errors import EdgeclsError
from edgecls.log import notice


@dataclass
class Converted:
    mode: str
    model_bytes: bytes
    details: dict[str, Any] = field(default_factory=dict)  # recorded in metadata provenance
    notes: list[str] = field(default_factory=list)  # shown in the report


class ModeConverter:
    """Converts one float Keras model in each requested mode, sharing the expensive parts."""

    def __init__(self, model, data: ConversionData, options: ConvertOptions, train_options=None, say: Callable[[str], None] = lambda _: None,
                 qat_unavailable: str | None = None):  # fmt: skip
        self.model = model
        self.data = data
        self.options = options
        self.train_options = train_options
        self.say = say
        # Why this model cannot be fine-tuned with tfmot at all (a graph without Keras layers,
        # a Keras 3 model with a layer tf_keras lacks): QAT then falls back to post-training int8.
        self.qat_unavailable = qat_unavailable

    def convert(self, mode: str, keep_float: tuple[str, ...] = ()) -> Converted:
        if mode == QAT:
            return self._qat()
        if mode == PTQ_INT8:
            return self._ptq(keep_float)
        self.say(f"converting: {mode}")
        return Converted(mode, convert_to_tflite(self.model, mode), {"quantization": mode})

    @cached_property
    def calibration(self) -> LabelledImages:
        sample = self.data.calibration(self.options.calibration_size, self.options.seed)
        self.say(f"calibration: {len(sample)} class-balanced training images")
        return sample

    @cached_property
    def integer_model(self) -> tuple[Any, list[str]]:
        return integer_friendly(self.model)

    def _integer_details(self) -> dict[str, Any]:
        _, rewritten = self.integer_model
        details: dict[str, Any] = {
            "io_type": self.options.io_type,
            "calibration_images": len(self.calibration),
            "calibration": "class-balanced sample of the training split",
        }
        if rewritten:
            details["rewritten_layers"] = ", ".join(rewritten)
        return details

    def _ptq(self, keep_float: tuple[str, ...] = ()) -> Converted:
        self.say(f"converting: {PTQ_INT8}" + (f", keeping {', '.join(keep_float)} float" if keep_float else ""))
        model, rewritten = self.integer_model
        model_bytes = convert_to_tflite(model, PTQ_INT8, self.options.io_type, self.calibration.images, self.data.normalization,
                                        keep_float=keep_float)  # fmt: skip
        notes = [_rewrite_note(rewritten)] if rewritten else []
        details = {"quantization": PTQ_INT8, **self._integer_details()}
        if keep_float:
            details["quantization"] = f"{PTQ_INT8}, mixed: float layers {', '.join(keep_float)}"
            details["float_layers"] = ", ".join(keep_float)
        return Converted(PTQ_INT8, model_bytes, details, notes)

    def _qat(self) -> Converted:
        if self.qat_unavailable:
            return self._fallback(self.qat_unavailable, [])
        model, rewritten = self.integer_model
        notes = [_rewrite_note(rewritten)] if rewritten else []
        try:
            qat_model, plan = quantization_aware_model(model)
        except QatUnavailable as exc:
            return self._fallback(f"tfmot cannot make this model quantization-aware ({exc})", notes)
        if plan.left_float:
            message = (
                f"QAT: tfmot cannot wrap {plan.describe_left_float(self.model)}; "
                "they stay float while fine-tuning and take their int8 ranges from calibration"
            )
            notice(message)
            notes.append(message)
        freeze_batch_norm(qat_model)
        if not calibrate_activation_ranges(qat_model, self.calibration.images, normalization=self.data.normalization):
            notes.append("QAT: activation ranges start at tfmot's [-6, 6] (could not calibrate them first)")
        train_options = self._train_options()
        batches = qat_data(self.data, train_options, self.options.qat_batch_size, self.options.seed)
        monitor = train_options.monitor
        self.say(
            f"QAT: fine-tuning {self.options.qat_epochs} epoch(s) on {batches.train_images} training images at learning "
            f"rate {self.options.qat_learning_rate:g}; keeping the epoch (0 = none) with the best {monitor} on "
            f"{batches.validation_images} validation images, the metric the model was trained to"
        )
        try:
            history = fine_tune(
                qat_model,
                batches.train,
                batches.validation,
                epochs=self.options.qat_epochs,
                learning_rate=self.options.qat_learning_rate,
                class_weight=batches.class_weight,
                seed=self.options.seed,
                monitor=monitor,
                verbose=self.options.verbose,
            )
        except EdgeclsError as exc:
            return self._fallback(str(exc), notes)
        self.say(f"converting: {QAT}")
        try:
            model_bytes = convert_to_tflite(qat_model, QAT, self.options.io_type, self.calibration.images, self.data.normalization)
        except EdgeclsError as exc:
            return self._fallback(f"the QAT model did not convert ({exc})", notes)
        details = {
            "quantization": QAT,
            **self._integer_details(),
            "qat_epochs": self.options.qat_epochs,
            "qat_best_epoch": history["best_epoch"],
            "qat_learning_rate": self.options.qat_learning_rate,
            "qat_train_images": batches.train_images,
            "qat_left_float": plan.describe_left_float(self.model),
        }
        if history["start"] is not None:
            sign = -1.0 if monitor == "val_loss" else 1.0  # the score is minus the loss
            details["qat_monitor"] = monitor
            details["qat_val_before"] = round(sign * history["start"], 6)
            details["qat_val_best"] = round(sign * history["best"], 6)
        if history["best_epoch"] == 0:
            notes.append(
                f"QAT: no fine-tuning epoch beat the calibrated quantization-aware model on {monitor}; "
                "kept it as it was before fine-tuning"
            )
        return Converted(QAT, model_bytes, details, notes)

    def _fallback(self, reason: str, notes: list[str]) -> Converted:
        message = f"QAT: {reason}; using post-training int8 instead"
        notice(message)
        converted = self._ptq()
        converted.mode = QAT
        converted.details.update({"requested_mode": QAT, "qat_fallback": reason})
        converted.notes = notes + [message] + [n for n in converted.notes if n not in notes]
        return converted

    def _train_options(self):
        if self.train_options is not None:
            return self.train_options
        from edgecls.core.train_options import TrainOptions

        # How an outside model was trained is unknown: fine-tune on the images as they are
        # (augmentations that are harmless for cells can change other classes, e.g. rotations).
        return TrainOptions(augment=False, imbalance="none", monitor="val_accuracy")


def _rewrite_note(rewritten: list[str]) -> str:
    return f"int8-friendly GroupNormalization (no SQUARE op) swapped in for {', '.join(rewritten)}"


def is_full_integer(mode: str) -> bool:
    return mode in FULL_INTEGER_MODES

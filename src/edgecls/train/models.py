"""Model registry: `create_model("edge-cnn", (94, 94, 3), num_classes=7)`, timm style.

Every model follows DESIGN.md "Model conventions": input float32 pixel/255 in 0..1, output
softmax probabilities from a float32 final Activation (so mixed precision still returns
float32), no Lambda, preprocessing or augmentation layers inside. Builders receive `keras`
(tf_keras) as an argument so this module imports no TensorFlow until a model is built.

Every model converts to float TFLite and int8; which layers QAT can wrap is found out by
`edgecls.convert.qat.quantization_aware_model` when converting (a BatchNormalization after a
Dense layer, GroupNormalization and LSTM stay float while fine-tuning).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from edgecls.errors import EdgeclsError, first_line

# Short training runs: moving statistics that lag behind the weights made a BN model predict one
# class for everything in inference mode. 0.9 follows the weights ~10x faster than Keras' 0.99.
BN_MOMENTUM = 0.9


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[..., Any]
    description: str
    min_size: int = 32  # smallest square input the architecture accepts
    pretrained: tuple[str, ...] = ()  # named weights it can start from, e.g. ("imagenet",)


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, description: str, **spec: Any) -> Callable:
    """Decorator: add `build(keras, input_shape, num_classes, weights, **kwargs)` under `name`."""

    def add(build: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(name, build, description, **spec)
        return build

    return add


def list_models() -> list[str]:
    return list(_REGISTRY)


def model_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise EdgeclsError(f"unknown model {name!r}; choose one of: {', '.join(_REGISTRY)}") from None


def create_model(
    name: str = "edge-cnn",
    input_shape: tuple[int, int, int] = (94, 94, 3),
    num_classes: int = 2,
    weights: str | os.PathLike | None = None,
    **kwargs: Any,
):
    """Build a registered model, uncompiled. `weights`: None (random), a name the model lists in
    `pretrained` (e.g. "imagenet", downloaded by Keras), or a weights file to load."""
    from edgecls.core.tf_env import import_tf

    spec = model_spec(name)
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3 or min(input_shape[:2]) < spec.min_size:
        raise EdgeclsError(f"model {name} needs an input of at least {spec.min_size}x{spec.min_size}x3, got {input_shape}")
    if num_classes < 2:
        raise EdgeclsError(f"a classifier needs at least 2 classes, got {num_classes}")
    named = weights if isinstance(weights, str) and weights in spec.pretrained else None
    if isinstance(weights, str) and not named and not os.path.exists(weights):
        offered = f" (it offers {', '.join(spec.pretrained)})" if spec.pretrained else " (it has no pretrained weights)"
        raise EdgeclsError(f"weights {weights!r}: not a file, and not a pretrained set of model {name}{offered}")
    _, keras = import_tf()
    model = spec.build(keras, input_shape, num_classes, weights=named, **kwargs)
    if weights is not None and not named:
        try:
            model.load_weights(os.fspath(weights))
        except Exception as exc:  # h5py, TF checkpoint and shape errors all mean "wrong file"
            raise EdgeclsError(f"cannot load weights {weights} into {name}: {first_line(exc, 300)}") from None
    return model


# -- shared pieces --------------------------------------------------------------------


def _classifier_head(keras, x, num_classes: int, dropout: float, name: str = "classifier"):
    layers = keras.layers
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Dense(num_classes, name=name)(x)
    return layers.Activation("softmax", dtype="float32", name="probabilities")(x)


def _conv_bn_relu6(keras, x, filters: int, kernel: int = 3, strides: int = 1, name: str = "conv"):
    # Conv (no bias) -> BN -> ReLU6: the pattern TFLite fuses and tfmot folds for int8.
    layers = keras.layers
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu6")(x)


def _depthwise_bn_relu6(keras, x, kernel: int = 3, strides: int = 1, name: str = "dw"):
    layers = keras.layers
    x = layers.DepthwiseConv2D(kernel, strides=strides, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu6")(x)


def _channels(base: int, width: float) -> int:
    # Multiples of 8 keep int8 kernels on their fast paths (XNNPACK, NNAPI, Edge TPU).
    return max(8, int(base * width + 4) // 8 * 8)


# -- edge models: built for int8 on phones and Raspberry Pis --------------------------

# (pointwise filters, stride) of each depthwise-separable block after the stem.
_EDGE_BLOCKS = ((64, 1), (96, 2), (96, 1), (128, 2), (128, 1), (192, 2), (192, 1), (256, 1))


def _edge_cnn(keras, input_shape, num_classes, weights=None, width: float = 1.0, dropout: float = 0.2):
    """MobileNet-v1 style: stem conv, depthwise-separable blocks, global pooling, dense softmax."""
    inputs = keras.Input(input_shape, name="image")
    x = _conv_bn_relu6(keras, inputs, _channels(32, width), strides=2, name="stem")
    for i, (filters, stride) in enumerate(_EDGE_BLOCKS, start=1):
        x = _depthwise_bn_relu6(keras, x, strides=stride, name=f"block{i}_dw")
        x = _conv_bn_relu6(keras, x, _channels(filters, width), kernel=1, name=f"block{i}_pw")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = _classifier_head(keras, x, num_classes, dropout)
    return keras.Model(inputs, outputs, name="edge_cnn" if width == 1.0 else f"edge_cnn_w{width:g}")


@register_model("edge-cnn", "default: depthwise-separable CNN for int8 on phones/Pis (~170k params)")
def edge_cnn(keras, input_shape, num_classes, weights=None, width: float = 1.0, **kwargs):
    return _edge_cnn(keras, input_shape, num_classes, width=width, **kwargs)


@register_model("edge-cnn-small", "edge-cnn at half width (~50k params), for the slowest devices")
def edge_cnn_small(keras, input_shape, num_classes, weights=None, width: float = 0.5, **kwargs):
    return _edge_cnn(keras, input_shape, num_classes, width=width, **kwargs)


@register_model("edge-cnn-large", "edge-cnn at 1.5x width (~370k params, int8 file ~0.4 MB), for harder sets like HAM10000")
def edge_cnn_large(keras, input_shape, num_classes, weights=None, width: float = 1.5, **kwargs):
    return _edge_cnn(keras, input_shape, num_classes, width=width, **kwargs)


# -- the seed notebooks' architectures, kept as named baselines -----------------------


@register_model("gap-cnn", "baseline: Conv/MaxPool with growing filters, global average pooling")
def gap_cnn(keras, input_shape, num_classes, weights=None):
    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for i, filters in enumerate((16, 32, 64, 128), start=1):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = layers.MaxPooling2D(name=f"pool{i}")(x) if i < 4 else x
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, _classifier_head(keras, x, num_classes, 0.0), name="gap_cnn")


@register_model(
    "bn-cnn",
    "baseline: BatchNorm CNN with dropout and a dense head (28x28 in its notebook)",
)
def bn_cnn(keras, input_shape, num_classes, weights=None):
    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for stage, filters in enumerate((32, 64), start=1):
        for j in (1, 2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{stage}_{j}")(x)
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"conv{stage}_{j}_bn")(x)
            x = layers.ReLU(name=f"conv{stage}_{j}_relu")(x)
        x = layers.MaxPooling2D(name=f"pool{stage}")(x)
        x = layers.Dropout(0.25, name=f"dropout{stage}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, activation="relu", name="dense")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="dense_bn")(x)
    return keras.Model(inputs, _classifier_head(keras, x, num_classes, 0.5), name="bn_cnn")


@register_model(
    "gn-cnn",
    "baseline: 30/30/20/15/10-filter CNN, BatchNorm + GroupNorm(3), 256/128 head (90x120 in its notebook)",
)
def gn_cnn(keras, input_shape, num_classes, weights=None):
    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    # GroupNormalization(groups=3) needs channels divisible by 3: the 30- and 15-filter layers.
    for i, filters in enumerate((30, 30, 20, 15, 10), start=1):
        x = layers.Conv2D(filters, 3, padding="same", name=f"conv{i}")(x)
        if filters % 3 == 0:
            x = layers.GroupNormalization(groups=3, name=f"conv{i}_gn")(x)
        else:
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"conv{i}_bn")(x)
        x = layers.ReLU(name=f"conv{i}_relu")(x)
        x = layers.MaxPooling2D(name=f"pool{i}")(x) if i < 5 else x
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(256, activation="relu", name="dense1")(x)
    x = layers.Dropout(0.3, name="dropout1")(x)
    x = layers.Dense(128, activation="relu", name="dense2")(x)
    return keras.Model(inputs, _classifier_head(keras, x, num_classes, 0.3), name="gn_cnn")


@register_model("smear-cnn", "baseline: the blood-smear CNN, Conv/MaxPool blocks, dropout, dense head (150x150)")
def smear_cnn(keras, input_shape, num_classes, weights=None):
    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for i, filters in enumerate((32, 64, 128, 128), start=1):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = layers.MaxPooling2D(name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(0.5, name="dropout")(x)
    x = layers.Dense(512, activation="relu", name="dense")(x)
    return keras.Model(inputs, _classifier_head(keras, x, num_classes, 0.0), name="smear_cnn")


@register_model("cnn-lstm", "baseline: CNN feature map read row by row by an LSTM")
def cnn_lstm(keras, input_shape, num_classes, weights=None):
    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for i, filters in enumerate((32, 64), start=1):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = layers.MaxPooling2D(name=f"pool{i}")(x)
    rows, cols, channels = x.shape[1:]
    x = layers.Reshape((rows, cols * channels), name="rows")(x)  # one timestep per feature-map row
    x = layers.LSTM(64, name="lstm")(x)
    return keras.Model(inputs, _classifier_head(keras, x, num_classes, 0.2), name="cnn_lstm")


# -- transfer-learning backbones --------------------------------------------------------


def _mobilenetv2(keras, input_shape, num_classes, weights=None, alpha: float = 1.0, dropout: float = 0.2):
    try:
        backbone = keras.applications.MobileNetV2(
            input_shape=input_shape, alpha=alpha, include_top=False, weights=weights, pooling="avg"
        )
    except ValueError as exc:  # alpha/size combinations without published weights
        raise EdgeclsError(f"mobilenetv2: {first_line(exc, 300)}") from None
    except Exception as exc:  # urllib, socket, SSL, HTTP: the weights could not be downloaded
        raise EdgeclsError(
            f"could not download {weights} weights for mobilenetv2 ({first_line(exc, 300)}); "
            "train without --weights, or pass a local weights file"
        ) from None
    for layer in backbone.layers:  # Keras' 0.999 lags for weeks of fine-tuning steps; see BN_MOMENTUM
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    if weights:
        _fold_input_scaling(backbone.get_layer("Conv1"), backbone.get_layer("bn_Conv1"))
    outputs = _classifier_head(keras, backbone.output, num_classes, dropout)
    return keras.Model(backbone.input, outputs, name=f"mobilenetv2_{alpha:g}")


def _fold_input_scaling(conv, bn) -> None:
    """ImageNet MobileNetV2 expects pixel/127.5 - 1; edgecls feeds pixel/255 (DESIGN.md). Since
    2x - 1 is affine, fold it into the first conv (kernel * 2) and its BN mean (+ kernel sum), so
    the pretrained filters see what they were trained on; only the zero-padded border differs."""
    (kernel,) = conv.get_weights()
    gamma, beta, mean, var = bn.get_weights()
    conv.set_weights([kernel * 2.0])
    bn.set_weights([gamma, beta, mean + kernel.sum(axis=(0, 1, 2)), var])


@register_model("mobilenetv2", "MobileNetV2 (alpha 1.0); --weights imagenet to fine-tune", min_size=32, pretrained=("imagenet",))
def mobilenetv2(keras, input_shape, num_classes, weights=None, alpha: float = 1.0, **kwargs):
    return _mobilenetv2(keras, input_shape, num_classes, weights, alpha=alpha, **kwargs)


@register_model("mobilenetv2-0.35", "MobileNetV2 at alpha 0.35 (~0.4M params); --weights imagenet", pretrained=("imagenet",))
def mobilenetv2_035(keras, input_shape, num_classes, weights=None, alpha: float = 0.35, **kwargs):
    return _mobilenetv2(keras, input_shape, num_classes, weights, alpha=alpha, **kwargs)


# (expansion, output channels, repeats, first stride, kernel): EfficientNet-B0's blocks, which
# Lite0 keeps (width and depth 1.0); the ImageNet checkpoint's 16 `_blocks` are these.
_LITE0_BLOCKS = ((1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 40, 2, 2, 5), (6, 80, 3, 2, 3),
                 (6, 112, 3, 1, 5), (6, 192, 4, 2, 5), (6, 320, 1, 1, 3))  # fmt: skip
LITE0_BN_EPSILON = 1e-3  # the checkpoint's (TensorFlow's EfficientNet-Lite) BatchNorm epsilon


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'SAME' padding of one axis, (before, after): what EfficientNet-Lite was
    trained with and what the checkpoint's PyTorch port reproduces (Conv2dStaticSamePadding).
    At odd totals the extra pixel goes after, unlike a symmetric PyTorch `padding=k // 2`."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _lite0_conv(keras, x, filters, kernel, strides, name, depthwise=False):
    """Conv (or depthwise) -> BN(eps 1e-3), no bias, with explicit TF-'SAME' padding and a 'valid'
    convolution for strided ones: the checkpoint's padding, fixed per input size and visible in
    the graph (it is also what Keras 'same' computes, so int8 files stay the same)."""
    layers = keras.layers
    padding = "same"
    if strides > 1:
        rows, cols = (_same_padding(int(n), kernel, strides) for n in x.shape[1:3])
        if any(rows + cols):
            x = layers.ZeroPadding2D((rows, cols), name=f"{name}_pad")(x)
        padding = "valid"
    if depthwise:
        x = layers.DepthwiseConv2D(kernel, strides=strides, padding=padding, use_bias=False, name=name)(x)
    else:
        x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False, name=name)(x)
    return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=LITE0_BN_EPSILON, name=f"{name}_bn")(x)


@register_model(
    "efficientnet-lite0",
    "EfficientNet-Lite0 (MBConv, ReLU6, no squeeze-excite, ~3.4M params); --weights imagenet (offline)",
    pretrained=("imagenet",),
)
def efficientnet_lite0(keras, input_shape, num_classes, weights=None, dropout: float = 0.2):
    """Built here (keras.applications has no Lite variant): B0's MBConv blocks with the Lite
    changes that make int8 work well: ReLU6 instead of swish, no squeeze-and-excite, and a
    fixed 32-filter stem and 1280-filter head. Layer for layer the layout of the
    EfficientNet-PyTorch Lite0 checkpoint: `weights="imagenet"` loads it
    (`edgecls.train.pretrained`), with its input normalisation folded into the stem so the
    model takes pixel / 255 like every edgecls model."""
    layers = keras.layers

    def relu6(x, name):
        return layers.ReLU(6.0, name=f"{name}_relu6")(x)

    inputs = keras.Input(input_shape, name="image")
    x = relu6(_lite0_conv(keras, inputs, 32, 3, 2, "stem"), "stem")
    block = 0
    for expansion, filters, repeats, first_stride, kernel in _LITE0_BLOCKS:
        for r in range(repeats):
            block += 1
            name, shortcut, stride = f"block{block}", x, first_stride if r == 0 else 1
            if expansion != 1:
                x = relu6(_lite0_conv(keras, x, x.shape[-1] * expansion, 1, 1, f"{name}_expand"), f"{name}_expand")
            x = relu6(_lite0_conv(keras, x, None, kernel, stride, f"{name}_dw", depthwise=True), f"{name}_dw")
            x = _lite0_conv(keras, x, filters, 1, 1, f"{name}_project")
            if stride == 1 and shortcut.shape[-1] == filters:
                x = layers.Add(name=f"{name}_add")([shortcut, x])
    x = relu6(_lite0_conv(keras, x, 1280, 1, 1, "head"), "head")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, _classifier_head(keras, x, num_classes, dropout), name="efficientnet_lite0")
    if weights == "imagenet":
        from edgecls.train.pretrained import load_lite0_imagenet

        load_lite0_imagenet(model)
    return model

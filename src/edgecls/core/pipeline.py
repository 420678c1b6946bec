"""tf.data input pipelines that stream images from disk through the shared preprocessing.

Images are decoded by `edgecls.edge_runtime.preprocess` (via `Dataset.image_source`), the
same code the device runs, so training never drifts from deployment. The decoded uint8 images
are cached (memory by default: 8.5k HAM10000 images at 94x94 are ~225 MB), augmented on the
training set only, then scaled to float32 pixel/255 as DESIGN.md's model convention says.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np

from edgecls.edge_runtime.preprocess import load_image, prepare_image

AUTOTUNE = -1  # tf.data.AUTOTUNE, without importing TensorFlow at module import


def image_sources(dataset, keys: Sequence[str], size: tuple[int, int]) -> list:
    """What `image_loader` reads for each key: a file path, or (HMNIST) a uint8 array.

    Same answers as `dataset.image_source(key)`, in bulk: that looks a key up among all the
    items per call, which took 46 s for HAM10000's 8.5k keys. File keys are paths relative to
    `dataset.root` (DESIGN.md); in-memory pixels go through the vectorised `load_images`.
    """
    keys = list(keys)
    if getattr(dataset, "pixels", None) is not None:
        return list(dataset.load_images(keys, size))
    root = os.fspath(dataset.root)
    return [os.path.join(root, key) for key in keys]


def image_loader(sources: Sequence, size: tuple[int, int]):
    """A numpy function: index -> uint8 image, for sources that are paths or arrays (HMNIST)."""

    def load(index) -> np.ndarray:
        source = sources[int(index)]
        if isinstance(source, np.ndarray):
            return prepare_image(source, size)
        return load_image(source, size)

    return load


def image_dataset(tf, sources: Sequence, labels: np.ndarray, size: tuple[int, int], cache: str | None = ""):
    """(uint8 image, label) pairs, decoded in parallel; `cache` "" = memory, None = none, else a file."""
    load = image_loader(sources, size)
    labels = np.asarray(labels, np.int32)

    def read(index, label):
        image = tf.numpy_function(load, [index], tf.uint8, stateful=False)
        image.set_shape((*size, 3))
        return image, label

    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(labels), dtype=np.int64), labels))
    ds = ds.map(read, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds if cache is None else ds.cache(cache)


def training_dataset(
    tf,
    sources: Sequence,
    labels: np.ndarray,
    size: tuple[int, int],
    batch_size: int,
    num_classes: int,
    seed: int,
    augment: bool | str = True,
    balanced: bool = False,
    cache: str | None = "",
):
    """Shuffled, augmented, batched training data, and the number of steps per epoch.

    augment: "none", "standard" (`Augmenter`) or "strong" (`StrongAugmenter`); True/False mean
    standard/none.

    balanced=True draws every class equally often (each class cached, repeated and shuffled
    on its own, then `sample_from_datasets`); an epoch is still len(labels) images.
    """
    labels = np.asarray(labels, np.int32)
    steps = max(1, math.ceil(len(labels) / batch_size))
    if balanced:
        present = [c for c in range(num_classes) if np.any(labels == c)]
        per_class = []
        for c in present:
            idx = np.flatnonzero(labels == c)
            class_cache = None if cache is None else (f"{cache}.class{c}" if cache else "")
            ds = image_dataset(tf, [sources[i] for i in idx], labels[idx], size, class_cache)
            per_class.append(ds.repeat().shuffle(min(len(idx), 4096), seed=seed + c))
        ds = tf.data.Dataset.sample_from_datasets(per_class, seed=seed, stop_on_empty_dataset=False)
        ds = ds.take(steps * batch_size)
    else:
        ds = image_dataset(tf, sources, labels, size, cache)
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda image, label: (to_float(tf, image), label), num_parallel_calls=AUTOTUNE)
    level = ("standard" if augment else "none") if isinstance(augment, bool) else augment
    if level not in ("none", "standard", "strong"):
        raise ValueError(f"augment must be none, standard or strong, got {augment!r}")
    if level != "none":
        augmenter = StrongAugmenter(tf) if level == "strong" else Augmenter(tf, seed)
        ds = ds.map(lambda image, label: (augmenter(image), label), num_parallel_calls=AUTOTUNE)
    return ds.batch(batch_size).prefetch(AUTOTUNE), steps


def evaluation_dataset(tf, sources: Sequence, labels: np.ndarray, size: tuple[int, int], batch_size: int, cache: str | None = ""):
    """Unshuffled, unaugmented (image float32 0..1, label) batches, in `sources` order."""
    ds = image_dataset(tf, sources, labels, size, cache)
    ds = ds.map(lambda image, label: (to_float(tf, image), label), num_parallel_calls=AUTOTUNE)
    return ds.batch(batch_size).prefetch(AUTOTUNE)


def to_float(tf, image):
    """uint8 -> float32 pixel/255: the model input convention (DESIGN.md)."""
    return tf.cast(image, tf.float32) / 255.0


def class_weights(labels: np.ndarray, num_classes: int, power: float) -> dict[int, float]:
    """sklearn's "balanced" weights (n / (k * count)) raised to `power`; 1.0 for absent classes."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(labels)
    balanced = compute_class_weight("balanced", classes=present, y=labels)
    weights = {c: 1.0 for c in range(num_classes)}
    weights.update({int(c): float(w**power) for c, w in zip(present, balanced)})
    return weights


class Augmenter:
    """Random changes that keep the diagnosis: dermoscopy and smears have no up, no left and no
    fixed light, so all flips and rotations are fair, with mild colour jitter for stain and camera
    differences. Works on one float 0..1 image; the output stays in 0..1."""

    def __init__(self, tf, seed: int, max_rotation: float = 0.05, brightness: float = 0.08,
                 contrast: float = 0.15, saturation: float = 0.15, hue: float = 0.02):  # fmt: skip
        from edgecls.core.tf_env import import_tf

        _, keras = import_tf()
        self.tf = tf
        self.seed = seed
        # Small rotations (fraction of a full turn); reflect keeps skin/background at the corners.
        self.rotate = keras.layers.RandomRotation(max_rotation, fill_mode="reflect", seed=seed)
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    def __call__(self, image):
        tf = self.tf
        image = tf.image.random_flip_left_right(image)
        image = tf.image.random_flip_up_down(image)
        if image.shape[0] == image.shape[1]:  # quarter turns keep the shape only for squares
            image = tf.image.rot90(image, tf.random.uniform((), 0, 4, dtype=tf.int32))
        image = self.rotate(image, training=True)
        image = tf.image.random_brightness(image, self.brightness)
        image = tf.image.random_contrast(image, 1 - self.contrast, 1 + self.contrast)
        image = tf.image.random_saturation(image, 1 - self.saturation, 1 + self.saturation)
        image = tf.image.random_hue(image, self.hue)
        return tf.clip_by_value(image, 0.0, 1.0)


class StrongAugmenter:
    """The "strong" level (`--augment strong`): flips on both axes, then one projective warp
    that rotates anywhere in +-180 degrees, scales by 0.8-1.25 (log-uniform, so zooming in and
    out are equally likely) and shifts by up to +-10% of each side, with reflected borders
    (dermoscopy and smears have skin or plasma at the edges, not black), then brightness,
    contrast and saturation each by a factor in 0.8-1.2. One float 0..1 image in, same shape
    and range out. The warp is a single ImageProjectiveTransformV3 (bilinear): one pass over
    the pixels on the CPU, whatever the rotation, scale and shift. Random draws come from
    TensorFlow's op seeds, which `keras.utils.set_random_seed` fixes, like `Augmenter`'s."""

    def __init__(self, tf, max_degrees: float = 180.0, scale: tuple[float, float] = (0.8, 1.25),
                 shift: float = 0.1, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2):  # fmt: skip
        self.tf = tf
        self.max_radians = math.radians(max_degrees)
        self.log_scale = (math.log(scale[0]), math.log(scale[1]))
        self.shift, self.brightness, self.contrast, self.saturation = shift, brightness, contrast, saturation

    def transform(self, height, width, angle, scale, dx, dy):
        """The 8 projective coefficients mapping an output pixel to the input pixel it samples:
        output = c + scale * R(angle) (input - c) + (dx, dy), about the centre c, inverted."""
        tf = self.tf
        cx, cy = (tf.cast(width, tf.float32) - 1) / 2, (tf.cast(height, tf.float32) - 1) / 2
        cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
        a0, a1, b0, b1 = cos, sin, -sin, cos
        a2 = cx - a0 * (cx + dx) - a1 * (cy + dy)
        b2 = cy - b0 * (cx + dx) - b1 * (cy + dy)
        zero = tf.zeros_like(a0)
        return tf.stack([a0, a1, a2, b0, b1, b2, zero, zero])

    def warp(self, image, transform):
        tf = self.tf
        size = tf.shape(image)[:2]
        warped = tf.raw_ops.ImageProjectiveTransformV3(
            images=image[None], transforms=transform[None], output_shape=size, fill_value=0.0,
            interpolation="BILINEAR", fill_mode="REFLECT")  # fmt: skip
        return warped[0]

    def __call__(self, image):
        tf = self.tf
        image = tf.image.random_flip_left_right(image)
        image = tf.image.random_flip_up_down(image)
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        angle = tf.random.uniform((), -self.max_radians, self.max_radians)
        scale = tf.exp(tf.random.uniform((), *self.log_scale))
        dx = tf.random.uniform((), -self.shift, self.shift) * tf.cast(width, tf.float32)
        dy = tf.random.uniform((), -self.shift, self.shift) * tf.cast(height, tf.float32)
        image = self.warp(image, self.transform(height, width, angle, scale, dx, dy))
        image = image * tf.random.uniform((), 1 - self.brightness, 1 + self.brightness)
        image = tf.image.random_contrast(image, 1 - self.contrast, 1 + self.contrast)
        image = tf.image.random_saturation(tf.clip_by_value(image, 0.0, 1.0), 1 - self.saturation, 1 + self.saturation)
        return tf.clip_by_value(image, 0.0, 1.0)

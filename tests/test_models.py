"""The model registry: every model builds, trains a step, predicts probabilities; names are checked."""

from __future__ import annotations

import numpy as np
import pytest

from edgecls.errors import EdgeclsError
from edgecls.train.models import create_model, list_models

SIZE = 32


@pytest.mark.parametrize("name", list_models())
def test_model_builds_trains_and_predicts_probabilities(name):
    from edgecls.core.tf_env import import_tf

    _, keras = import_tf()
    keras.utils.set_random_seed(0)
    model = create_model(name, (SIZE, SIZE, 3), num_classes=3)
    assert model.input_shape == (None, SIZE, SIZE, 3)
    assert model.output_shape == (None, 3)
    assert model.layers[-1].dtype == "float32"
    # Convention (DESIGN.md): no preprocessing, augmentation or Lambda layers inside a model.
    kinds = {type(layer).__name__ for layer in model.layers}
    assert not kinds & {"Lambda", "Rescaling", "Normalization", "RandomFlip", "RandomRotation"}
    # Eager: one step of a big graph is quicker run op by op than traced.
    model.compile("adam", "sparse_categorical_crossentropy", run_eagerly=True)
    images = np.random.default_rng(0).random((4, SIZE, SIZE, 3), dtype=np.float32)
    loss = model.train_on_batch(images, np.array([0, 1, 2, 0]))
    assert np.isfinite(loss)
    probabilities = model(images, training=False).numpy()
    assert probabilities.shape == (4, 3) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_edge_cnn_is_small_enough_for_a_phone():
    params = create_model("edge-cnn", (94, 94, 3), num_classes=7).count_params()
    small = create_model("edge-cnn-small", (94, 94, 3), num_classes=7).count_params()
    large = create_model("edge-cnn-large", (94, 94, 3), num_classes=7).count_params()
    assert 100_000 <= params <= 300_000  # int8: about one byte per weight, well under 500 KB
    assert small < params / 2
    assert 1.8 * params < large <= 450_000  # still under 500 KB as an int8 file


def test_edge_cnn_wraps_for_quantization_aware_training():
    tfmot = pytest.importorskip("tensorflow_model_optimization")
    model = create_model("edge-cnn", (SIZE, SIZE, 3), num_classes=3)
    tfmot.quantization.keras.quantize_model(model)


def test_unknown_model_lists_the_registry():
    with pytest.raises(EdgeclsError, match="unknown model 'resnet9000'.*edge-cnn.*mobilenetv2"):
        create_model("resnet9000")


def test_input_smaller_than_the_model_allows_is_a_clear_error():
    with pytest.raises(EdgeclsError, match="at least 32x32"):
        create_model("edge-cnn", (16, 16, 3), num_classes=2)


def test_pretrained_weights_that_a_model_does_not_offer_are_refused():
    with pytest.raises(EdgeclsError, match="no pretrained weights"):
        create_model("edge-cnn", (SIZE, SIZE, 3), num_classes=2, weights="imagenet")


def test_weights_file_round_trip(tmp_path):
    model = create_model("edge-cnn-small", (SIZE, SIZE, 3), num_classes=2)
    path = tmp_path / "start.weights.h5"
    model.save_weights(path)
    again = create_model("edge-cnn-small", (SIZE, SIZE, 3), num_classes=2, weights=path)
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(EdgeclsError, match="cannot load weights"):
        create_model("edge-cnn", (SIZE, SIZE, 3), num_classes=2, weights=path)


def test_mixed_precision_still_outputs_float32_probabilities():
    from edgecls.core.tf_env import import_tf

    _, keras = import_tf()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = create_model("edge-cnn-small", (SIZE, SIZE, 3), num_classes=3)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    probabilities = model(np.zeros((1, SIZE, SIZE, 3), np.float32), training=False)
    assert model.layers[1].compute_dtype == "float16" and probabilities.dtype == "float32"


def test_imagenet_input_scaling_folds_exactly_into_the_first_conv():
    """mobilenetv2 --weights imagenet: conv(2x - 1) then BN equals folded-conv(x) then folded BN."""
    from edgecls.core.tf_env import import_tf
    from edgecls.train.models import _fold_input_scaling

    _, keras = import_tf()
    rng = np.random.default_rng(0)
    inputs = keras.Input((8, 8, 3))
    conv = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)
    bn = keras.layers.BatchNormalization()
    model = keras.Model(inputs, bn(conv(inputs)))
    bn.set_weights([rng.uniform(0.5, 2, 4), rng.normal(size=4), rng.normal(size=4), rng.uniform(0.5, 2, 4)])
    x = rng.random((2, 8, 8, 3)).astype(np.float32)
    expected = model(2 * x - 1, training=False).numpy()
    _fold_input_scaling(conv, bn)
    folded = model(x, training=False).numpy()
    # Equal away from the border, where "same" padding adds zeros in the two input scales alike.
    np.testing.assert_allclose(folded[:, 1:-1, 1:-1], expected[:, 1:-1, 1:-1], rtol=1e-4, atol=1e-4)


def test_failed_imagenet_download_is_a_clear_error(monkeypatch):
    from edgecls.core.tf_env import import_tf

    import_tf()
    from tf_keras.src.applications import mobilenet_v2

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -2] Name or service not known")

    monkeypatch.setattr(mobilenet_v2.data_utils, "get_file", offline)
    with pytest.raises(EdgeclsError, match="could not download imagenet weights for mobilenetv2"):
        create_model("mobilenetv2-0.35", (96, 96, 3), num_classes=2, weights="imagenet")

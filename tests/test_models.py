"""The model registry: every model builds, trains a step, predicts probabilities; names are checked."""

from __future__ import annotations

import numpy as np
import pytest

from edgecls.errors import EdgeclsError
from edgecls.train.models import create_model, list_models, model_spec

SIZE = 32


@pytest.mark.parametrize("name", list_models())
def test_model_builds_trains_and_predicts_probabilities(name):
    from edgecls.train.tf_env import import_tf

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
    assert 100_000 <= params <= 300_000  # int8: about one byte per weight, well under 500 KB
    assert small < params / 2


def test_edge_cnn_wraps_for_quantization_aware_training():
    tfmot = pytest.importorskip("tensorflow_model_optimization")
    model = create_model("edge-cnn", (SIZE, SIZE, 3), num_classes=3)
    assert model_spec("edge-cnn").quantizable
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

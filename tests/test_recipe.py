"""The training recipe's options: AdamW, the one-cycle schedule, label smoothing, strong augmentation
and the val_acc_balacc_mean monitor, each checked on its own, then together in a tiny run that is
interrupted and resumed. Tiny generated data; the module takes about half a minute on 2 cores."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from test_train import cli, make_colour_folders, quick_options

from edgecls.errors import EdgeclsError
from edgecls.train.options import TrainOptions

RECIPE_FLAGS = ("--model", "edge-cnn-small", "--image-size", "32", "--epochs", "4", "--batch-size", "16",
                "--optimizer", "adamw", "--weight-decay", "0.02", "--lr", "5e-3", "--lr-schedule", "one-cycle",
                "--augment", "strong", "--label-smoothing", "0.05", "--monitor", "val_acc_balacc_mean")  # fmt: skip


@pytest.fixture(scope="module")
def tf_keras():
    from edgecls.core.tf_env import import_tf

    return import_tf()


# -- one-cycle schedule ---------------------------------------------------------------------------


def test_one_cycle_warms_up_linearly_to_the_peak_then_decays_to_about_zero(tf_keras):
    from edgecls.train.recipe import OneCycle

    _, keras = tf_keras
    schedule = OneCycle(3e-3, total_steps=1000, warmup_steps=50)
    lr = np.array([float(schedule(step)) for step in range(1001)])
    assert int(np.argmax(lr)) == 50 and lr[50] == pytest.approx(3e-3)
    assert lr[0] == pytest.approx(3e-3 / 25)
    np.testing.assert_allclose(np.diff(lr[:51]), (3e-3 - 3e-3 / 25) / 50, rtol=1e-3)  # a straight line up
    assert np.all(np.diff(lr[50:]) <= 1e-12)  # then never up again
    assert lr[525] == pytest.approx(1.5e-3, rel=0.01)  # cosine: half the peak halfway down
    assert lr[1000] < 1e-6 and float(schedule(5000)) == pytest.approx(lr[1000])  # ~0, and stays there
    # Serialisable, as Keras schedules are: a saved optimizer config or a --resume rebuilds it.
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert isinstance(again, OneCycle) and float(again(321)) == pytest.approx(lr[321])


def test_one_cycle_option_warms_up_over_its_fraction_of_all_steps(tf_keras):
    from edgecls.train.trainer import learning_rate_schedule

    _, keras = tf_keras
    schedule = learning_rate_schedule(keras, TrainOptions(lr_schedule="one-cycle", epochs=60, learning_rate=3e-3), 47)
    assert schedule.total_steps == 60 * 47 and schedule.warmup_steps == round(0.05 * 60 * 47)
    peak = max(range(0, 60 * 47, 7), key=lambda step: float(schedule(step)))
    assert abs(peak - schedule.warmup_steps) <= 7


# -- label smoothing --------------------------------------------------------------------------------


def test_label_smoothing_matches_categorical_crossentropy_on_one_hot_labels(tf_keras):
    from edgecls.train.recipe import SmoothedSparseCrossentropy

    tf, keras = tf_keras
    probabilities = tf.constant([[0.97, 0.02, 0.01], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    labels = tf.constant([0, 1, 2])
    plain = float(keras.losses.SparseCategoricalCrossentropy()(labels, probabilities))
    assert float(SmoothedSparseCrossentropy(0.0)(labels, probabilities)) == pytest.approx(plain, rel=1e-5)
    smoothed = float(SmoothedSparseCrossentropy(0.1)(labels, probabilities))
    expected = float(keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(tf.one_hot(labels, 3), probabilities))
    assert smoothed == pytest.approx(expected, rel=1e-5)
    # By hand for the first image: targets 1 - 0.1 + 0.1/3 and 0.1/3, 0.1/3.
    first = -((0.9 + 0.1 / 3) * math.log(0.97) + 0.1 / 3 * (math.log(0.02) + math.log(0.01)))
    assert float(SmoothedSparseCrossentropy(0.1)(labels[:1], probabilities[:1])) == pytest.approx(first, rel=1e-4)
    assert first > -math.log(0.97)  # a confident right answer now costs something: less overconfidence
    # Per-image weights (what fit's class_weight becomes) still apply.
    weighted = float(SmoothedSparseCrossentropy(0.1)(labels, probabilities, sample_weight=tf.constant([2.0, 0.0, 0.0])))
    assert weighted == pytest.approx(2 * first / 3, rel=1e-4)


# -- strong augmentation -------------------------------------------------------------------------


def _disc(size: int = 40, radius: float = 9.0) -> np.ndarray:
    """A bright disc in the centre of a dark square, as float 0..1 RGB."""
    yy, xx = np.mgrid[:size, :size]
    inside = (yy - (size - 1) / 2) ** 2 + (xx - (size - 1) / 2) ** 2 <= radius**2
    return np.where(inside[..., None], [0.9, 0.3, 0.2], [0.1, 0.1, 0.15]).astype(np.float32)


def test_strong_augmentation_keeps_shape_and_range_and_changes_images(tf_keras):
    from edgecls.core.pipeline import StrongAugmenter, training_dataset

    tf, _ = tf_keras
    tf.random.set_seed(3)
    augment = tf.function(StrongAugmenter(tf))
    image = _disc()
    outs = np.stack([augment(tf.constant(image)).numpy() for _ in range(30)])
    assert outs.shape == (30, 40, 40, 3) and outs.dtype == np.float32
    assert outs.min() >= 0.0 and outs.max() <= 1.0
    assert all(np.abs(out - image).mean() > 1e-3 for out in outs)  # every draw changes the image
    assert np.abs(outs[0] - outs[1]).mean() > 1e-3  # and two draws differ
    # Reflected borders: a shifted and rotated image has no black (zero-filled) corners.
    assert outs.max(axis=-1).min() > 0.05
    # The pipeline's "strong" level runs through tf.data with the right shapes and range.
    rng = np.random.default_rng(0)
    sources = [rng.integers(0, 256, (20, 20, 3), dtype=np.uint8) for _ in range(8)]
    data, _ = training_dataset(tf, sources, np.arange(8) % 2, (16, 16), batch_size=4, num_classes=2, seed=0,
                               augment="strong", cache=None)  # fmt: skip
    for images, _ in data:
        assert images.shape[1:] == (16, 16, 3) and images.dtype == tf.float32
        assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1.0


def test_strong_augmentation_keeps_what_tells_classes_apart(tf_keras):
    """Flips, rotations, scaling and shifts move a lesion but keep its size and colour: the
    disc's area stays within the 0.8-1.25 scale range, it stays red, and rotations cover all
    directions (the brightest quarter lands in every quadrant)."""
    from edgecls.core.pipeline import StrongAugmenter

    tf, _ = tf_keras
    tf.random.set_seed(4)
    augmenter = StrongAugmenter(tf)
    image = _disc()
    area = (image[..., 0] > 0.5).mean()
    # Geometry alone at scale 1: any rotation and shift keeps the area (up to edge pixels).
    for angle in (0.3, 1.7, -2.9):
        warped = augmenter.warp(tf.constant(image), augmenter.transform(40, 40, angle, 1.0, 3.0, -2.0)).numpy()
        assert (warped[..., 0] > 0.5).mean() == pytest.approx(area, rel=0.08)
    augment = tf.function(augmenter)
    quadrants = set()
    marked = image.copy()
    marked[:20, :20] = [0.2, 0.9, 0.2]  # a green top-left corner marks the orientation
    for _ in range(40):
        out = augment(tf.constant(image)).numpy()
        disc = out[..., 0] > out[..., 2] + 0.2  # red-dominant pixels: the lesion
        assert 0.8**2 * 0.85 <= disc.mean() / area <= 1.25**2 * 1.15
        assert out[disc].mean(axis=0).argmax() == 0  # still red
        green = augment(tf.constant(marked)).numpy()
        ys, xs = np.nonzero(green[..., 1] > green[..., 0] + 0.2)
        quadrants.add((ys.mean() > 19.5, xs.mean() > 19.5))
    assert len(quadrants) == 4


# -- the val_acc_balacc_mean monitor --------------------------------------------------------------


def test_mean_monitor_picks_the_epoch_with_the_best_mean(tmp_path, tf_keras):
    from edgecls.core.metrics import validation_logs
    from edgecls.train.callbacks import BestWeights, best_so_far

    _, keras = tf_keras
    y = np.array([0] * 8 + [1] * 2)
    always_0 = np.tile([0.9, 0.1], (10, 1))  # accuracy 0.8, balanced accuracy 0.5
    logs = validation_logs(y, always_0, ["a", "b"])
    assert logs["val_acc_balacc_mean"] == pytest.approx((0.8 + 0.5) / 2)
    # Best accuracy at epoch 0, best balanced accuracy at epoch 1, best mean at epoch 2.
    epochs = [(0.90, 0.55), (0.70, 0.80), (0.85, 0.75), (0.80, 0.70)]
    history = pd.DataFrame({"epoch": range(4), "val_accuracy": [a for a, _ in epochs],
                            "val_balanced_accuracy": [b for _, b in epochs],
                            "val_acc_balacc_mean": [(a + b) / 2 for a, b in epochs]})  # fmt: skip
    assert best_so_far(history, "val_acc_balacc_mean") == (pytest.approx(0.80), 2)
    model = keras.Sequential([keras.layers.Dense(2, input_shape=(3,))])
    saver = BestWeights(tmp_path / "best.weights.h5", "val_acc_balacc_mean")
    saver.set_model(model)
    for epoch, row in history.iterrows():
        saver.on_epoch_end(epoch, row.to_dict())
    assert saver.best_epoch == 2 and (tmp_path / "best.weights.h5").is_file()


def test_qat_scores_epochs_by_the_mean_monitor(tf_keras):
    """convert's QAT keeps its epoch by the run's monitor through the same validation_logs."""
    from edgecls.convert.qat import _validation_score

    tf, keras = tf_keras
    images = np.zeros((10, 3), np.float32)
    validation = tf.data.Dataset.from_tensor_slices((images, np.array([0] * 8 + [1] * 2))).batch(4)
    model = keras.Sequential([keras.layers.Dense(2, input_shape=(3,), activation="softmax", bias_initializer=keras.initializers.Constant([1.0, 0.0]))])
    assert _validation_score(validation, "val_acc_balacc_mean")(model) == pytest.approx(0.65)


# -- options and flags ------------------------------------------------------------------------------


def test_old_configs_load_with_the_old_recipe():
    old = {"model": "edge-cnn", "augment": False, "lr_schedule": "cosine", "imbalance": "class-weights"}  # no new keys
    options = TrainOptions.from_config(old).validate()
    assert options.augment == "none" and options.optimizer == "adam" and options.label_smoothing == 0.0
    assert TrainOptions.from_config({"augment": True}).augment == "standard"
    assert TrainOptions().augment == "standard" and TrainOptions().lr_schedule == "cosine"  # defaults unchanged
    with pytest.raises(EdgeclsError, match="^`augment` must be one of none, standard, strong"):
        TrainOptions(augment="wild").validate()


def test_option_errors_name_the_field_and_the_cli_names_the_flag(tmp_path):
    with pytest.raises(EdgeclsError, match=r"^`learning_rate` must be positive, got -1") as excinfo:
        TrainOptions(learning_rate=-1).validate()
    assert "--" not in str(excinfo.value) and excinfo.value.fields == ("learning_rate",)
    with pytest.raises(EdgeclsError, match="^`resume` continues a run and `force` replaces it"):
        TrainOptions(resume=True, force=True).validate()
    data = tmp_path / "data"
    data.mkdir()
    result = cli("train", data, "-o", tmp_path / "run", "--lr", "-1")
    assert result.exit_code == 2 and "edgecls: error: --lr must be positive, got -1" in result.output, result.output


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--label-smoothing", "1.5"), "--label-smoothing must be in [0, 1), got 1.5"),
        (("--optimizer", "adamw", "--weight-decay", "-0.1"), "--weight-decay must be in [0, 1), got -0.1"),
        (("--weight-decay", "0.02"), "--weight-decay applies to --optimizer adamw only"),
        (("--warmup-fraction", "0.1"), "--warmup-fraction applies to --lr-schedule one-cycle only"),
        (("--lr-schedule", "one-cycle", "--warmup-fraction", "1"), "--warmup-fraction must be in [0, 1), got 1.0"),
        (("--augment", "strong", "--no-augment"), "--no-augment and --augment strong disagree"),
        (("--class-weight-power", "5"), "--class-weight-power must be in [0, 4], got 5.0"),
    ],
)
def test_bad_recipe_flags_are_one_line_errors(tmp_path, flags, message):
    data = tmp_path / "data"
    data.mkdir()
    result = cli("train", data, "-o", tmp_path / "run", *flags)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("edgecls: error: ") and result.output.count("\n") == 1, result.output
    assert message in result.output
    assert not (tmp_path / "run").exists()


# -- the whole recipe, interrupted and resumed ----------------------------------------------------


def test_tiny_run_with_the_whole_recipe_resumes(tmp_path, tf_keras):
    from edgecls.train.trainer import train_model

    _, keras = tf_keras
    data = make_colour_folders(tmp_path / "data", per_class=24, size=32)

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    run_dir = tmp_path / "run"
    options = quick_options(optimizer="adamw", weight_decay=0.02, lr_schedule="one-cycle", augment="strong",
                            label_smoothing=0.05, monitor="val_acc_balacc_mean")  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        train_model(options, data, run_dir, extra_callbacks=[Interrupt()])
    config = json.loads((run_dir / "config.json").read_text())["options"]
    assert {k: config[k] for k in ("optimizer", "lr_schedule", "augment", "label_smoothing", "monitor")} == {
        "optimizer": "adamw", "lr_schedule": "one-cycle", "augment": "strong", "label_smoothing": 0.05,
        "monitor": "val_acc_balacc_mean"}  # fmt: skip
    result = cli("train", data, "--output", run_dir, "--resume")
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output and "Epoch 1/4" not in result.output and "best epoch" in result.output
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [0, 1, 2, 3] and "val_acc_balacc_mean" in history
    # The schedule went on where it stopped: down after the warm-up, to ~0 at the end (the logged
    # rate is the last step's; 12 steps in all here, so that is still 2% of the peak).
    assert history["learning_rate"].is_monotonic_decreasing and history["learning_rate"].iloc[-1] < 0.03 * 5e-3
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["val"]["accuracy"] > 0.5  # learns the colours (majority class: 1/3)

    # The same recipe from the command line, in one go, writes a whole run folder.
    result = cli("train", data, "--output", tmp_path / "cli", *RECIPE_FLAGS, "--epochs", "1", "--class-weight-power", "1")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "cli" / "config.json").read_text())["options"]["class_weight_power"] == 1.0
    for name in ("model.keras", "config.json", "split.csv", "history.csv", "metrics.json", "report.md"):
        assert (tmp_path / "cli" / name).is_file(), name

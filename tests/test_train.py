"""Training end to end on small synthetic data: a real (short) fit, resume, --force, the run folder.

One run is trained per module, the way a user's would be: interrupted after its second epoch
(a callback raises KeyboardInterrupt, as Ctrl-C would), then continued with `edgecls train
--resume`. The tests read that run. Images are 32x32 and the model is edge-cnn-small, so the
whole module stays well under a minute on 2 cores.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from edgecls.cli import app
from edgecls.core import runs
from edgecls.data.split import stratified_subset
from edgecls.errors import EdgeclsError
from edgecls.train.options import TrainOptions
from edgecls.train.run import prepare_run_dir

COLOURS = {"blue": (40, 60, 200), "green": (40, 190, 60), "red": (200, 40, 40)}
EPOCHS = 4


def make_colour_folders(root, per_class: int = 40, size: int = 40, seed: int = 0):
    """One folder per class of noisy, mostly-one-colour images: easy, but only if the model learns."""
    rng = np.random.default_rng(seed)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 45, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}_{i:03d}.png")
    return root


def quick_options(**overrides) -> TrainOptions:
    values = dict(model="edge-cnn-small", image_size=32, epochs=EPOCHS, batch_size=16, learning_rate=5e-3,
                  patience=EPOCHS, tensorboard=False, verbose=2)  # fmt: skip
    values.update(overrides)
    return TrainOptions(**values)


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def colour_data(tmp_path_factory):
    return make_colour_folders(tmp_path_factory.mktemp("colours"))


@pytest.fixture(scope="module")
def resumed_run(colour_data, tmp_path_factory):
    """A run interrupted after epoch 2 of 4, then finished by `edgecls train --resume`."""
    from edgecls.core.tf_env import import_tf
    from edgecls.train.trainer import train_model

    _, keras = import_tf()

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:  # after the second epoch's history, before its backup: like Ctrl-C
                raise KeyboardInterrupt

    run_dir = tmp_path_factory.mktemp("runs") / "colours"
    with pytest.raises(KeyboardInterrupt):
        train_model(quick_options(), colour_data, run_dir, extra_callbacks=[Interrupt()])
    interrupted = pd.read_csv(run_dir / "history.csv")
    assert not (run_dir / "model.keras").exists()
    result = cli("train", colour_data, "--output", run_dir, "--resume")
    return run_dir, interrupted, result


def test_resume_continues_from_the_last_backed_up_epoch(resumed_run):
    run_dir, interrupted, result = resumed_run
    assert result.exit_code == 0, result.output
    assert interrupted["epoch"].tolist() == [0, 1]
    assert "resuming" in result.output
    # Epoch 2 was interrupted before its backup, so it is trained again; epoch 1 is not.
    assert "Epoch 2/4" in result.output and "Epoch 1/4" not in result.output
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [0, 1, 2, 3]
    assert history.loc[0, "loss"] == pytest.approx(interrupted.loc[0, "loss"])


def test_run_folder_has_every_file_of_the_contract(resumed_run):
    run_dir, _, result = resumed_run
    for name in ("model.keras", "config.json", "labels.json", "split.csv", "history.csv", "metrics.json", "report.md",
                 "predictions.csv", "checkpoints/best.weights.h5", "plots/history.png", "plots/confusion_val.png",
                 "plots/confusion_test.png", "plots/roc_test.png", "plots/gradcam_test.png"):  # fmt: skip
        assert (run_dir / name).is_file(), name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["labels"] == sorted(COLOURS) == json.loads((run_dir / "labels.json").read_text())
    assert config["image_size"] == [32, 32] and config["model"] == "edge-cnn-small"
    assert config["options"]["epochs"] == EPOCHS and "force" not in config["options"]
    assert "model.keras" in result.output and "metrics.json" in result.output  # files listed at the end
    report = (run_dir / "report.md").read_text()
    assert "plots/confusion_test.png" in report and "balanced accuracy" in report


def test_trained_model_beats_the_majority_class_in_inference_mode(resumed_run):
    run_dir, _, _ = resumed_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for split in ("val", "test"):
        assert metrics[split]["images"] == 18
        assert metrics[split]["accuracy"] > 0.6, metrics[split]  # majority class: 1/3
        assert metrics[split]["macro_auc"] > 0.8


def test_load_run_gives_the_model_and_its_split(resumed_run):
    run_dir, _, _ = resumed_run
    run = runs.load_run(run_dir)
    assert run.labels == sorted(COLOURS) and run.image_size == (32, 32)
    assert run.model.output_shape == (None, 3)
    assert (run.split == "train").sum() == 84 and set(run.split) == {"train", "val", "test"}
    # The saved model reproduces the probabilities the report was made from (inference mode).
    val = run.split_items("val")
    images = run.dataset.load_images(val["key"], run.image_size)
    probabilities = run.model.predict(images.astype(np.float32) / 255.0, verbose=0)
    table = pd.read_csv(run_dir / "predictions.csv").query("split == 'val'")
    np.testing.assert_allclose(probabilities, table[[f"p_{c}" for c in run.labels]].to_numpy(), atol=1e-4)
    metrics = json.loads((run_dir / "metrics.json").read_text())["val"]
    assert metrics["accuracy"] == pytest.approx((table["label"] == table["predicted"]).mean())


def test_evaluate_a_run_folder_on_its_validation_split(resumed_run):
    run_dir, _, _ = resumed_run
    result = cli("evaluate", run_dir, "--split", "val")
    assert result.exit_code == 0, result.output
    folder = run_dir / "evaluate" / "model-val"
    again = json.loads((folder / "metrics.json").read_text())["val"]
    first = json.loads((run_dir / "metrics.json").read_text())["val"]  # from the in-memory model after training
    assert again["confusion_matrix"] == first["confusion_matrix"]
    assert again["macro_auc"] == pytest.approx(first["macro_auc"], abs=1e-4)
    assert (folder / "plots" / "gradcam_val.png").is_file() and (folder / "report.md").is_file()
    assert (folder / "plots" / "history.png").is_file()  # the run's own model: its learning curves too


KILL_ARGS = ("--model", "edge-cnn-small", "--image-size", "32", "--epochs", "6", "--batch-size", "16",
             "--lr", "5e-3", "--patience", "6", "--seed", "7")  # fmt: skip


def _train_process(data, run_dir, *extra):
    import os
    import subprocess
    import sys

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    argv = [sys.executable, "-m", "edgecls", "train", str(data), "--output", str(run_dir), *KILL_ARGS, *extra]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)


@pytest.mark.slow
def test_killed_training_resumes_to_a_comparable_result(tmp_path):
    """SIGKILL `edgecls train` in the middle of its third epoch (no Python cleanup runs, as on a
    power cut or the OOM killer), then `--resume`: it continues from the last backup, its
    history has each epoch once, and it ends where an uninterrupted run with the same seed ends."""
    import signal
    import time

    data = make_colour_folders(tmp_path / "data", per_class=100, size=32)
    killed = tmp_path / "killed"
    proc = _train_process(data, killed)
    history = killed / "history.csv"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if history.is_file() and len(pd.read_csv(history)) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "training ended before it could be killed: " + proc.stdout.read().decode()[-2000:]
    time.sleep(0.3)  # into the third epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = pd.read_csv(history)
    assert 2 <= len(before) < 6 and not (killed / "model.keras").exists()
    # What the killed run left under its own names is whole (temporary files are dot-files).
    assert json.loads((killed / "config.json").read_text())["model"] == "edge-cnn-small"
    assert len(pd.read_csv(killed / "split.csv")) == 300

    resumed = _train_process(data, killed, "--resume")
    out = resumed.communicate(timeout=600)[0].decode()
    assert resumed.returncode == 0, out[-3000:]
    assert "resuming" in out and "Epoch 1/6" not in out
    after = pd.read_csv(history)
    assert after["epoch"].tolist() == list(range(6))  # every epoch once, none lost or repeated
    assert after.loc[0, "loss"] == pytest.approx(before.loc[0, "loss"])  # epoch 1 was not trained again

    straight = _train_process(data, tmp_path / "straight")
    out = straight.communicate(timeout=600)[0].decode()
    assert straight.returncode == 0, out[-3000:]
    resumed_val = json.loads((killed / "metrics.json").read_text())["val"]
    straight_val = json.loads((tmp_path / "straight" / "metrics.json").read_text())["val"]
    assert resumed_val["accuracy"] >= 0.9 and straight_val["accuracy"] >= 0.9
    assert abs(resumed_val["accuracy"] - straight_val["accuracy"]) <= 0.1


def test_existing_run_is_not_overwritten_without_force(resumed_run, colour_data):
    run_dir, _, _ = resumed_run
    before = (run_dir / "model.keras").stat().st_mtime_ns
    result = cli("train", colour_data, "--output", run_dir, "--epochs", 1)
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "already holds a run" in result.output and "--force" in result.output
    assert (run_dir / "model.keras").stat().st_mtime_ns == before


def test_force_replaces_only_run_outputs(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "plots").mkdir(parents=True)
    for name in ("model.keras", "config.json", "metrics.json", "plots/history.png", "notes.txt"):
        (run_dir / name).write_text("old")
    with pytest.raises(EdgeclsError, match="already holds a run.*pass `resume` to continue it or `force` to replace it"):
        prepare_run_dir(run_dir)
    assert prepare_run_dir(run_dir, force=True) is False
    assert sorted(p.name for p in run_dir.iterdir()) == ["notes.txt"]  # the user's own file stays


def test_resume_and_force_together_are_refused(colour_data, tmp_path):
    result = cli("train", colour_data, "-o", tmp_path / "run", "--resume", "--force")
    assert result.exit_code == 2 and "--resume continues a run and --force replaces it: pass one of them" in result.output


def test_unknown_model_is_a_one_line_error(colour_data, tmp_path):
    result = cli("train", colour_data, "-o", tmp_path / "run", "--model", "resnet9000")
    assert result.exit_code == 2
    assert result.output.startswith("edgecls: error: unknown model 'resnet9000'") and "edge-cnn" in result.output
    assert not (tmp_path / "run").exists()


def test_missing_dataset_is_a_one_line_error(tmp_path):
    result = cli("train", tmp_path / "nowhere", "-o", tmp_path / "run")
    assert result.exit_code == 2 and result.output.startswith("edgecls: error: dataset not found")


def test_stratified_subset_keeps_every_class(colour_data):
    from edgecls.data.datasets import load_dataset

    subset = stratified_subset(load_dataset(colour_data), limit=15, seed=1)
    counts = subset.items["label"].value_counts()
    assert sorted(counts.index) == sorted(COLOURS) and counts.min() >= 3 and len(subset) == 15
    assert subset.items.index.tolist() == list(range(15))
    again = stratified_subset(load_dataset(colour_data), limit=15, seed=1)
    assert again.items["key"].tolist() == subset.items["key"].tolist()  # same subset on --resume


def test_class_weights_are_softened_balanced_weights():
    from sklearn.utils.class_weight import compute_class_weight

    from edgecls.core.pipeline import class_weights

    labels = np.array([0] * 80 + [1] * 15 + [2] * 5)
    balanced = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    assert class_weights(labels, 3, power=1.0) == pytest.approx(dict(enumerate(balanced)))
    soft = class_weights(labels, 4, power=0.5)
    assert soft[2] == pytest.approx(balanced[2] ** 0.5) and soft[3] == 1.0  # class 3: not in train


def test_pipeline_balances_and_augments_within_range():
    from edgecls.core.pipeline import training_dataset
    from edgecls.core.tf_env import import_tf

    tf, _ = import_tf()
    rng = np.random.default_rng(0)
    sources = [rng.integers(0, 256, (20, 20, 3), dtype=np.uint8) for _ in range(40)]  # HMNIST-style arrays
    labels = np.array([0] * 36 + [1] * 4)
    data, steps = training_dataset(tf, sources, labels, (16, 16), batch_size=8, num_classes=2, seed=0, balanced=True)
    seen = []
    for images, batch_labels in data:
        assert images.shape[1:] == (16, 16, 3) and images.dtype == tf.float32
        assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1.0
        seen += batch_labels.numpy().tolist()
    assert steps == 5 and len(seen) == 40
    assert 10 <= seen.count(1) <= 30  # ~half, against 10% in the data


@pytest.mark.slow
@pytest.mark.shared_data
def test_short_training_on_real_blood_smears(tmp_path):
    from conftest import shared_dataset

    from edgecls.train.trainer import train_model

    options = quick_options(image_size=48, epochs=2, limit=160, batch_size=16)
    run = train_model(options, shared_dataset("blood"), tmp_path / "blood")
    metrics = run.metrics
    assert len(run.labels) == 4 and metrics["val"]["images"] >= 16
    # Judged in inference mode on its held validation split, it must beat always answering the
    # validation split's commonest class.
    val = run.split_items("val")
    majority = val["label"].value_counts().iloc[0] / len(val)
    assert metrics["val"]["accuracy"] > majority, (metrics["val"]["accuracy"], majority)
    reopened = runs.load_run(tmp_path / "blood")  # a --limit run reloads exactly its subset
    assert len(reopened.split) == len(run.split) <= 170


def test_pipeline_streams_hmnist_rows_like_load_images(tmp_path):
    from edgecls.core.pipeline import image_dataset, image_sources
    from edgecls.core.tf_env import import_tf
    from edgecls.data.datasets import load_dataset

    tf, _ = import_tf()
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (12, 8 * 8 * 3))
    table = pd.DataFrame(pixels, columns=[f"pixel{i:04d}" for i in range(8 * 8 * 3)]).assign(label=[0, 1, 4] * 4)
    table.to_csv(tmp_path / "hmnist_8_8_RGB.csv", index=False)
    dataset = load_dataset(tmp_path)
    keys = dataset.items["key"]
    streamed = np.stack([image for image, _ in image_dataset(tf, image_sources(dataset, keys, (16, 16)),
                                                              dataset.items["label_index"], (16, 16)).as_numpy_iterator()])  # fmt: skip
    np.testing.assert_array_equal(streamed, dataset.load_images(keys, (16, 16)))


def test_pipeline_streams_files_like_load_images(colour_data):
    from edgecls.core.pipeline import image_dataset, image_sources
    from edgecls.core.tf_env import import_tf
    from edgecls.data.datasets import load_dataset

    tf, _ = import_tf()
    dataset = load_dataset(colour_data)
    keys = dataset.items["key"][::10]
    sources = image_sources(dataset, keys, (24, 24))
    assert sources == [dataset.image_source(k) for k in keys]  # the bulk form gives the same answers
    streamed = np.stack([image for image, _ in image_dataset(tf, sources, np.zeros(len(keys)), (24, 24)).as_numpy_iterator()])
    np.testing.assert_array_equal(streamed, dataset.load_images(keys, (24, 24)))


def test_early_stopping_counts_patience_across_a_resume():
    """Best at epoch 0, then two worse epochs before the interruption: with patience 3 the
    resumed run stops after one more worse epoch, exactly as the uninterrupted run would."""
    from edgecls.train.callbacks import ResumableEarlyStopping

    history = pd.DataFrame({"epoch": [0, 1, 2, 3], "val_accuracy": [0.9, 0.5, 0.6, 0.95]})  # epoch 3 is replayed

    class Model:
        stop_training = False

    stopper = ResumableEarlyStopping("val_accuracy", mode="max", patience=3, history=history)
    stopper.set_model(Model())
    stopper.on_train_begin()
    stopper.on_epoch_begin(3)
    assert stopper.best == 0.9 and stopper.best_epoch == 0 and stopper.wait == 2
    stopper.on_epoch_end(3, {"val_accuracy": 0.7})
    assert stopper.model.stop_training

    fresh = ResumableEarlyStopping("val_accuracy", mode="max", patience=3)  # a new run: no history
    fresh.set_model(Model())
    fresh.on_train_begin()
    fresh.on_epoch_begin(0)
    fresh.on_epoch_end(0, {"val_accuracy": 0.7})
    assert fresh.wait == 0 and not fresh.model.stop_training


def test_mirrored_strategy_and_tensorboard_logs(colour_data, tmp_path, caplog):
    """--strategy mirrored builds and fits under tf.distribute (one CPU replica here; the same
    code spreads over every local GPU), and TensorBoard event files land in logs/."""
    from edgecls.train.trainer import train_model

    with caplog.at_level("INFO", logger="edgecls"):
        run = train_model(quick_options(epochs=1, strategy="mirrored", tensorboard=True), colour_data, tmp_path / "run")
    said = [record.getMessage() for record in caplog.records]
    assert any("1 replicas" in line for line in said), said
    events = list((tmp_path / "run" / "logs").rglob("events.out.tfevents.*"))
    assert events and all(p.stat().st_size > 0 for p in events)
    assert run.metrics["val"]["images"] > 0 and (tmp_path / "run" / "model.keras").is_file()


def test_epochs_left_unset_means_the_default_for_a_new_run_and_the_runs_own_on_resume():
    """`TrainOptions().epochs` is None: `train_model` makes it DEFAULT_EPOCHS for a new run, and a
    resume (API or `--resume` without `--epochs`, the fixture above) keeps the run's saved value."""
    from edgecls.train.options import DEFAULT_EPOCHS, TrainOptions

    assert TrainOptions().epochs is None and DEFAULT_EPOCHS == 30
    TrainOptions().validate()  # None is valid
    saved = TrainOptions(epochs=50).to_config()
    assert TrainOptions.from_config(saved, epochs=TrainOptions(resume=True).epochs).epochs == 50
    assert TrainOptions.from_config(saved, epochs=80).epochs == 80
    with pytest.raises(EdgeclsError, match="epochs"):
        TrainOptions(epochs=0).validate()

"""`edgecls train --strategy multi-worker`: two worker processes on 127.0.0.1 (CPU only).

One job is trained per module the way a cluster loses a machine: worker 1 is killed with SIGKILL
in the middle of the second epoch, worker 0 must then fail on its own within --worker-timeout,
and both are started again with the same command; the tests read that run folder. Every wait
is bounded and every process started here is killed in a `finally`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from edgecls.cli import app
from edgecls.core import runs
from edgecls.errors import EdgeclsError
from edgecls.train.cluster import read_tf_config

EPOCHS = 3
ARGS = ("--strategy", "multi-worker", "--model", "edge-cnn-small", "--image-size", "32", "--epochs", str(EPOCHS),
        "--batch-size", "16", "--lr", "5e-3", "--patience", str(EPOCHS), "--worker-timeout", "20")  # fmt: skip


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}})


def start_worker(ports, index, data, run_dir, tmp, *extra) -> subprocess.Popen:
    env = dict(os.environ, TF_CONFIG=tf_config(ports, index), CUDA_VISIBLE_DEVICES="-1", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONUNBUFFERED="1", TMPDIR=str(tmp))  # fmt: skip
    argv = [sys.executable, "-m", "edgecls", "train", str(data), "--output", str(run_dir), *ARGS, *extra]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


def finish(procs, timeout: float) -> list[tuple[int, str, str]]:
    """Each process's (exit code, stdout, stderr); all of them killed if not done by `timeout`."""
    deadline = time.monotonic() + timeout
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((proc.returncode, out, err))
    finally:
        kill(procs)
    return results


def kill(procs) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()  # SIGKILL: TensorFlow's distributed runtime handles SIGTERM itself
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def colour_data(tmp_path_factory):
    from test_train import make_colour_folders

    return make_colour_folders(tmp_path_factory.mktemp("colours"), per_class=20, size=32)


@pytest.fixture(scope="module")
def restarted_job(colour_data, tmp_path_factory):
    """Worker 1 killed in the middle of epoch 2 of 3; worker 0 left to notice; both started again."""
    root = tmp_path_factory.mktemp("multi_worker")
    run_dir, tmp = root / "run", root / "tmp"
    tmp.mkdir()
    backup = run_dir / runs.BACKUP_DIR / "chief" / "checkpoint"
    procs = []
    try:
        ports = free_ports(2)
        procs = [start_worker(ports, i, colour_data, run_dir, tmp) for i in range(2)]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not backup.is_file() and all(p.poll() is None for p in procs):
            time.sleep(0.05)
        assert backup.is_file() and procs[1].poll() is None, "no epoch was backed up: " + procs[0].communicate(timeout=60)[1][-2000:]
        time.sleep(0.2)  # into epoch 2 (each epoch ends with a validation pass: longer than this)
        assert procs[1].poll() is None, "worker 1 ended before it could be killed"
        procs[1].send_signal(signal.SIGKILL)
        lost_after = time.monotonic()
        (code, _, lost_err), = finish(procs[:1], timeout=120)
        lost_seconds = time.monotonic() - lost_after
        kill(procs)
        before = pd.read_csv(run_dir / runs.HISTORY_FILE)

        ports = free_ports(2)
        procs = [start_worker(ports, i, colour_data, run_dir, tmp) for i in range(2)]
        results = finish(procs, timeout=400)
    finally:
        kill(procs)
    return {"run_dir": run_dir, "tmp": tmp, "before": before, "lost": (code, lost_err, lost_seconds), "results": results}


@pytest.mark.slow
def test_a_lost_worker_fails_the_other_within_the_timeout_in_one_line(restarted_job):
    code, err, seconds = restarted_job["lost"]
    assert code == 2 and seconds < 100, err[-2000:]
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert errors == [errors[-1]] and errors[-1].startswith("edgecls: error: worker 0 lost the other workers"), err[-2000:]
    assert "Traceback" not in err and "E0000" not in err


@pytest.mark.slow
def test_restarted_job_resumes_from_the_last_completed_epoch(restarted_job):
    (chief_code, chief_out, chief_err), (code, out, err) = restarted_job["results"]
    assert chief_code == 0, chief_err[-3000:]
    assert code == 0, err[-3000:]
    before = restarted_job["before"]
    done = len(before)
    assert 1 <= done < EPOCHS
    assert f"resuming from epoch {done}" in chief_err
    assert "Epoch 1/" not in chief_out and f"Epoch {done + 1}/{EPOCHS}" in chief_out
    after = pd.read_csv(restarted_job["run_dir"] / runs.HISTORY_FILE)
    assert after["epoch"].tolist() == list(range(EPOCHS))  # each epoch once
    assert after.loc[: done - 1, "loss"].tolist() == pytest.approx(before["loss"].tolist())  # not trained again
    assert "the chief writes the run folder" in out


@pytest.mark.slow
def test_the_job_writes_one_complete_run_folder(restarted_job):
    run_dir = restarted_job["run_dir"]
    for name in runs.RUN_FILES:
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.rglob("workertemp_*")), "another worker's backup folder was left behind"
    # Worker 1's own folder went with it (the restart removed what the killed process left).
    assert not list(restarted_job["tmp"].glob("edgecls-*")), "a worker's temporary run folder was left behind"
    config = json.loads((run_dir / runs.CONFIG_FILE).read_text())
    assert config["options"]["strategy"] == "multi-worker"
    assert len(pd.read_csv(run_dir / "split.csv")) == 60

    run = runs.load_run(run_dir)
    assert run.model.output_shape == (None, 3)
    # metrics.json evaluates model.keras, the best epoch by the history's monitor: the same numbers.
    history, metrics = run.history, run.metrics
    best = history.loc[history["val_balanced_accuracy"].idxmax()]
    assert metrics["val"]["balanced_accuracy"] == pytest.approx(best["val_balanced_accuracy"], abs=1e-6)
    assert metrics["val"]["accuracy"] == pytest.approx(best["val_accuracy"], abs=1e-6)
    assert metrics["val"]["accuracy"] >= 0.6  # it learned the colours


@pytest.mark.slow
def test_workers_with_different_datasets_are_refused_in_one_line(colour_data, tmp_path):
    from test_train import make_colour_folders

    other = make_colour_folders(tmp_path / "other", per_class=19, size=32)
    procs = []
    try:
        ports = free_ports(2)
        procs = [start_worker(ports, i, data, tmp_path / "run", tmp_path) for i, data in enumerate((colour_data, other))]
        results = finish(procs, timeout=180)
    finally:
        kill(procs)
    for code, _, err in results:
        assert code == 2, err[-2000:]
        last = err.strip().splitlines()[-1]
        assert last.startswith("edgecls: error: the dataset differs between workers (worker 0: 60 images, worker 1: 57 images"), err[-2000:]
        assert "Traceback" not in err
    assert not (tmp_path / "run" / "model.keras").exists()


@pytest.mark.slow
def test_a_worker_that_cannot_reach_the_others_fails_within_the_timeout(colour_data, tmp_path):
    ports = free_ports(2)
    proc = start_worker(ports, 0, colour_data, tmp_path / "run", tmp_path, "--worker-timeout", "3")
    started = time.monotonic()
    (code, _, err), = finish([proc], timeout=120)
    assert code == 2 and time.monotonic() - started < 100, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("edgecls: error: worker 0 (127.0.0.1:") and "within 3 s" in last, err[-2000:]
    assert "Traceback" not in err and "E0000" not in err


# -- refused before any worker starts: no TensorFlow ----------------------------------------------


@pytest.mark.parametrize(
    "value, message",
    [
        ("", "TF_CONFIG: it is not set"),
        ("{not json", "TF_CONFIG to be JSON"),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}}', '"cluster" and "task" objects'),
        ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', '"host:port" addresses'),
        ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}', "task index 2 is not one of worker 0-1"),
        ('{"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}', "an address appears twice"),
        ('{"cluster": {"ps": ["a:1"], "worker": ["b:2"]}, "task": {"type": "worker", "index": 0}}', "'ps' is not used"),
    ],
)
def test_bad_tf_config_is_one_line_error(value, message):
    with pytest.raises(EdgeclsError) as info:
        read_tf_config({"TF_CONFIG": value})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_chief_is_the_chief_task_or_worker_zero():
    cluster = {"chief": ["c:1"], "worker": ["w:1", "w:2"]}
    ranks = {(t, i): read_tf_config({"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": t, "index": i}})})
             for t, i in (("chief", 0), ("worker", 0), ("worker", 1))}  # fmt: skip
    assert [(w.rank, w.is_chief, w.count) for w in ranks.values()] == [(0, True, 3), (1, False, 3), (2, False, 3)]
    solo = read_tf_config({"TF_CONFIG": tf_config([1, 2], 0)})
    assert solo.is_chief and solo.count == 2


def test_cli_refuses_a_malformed_tf_config_in_one_line(colour_data, tmp_path):
    result = CliRunner().invoke(app, ["train", str(colour_data), "--output", str(tmp_path / "run"), *ARGS],
                                env={"TF_CONFIG": '{"cluster": {"worker": "127.0.0.1:1"}}'})  # fmt: skip
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        'edgecls: error: --strategy multi-worker needs TF_CONFIG to have "cluster" and "task" objects, '
        'got {"cluster": {"worker": "127.0.0.1:1"}}'
    ]
    assert not (tmp_path / "run").exists()


def test_batch_that_does_not_split_over_the_workers_and_resume_are_refused(colour_data, tmp_path):
    env = {"TF_CONFIG": tf_config([1, 2], 0)}
    base = ["train", str(colour_data), "--output", str(tmp_path / "run"), *ARGS]
    result = CliRunner().invoke(app, [*base, "--batch-size", "15"], env=env)
    assert result.exit_code == 2 and "--batch-size 15 (images per step over all workers) does not split evenly over 2 workers" in result.output
    result = CliRunner().invoke(app, [*base, "--resume"], env=env)
    assert result.exit_code == 2 and "a multi-worker job continues by itself" in result.output


def test_one_kind_of_checkpoint_is_never_continued_as_the_other(colour_data, tmp_path):
    """An unfinished one-machine run is not taken over by a multi-worker job, nor the reverse."""
    from edgecls.data.datasets import load_dataset
    from edgecls.data.split import make_split, save_split
    from edgecls.train.options import TrainOptions
    from edgecls.train.run import prepare_multi_worker_run_dir, write_run_config
    from edgecls.train.trainer import train_model

    dataset = load_dataset(colour_data)
    one, many = tmp_path / "one", tmp_path / "many"
    for run_dir, strategy in ((one, "default"), (many, "multi-worker")):
        (run_dir / runs.BACKUP_DIR).mkdir(parents=True)
        write_run_config(run_dir, colour_data, dataset, TrainOptions(strategy=strategy))
        save_split(run_dir, dataset, make_split(dataset))
    with pytest.raises(EdgeclsError, match="holds an unfinished one-machine run: continue it there with `resume`"):
        prepare_multi_worker_run_dir(one, TrainOptions(strategy="multi-worker"))
    with pytest.raises(EdgeclsError, match="was trained on several workers: start its workers again"):
        train_model(TrainOptions(resume=True), colour_data, many)
    with pytest.raises(EdgeclsError, match=r"trained with other options \(batch_size 32, now 64\)"):
        prepare_multi_worker_run_dir(many, TrainOptions(strategy="multi-worker", batch_size=64))
    assert prepare_multi_worker_run_dir(many, TrainOptions(strategy="multi-worker", epochs=50))  # more epochs: continued

"""The cost of two local workers against one: wall time of `edgecls train` on one process
(--strategy default) and on two worker processes on 127.0.0.1 (--strategy multi-worker), same
data and recipe, alternated so both see the same machine. On a 2-core machine two workers share
the cores: this measures the price of the distributed runtime, not a speed-up.

    python scripts/multi_worker_cost.py OUT_DIR [--rounds 2] [--per-class 40] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run(data, out, workers, recipe, timeout=1800):
    shutil.rmtree(out, ignore_errors=True)
    base = [sys.executable, "-m", "edgecls", "train", str(data), "--output", str(out), *recipe]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="-1", TF_CPP_MIN_LOG_LEVEL="2")
    started = time.perf_counter()
    if workers == 1:
        procs = [subprocess.Popen(base, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)]
    else:
        ports = free_ports(workers)
        cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
        procs = [subprocess.Popen([*base, "--strategy", "multi-worker"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  env=dict(env, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})))
                 for i in range(workers)]  # fmt: skip
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=timeout)
            if proc.returncode:
                raise SystemExit(f"training failed: {err.decode()[-2000:]}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    from test_train import make_colour_folders

    data = args.out / "data"
    if not data.exists():
        make_colour_folders(data, per_class=args.per_class, size=32)
    recipe = ["--model", "edge-cnn-small", "--image-size", "32", "--epochs", str(args.epochs), "--batch-size", "16",
              "--lr", "5e-3", "--patience", str(args.epochs)]  # fmt: skip
    times = {1: [], 2: []}
    for _ in range(args.rounds):
        for workers in (1, 2):
            times[workers].append(run(data, args.out / f"run{workers}", workers, recipe))
            print(f"{workers} worker(s): {times[workers][-1]:.1f} s", flush=True)
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(f"median wall time: 1 worker {one:.1f} s, 2 workers {two:.1f} s; ratio 2/1 = {two / one:.2f}")


if __name__ == "__main__":
    main()

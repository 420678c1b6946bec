"""Training on several machines: the cluster from TF_CONFIG, TensorFlow's MultiWorkerMirroredStrategy
with bounded waits, and the checks that every worker trains the same thing.

TF_CONFIG is TensorFlow's own description of the job (`{"cluster": {"worker": ["host:port", ...]},
"task": {"type": "worker", "index": 0}}`; a separate "chief" task is accepted too). Reading it here
first turns a missing or malformed one into one line instead of a TensorFlow traceback. Nothing in
this module imports TensorFlow at import time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Mapping

import numpy as np

from edgecls.errors import EdgeclsError, first_line
from edgecls.log import get_logger

logger = get_logger("train")

TF_CONFIG = "TF_CONFIG"
_JOBS = ("chief", "worker")  # the task types that train; evaluator and ps do not exist for this strategy
_started = False  # whether this process has configured TensorFlow's distributed runtime


def runtime_started() -> bool:
    """True once `connect` has started TensorFlow's distributed runtime in this process."""
    return _started


@dataclasses.dataclass(frozen=True)
class Worker:
    """This process's place in the cluster: `cluster` ({"chief": [...], "worker": [...]}),
    `task_type` and `task_index` as TF_CONFIG names them."""

    cluster: dict[str, list[str]]
    task_type: str
    task_index: int

    @property
    def addresses(self) -> list[str]:
        return [address for job in _JOBS for address in self.cluster.get(job, [])]

    @property
    def count(self) -> int:
        return len(self.addresses)

    @property
    def rank(self) -> int:
        """0 for the chief, then the workers in TF_CONFIG order (TensorFlow's `id_in_cluster`)."""
        return self.task_index + (len(self.cluster.get("chief", [])) if self.task_type == "worker" else 0)

    @property
    def is_chief(self) -> bool:
        """The one that writes the run folder: the "chief" task, or worker 0 when there is none."""
        return self.rank == 0

    @property
    def name(self) -> str:
        return f"{self.task_type} {self.task_index}"

    @property
    def address(self) -> str:
        return self.cluster[self.task_type][self.task_index]


def read_tf_config(environ: Mapping[str, str] | None = None) -> Worker:
    """The cluster and this worker's task from TF_CONFIG; EdgeclsError (one line) when it is
    missing or not a usable description of a job with at least one worker."""
    environ = os.environ if environ is None else environ
    text = environ.get(TF_CONFIG, "").strip()
    what = "`strategy` multi-worker needs TF_CONFIG"
    if not text:
        raise EdgeclsError(f"{what}: it is not set (see docs/multi-machine.md for one per worker)", fields="strategy")
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise EdgeclsError(f"{what} to be JSON: {first_line(exc)}", fields="strategy") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict) or not isinstance(config.get("task"), dict):
        raise EdgeclsError(f'{what} to have "cluster" and "task" objects, got {text[:120]}', fields="strategy")
    cluster: dict[str, list[str]] = {}
    for job, addresses in config["cluster"].items():
        if job not in _JOBS:
            raise EdgeclsError(f'TF_CONFIG: cluster job {job!r} is not used by multi-worker training (only "chief" and "worker")')
        if not isinstance(addresses, list) or not addresses or not all(_is_address(a) for a in addresses):
            raise EdgeclsError(f'TF_CONFIG: cluster "{job}" must be a list of "host:port" addresses, got {addresses!r}')
        cluster[job] = list(addresses)
    if len(cluster.get("chief", [])) > 1:
        raise EdgeclsError("TF_CONFIG: a cluster has at most one chief")
    everyone = [a for job in _JOBS for a in cluster.get(job, [])]
    if not everyone:
        raise EdgeclsError('TF_CONFIG: the cluster lists no "worker" (or "chief") address')
    if len(set(everyone)) != len(everyone):
        raise EdgeclsError(f"TF_CONFIG: an address appears twice in the cluster: {', '.join(everyone)}")
    task = config["task"]
    task_type, index = task.get("type"), task.get("index")
    if task_type not in cluster:
        raise EdgeclsError(f'TF_CONFIG: task type {task_type!r} is not one of the cluster\'s jobs ({", ".join(cluster)})')
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[task_type]):
        raise EdgeclsError(f"TF_CONFIG: task index {index!r} is not one of {task_type} 0-{len(cluster[task_type]) - 1}")
    return Worker(cluster, task_type, index)


def _is_address(value: Any) -> bool:
    if not isinstance(value, str) or ":" not in value:
        return False
    host, _, port = value.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def connect(tf, worker: Worker, timeout: float):
    """MultiWorkerMirroredStrategy for this worker, once every worker has joined.

    Must run before TensorFlow executes its first operation (the strategy starts this process's
    server). Both waits are bounded by `timeout` seconds: joining the cluster (the coordination
    service's registration; its default is an hour) and every collective operation afterwards
    (a lost peer fails the step instead of blocking it forever).
    """
    from tensorflow.python.eager import context

    # The same coordination service MultiWorkerMirroredStrategy configures for itself when none is
    # set, but with a bounded registration wait (TensorFlow's API has no other way to pass it).
    from tensorflow.python.distribute import multi_worker_util

    global _started
    _started = True
    cluster_spec = multi_worker_util.normalize_cluster_spec(worker.cluster)
    coordinated = []
    try:
        from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    except ImportError:  # older layouts
        from tensorflow.core.protobuf import coordination_config_pb2
    for job in _JOBS:
        if job in worker.cluster:
            coordinated.append(coordination_config_pb2.CoordinatedJob(name=job, num_tasks=len(worker.cluster[job])))
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=multi_worker_util.coordination_leader(cluster_spec),
        coordinated_jobs=coordinated,
        cluster_register_timeout_in_ms=int(timeout * 1000),
        heartbeat_timeout_in_ms=int(min(timeout, 60) * 1000),
    )
    # Registration as a barrier: the leader waits (bounded) for the others too, rather than
    # going on to wait for their devices with no time limit.
    context.context().coordination_service.cluster_register_with_barrier = True
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        cluster_spec, task_type=worker.task_type, task_id=worker.task_index, rpc_layer="grpc"
    )
    options = tf.distribute.experimental.CommunicationOptions(
        timeout_seconds=float(timeout), implementation=tf.distribute.experimental.CommunicationImplementation.RING
    )
    logger.info(f"{worker.name} of {worker.count} ({worker.address}): waiting up to {timeout:.0f} s for the others")
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver, communication_options=options)
    except (tf.errors.OpError, RuntimeError, ValueError) as exc:
        timed_out = isinstance(exc, tf.errors.DeadlineExceededError) or "timed out" in str(exc).lower()
        reason = "is every worker started, with the same cluster in TF_CONFIG, and its port open?" if timed_out else first_line(exc, 160)
        raise EdgeclsError(
            f"{worker.name} ({worker.address}) could not join the other workers ({', '.join(worker.addresses)}) "
            f"within {timeout:.0f} s: {reason}"
        ) from None
    logger.info(f"{worker.count} workers joined; this is {worker.name}{' (chief: it writes the run folder)' if worker.is_chief else ''}")
    return strategy


def fingerprint(*parts: Any) -> int:
    """A 48-bit digest of JSON-able parts: exact in float64, so collectives carry it unchanged."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:6], "big")


def gather_rows(tf, strategy, row) -> np.ndarray:
    """Every worker's `row` (numbers, the same length on each), one row per worker in rank order.
    A collective: every worker must call it at the same point."""
    value = tf.constant(np.asarray(row, np.float64)[None, :])
    try:
        gathered = strategy.gather(value, axis=0)
    except tf.errors.OpError as exc:
        raise EdgeclsError(f"the workers lost each other: {collective_failure(tf, exc)}", fields="worker_timeout") from None
    return np.asarray(gathered)


def collective_failure(tf, exc) -> str:
    """What a failed collective operation means, in a few words (TensorFlow's message starts with
    "Graph execution error:" and runs on through the graph's stack)."""
    if isinstance(exc, tf.errors.DeadlineExceededError):
        return "a worker did not answer within `worker_timeout`"
    lines = [line.strip() for line in str(getattr(exc, "message", exc)).splitlines()]
    useful = [line for line in lines if line and not line.startswith(("Graph execution error", "Detected at node", "File ", "Additional GRPC"))]
    return (useful[0] if useful else type(exc).__name__)[:160]


def sharded_training_data(keras, options, sources, labels, num_classes: int, weights: dict | None, cache: str):
    """The training input for `model.fit` under MultiWorkerMirroredStrategy, and its steps per epoch.

    Each worker reads only its own share of the training images (every n-th one, taken before
    decoding, so no worker decodes the others' images: the tf.data pipeline starts from an index
    list, which the strategy's auto-sharding could only split after decoding everything) in
    batches of `batch_size / replicas`, so a step still sees `batch_size` images in all, as on
    one machine. Class weights ride along as sample weights: fit cannot map a per-worker dataset.
    Each shard repeats, so workers whose shares differ by an image still take the same steps.
    """
    import math

    from edgecls.core.pipeline import training_dataset

    labels = np.asarray(labels)
    steps = max(1, math.ceil(len(labels) / options.batch_size))
    table = None if not weights else [float(weights[c]) for c in range(num_classes)]

    def dataset_fn(context):
        import tensorflow as tf

        count, index = context.num_input_pipelines, context.input_pipeline_id
        batch = context.get_per_replica_batch_size(options.batch_size)
        ds, _ = training_dataset(
            tf, list(sources)[index::count], labels[index::count], options.size, batch, num_classes, options.seed,
            augment=options.augment, balanced=options.imbalance == "balanced-sampling",
            cache=f"{cache}.worker{index}.train" if cache else cache,
        )  # fmt: skip
        if table is not None:
            weight_of = tf.constant(table, tf.float32)
            ds = ds.map(lambda image, label: (image, label, tf.gather(weight_of, label)))
        return ds.repeat()

    return keras.utils.experimental.DatasetCreator(dataset_fn), steps


def lost_worker_error(tf, exc, worker: Worker) -> EdgeclsError:
    """One line for a collective that failed mid-training: a peer died, hung or was unreachable."""
    return EdgeclsError(
        f"{worker.name} lost the other workers during training ({collective_failure(tf, exc)}); start every worker "
        f"again with the same command: training continues from the last completed epoch",
        fields="worker_timeout",
    )

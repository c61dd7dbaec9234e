"""Distribution: strategy choice, the chief, this worker's share, and collectives on host values.

Training runs one loop (``ssd_tf.training.loop``) under every strategy: the default one on one device,
MirroredStrategy on one host's devices, MultiWorkerMirroredStrategy across hosts.
"""

import json
import os

import numpy as np
import tensorflow as tf


def _tf_config():
    return json.loads(os.environ.get("TF_CONFIG") or "{}")


def cluster_size():
    """Tasks that train, from TF_CONFIG: workers plus the chief (TFJob, Vertex AI and SageMaker
    name one task "chief"; it trains like a worker). 0 without TF_CONFIG."""
    cluster = _tf_config().get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def resolve_strategy_name(name="auto"):
    """auto -> multiworker when TF_CONFIG lists several training tasks (workers and a chief),
    mirrored when this host has several GPUs, else default. Other names are returned as they are."""
    if name != "auto":
        return name
    if cluster_size() > 1:
        return "multiworker"
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return "mirrored"
    return "default"


_STRATEGIES = {}


def make_strategy(name="auto"):
    """Return (strategy, resolved name). mirrored: all local GPUs (or CPUs); multiworker: the
    cluster in TF_CONFIG; see ``resolve_strategy_name`` for auto. One strategy object per name
    and process, made on first use: a process can join its cluster only once, and two strategies
    over the same devices would share collective keys."""
    name = resolve_strategy_name(name)
    if name == "default":
        return tf.distribute.get_strategy(), name
    if name not in ("mirrored", "multiworker"):
        raise ValueError(f"unknown strategy {name!r}")
    if name == "multiworker" and cluster_size() < 1:
        raise ValueError("strategy 'multiworker' needs TF_CONFIG with a cluster of workers (and/or a chief)")
    if name not in _STRATEGIES:
        if name == "mirrored":
            # All local GPUs; without any, all logical CPU devices (one, unless they were split).
            gpus = tf.config.list_logical_devices("GPU")
            devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
            _STRATEGIES[name] = tf.distribute.MirroredStrategy(devices)
        else:
            _STRATEGIES[name] = tf.distribute.MultiWorkerMirroredStrategy()
    return _STRATEGIES[name], name


def _task_index():
    """This task's place among the training tasks in TF_CONFIG (the chief first, then the workers
    in order); 0 without TF_CONFIG, None for a task that doesn't train (an evaluator)."""
    cfg = _tf_config()
    task = cfg.get("task", {})
    if not task:
        return 0
    if task.get("type") == "chief":
        return 0
    if task.get("type") == "worker":
        return len(cfg.get("cluster", {}).get("chief", [])) + int(task.get("index", 0))
    return None


def is_chief():
    """True on the task that writes checkpoints and the final model: the "chief" task when
    TF_CONFIG has one, else worker 0 (or a run without TF_CONFIG)."""
    return _task_index() == 0


def worker_share(strategy=None):
    """(index, count): this worker among the training tasks (the chief first, then the workers in
    TF_CONFIG's order) under MultiWorkerMirroredStrategy; (0, 1) under any other strategy."""
    strategy = strategy or tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 0, 1
    return _task_index(), cluster_size()


def _first_local_replica(strategy):
    """In replica context: whether this replica is its worker's first (the one that speaks for it)."""
    _, workers = worker_share(strategy)
    local = max(strategy.num_replicas_in_sync // workers, 1)
    return tf.equal(tf.distribute.get_replica_context().replica_id_in_sync_group % local, 0)


def all_sum(strategy, value):
    """The sum over workers of each worker's ``value`` (a float array of the same shape on every
    worker), returned on every worker. A collective: every worker must call it."""
    value = np.asarray(value, np.float64)
    if strategy.num_replicas_in_sync == 1:
        return value

    @tf.function
    def run(v):
        def replica_fn(v):
            v = tf.where(_first_local_replica(strategy), v, tf.zeros_like(v))
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, v)
        return strategy.run(replica_fn, args=(v,))

    return strategy.experimental_local_results(run(tf.constant(value)))[0].numpy()


def all_gather_rows(strategy, rows):
    """Every worker's ``rows`` (float64 [n_w, k], n_w may differ), concatenated in worker order,
    returned on every worker. A collective: every worker must call it."""
    rows = np.asarray(rows, np.float64).reshape(len(rows), -1)
    if strategy.num_replicas_in_sync == 1:
        return rows
    index, workers = worker_share(strategy)
    counts = all_sum(strategy, np.eye(workers)[index] * len(rows)).astype(int)
    padded = np.zeros((max(int(counts.max()), 1), rows.shape[1]))
    padded[:len(rows)] = rows

    @tf.function
    def run(v):
        def replica_fn(v):
            return tf.distribute.get_replica_context().all_gather(v[tf.newaxis], axis=0)
        return strategy.run(replica_fn, args=(v,))

    gathered = strategy.experimental_local_results(run(tf.constant(padded)))[0].numpy()
    local = max(strategy.num_replicas_in_sync // workers, 1)
    per_worker = gathered[::local]  # one slab per worker, from its first replica
    return np.concatenate([slab[:n] for slab, n in zip(per_worker, counts)])

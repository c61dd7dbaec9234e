"""Distribution: strategy choice, the chief, and the multi-worker training loop.

Keras 3 ``model.fit`` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585:
"Attempt to convert a value (PerReplica...)"), so multi-worker runs use the custom loop below over
the same model, loss and data.
"""

import json
import logging
import os
import pathlib
import shutil
import tempfile

import keras
import tensorflow as tf

from ssd_tf import losses

log = logging.getLogger("ssd_tf.distribute")


def _tf_config():
    return json.loads(os.environ.get("TF_CONFIG") or "{}")


def make_strategy(name="auto"):
    """Return (strategy, resolved name).

    auto: multiworker when TF_CONFIG lists several workers, mirrored when this host has several
    GPUs, else default. mirrored: all local GPUs (or the CPU). multiworker: from TF_CONFIG.
    """
    workers = len(_tf_config().get("cluster", {}).get("worker", []))
    if name == "auto":
        if workers > 1:
            name = "multiworker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy(), name
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(), name
    if name == "multiworker":
        if workers < 1:
            raise ValueError("strategy 'multiworker' needs TF_CONFIG with a cluster of workers")
        return tf.distribute.MultiWorkerMirroredStrategy(), name
    raise ValueError(f"unknown strategy {name!r}")


def is_chief():
    """True on the worker that writes checkpoints and the final model."""
    cfg = _tf_config()
    task = cfg.get("task", {})
    if not task:
        return True
    if "chief" in cfg.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def fit_multiworker(config, strategy, model, optimizer, train_ds, run, chief, steps_per_epoch):
    """Custom training loop under MultiWorkerMirroredStrategy; checkpoints each epoch.

    Every worker takes part in saving (saving can run collectives); only the chief's copy is
    kept, the others write to a temporary folder they delete.
    """
    global_batch = config.batch_size
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dist_ds = strategy.experimental_distribute_dataset(train_ds.with_options(options))
    with strategy.scope():
        if config.mixed_precision == "float16" and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var)
    ckpt_dir = run / "checkpoints" if chief else pathlib.Path(tempfile.mkdtemp(prefix="ssd_tf_worker_"))
    manager = tf.train.CheckpointManager(checkpoint, str(ckpt_dir), max_to_keep=2)
    chief_latest = tf.train.latest_checkpoint(str(run / "checkpoints"))
    if config.resume and chief_latest:
        checkpoint.restore(chief_latest)

    def replica_step(images, y_true):
        with tf.GradientTape() as tape:
            pred = model(images, training=True)
            loc, cls, _ = losses.ssd_loss_parts(y_true, pred)
            loss = tf.nn.compute_average_loss(loc + cls, global_batch_size=global_batch)
            scaled = optimizer.scale_loss(loss)  # loss scaling under float16; identity otherwise
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function
    def train_step(iterator):
        images, y_true = next(iterator)
        per_replica = strategy.run(replica_step, args=(images, y_true))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    # BatchNorm moving statistics are per-replica (on-read) variables that no step synchronises
    # across workers. Their update is linear, so averaging them gives the moving average of the
    # all-worker batch statistics, and leaves every worker with the same model.
    @tf.function
    def sync_moving_statistics():
        def replica_fn():
            context = tf.distribute.get_replica_context()
            for var in model.non_trainable_variables:
                if "float" in str(var.dtype):  # BN statistics; leave any integer counters alone
                    var.assign(context.all_reduce(tf.distribute.ReduceOp.MEAN, tf.identity(var.value)))
        strategy.run(replica_fn)

    history = {"loss": []}
    iterator = iter(dist_ds)
    for epoch in range(int(epoch_var.numpy()), config.epochs):
        total = 0.0
        for _ in range(steps_per_epoch):
            total += float(train_step(iterator))
        history["loss"].append(total / steps_per_epoch)
        sync_moving_statistics()
        epoch_var.assign(epoch + 1)
        manager.save()
        if chief:
            log.info("epoch %d/%d loss %.4f", epoch + 1, config.epochs, history["loss"][-1])
            print(f"epoch {epoch + 1}/{config.epochs} - loss: {history['loss'][-1]:.4f}", flush=True)
    if not chief:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return history

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
import numpy as np
import tensorflow as tf

from ssd_tf import artifacts, callbacks, losses
from ssd_tf.evaluation import is_validation_epoch

log = logging.getLogger("ssd_tf.distribute")


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


def make_strategy(name="auto"):
    """Return (strategy, resolved name). mirrored: all local GPUs (or the CPU); multiworker: the
    cluster in TF_CONFIG; see ``resolve_strategy_name`` for auto."""
    name = resolve_strategy_name(name)
    if name == "default":
        return tf.distribute.get_strategy(), name
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(), name
    if name == "multiworker":
        if cluster_size() < 1:
            raise ValueError("strategy 'multiworker' needs TF_CONFIG with a cluster of workers (and/or a chief)")
        return tf.distribute.MultiWorkerMirroredStrategy(), name
    raise ValueError(f"unknown strategy {name!r}")


def is_chief():
    """True on the task that writes checkpoints and the final model: the "chief" task when
    TF_CONFIG has one, else worker 0 (or a run without TF_CONFIG)."""
    cfg = _tf_config()
    task = cfg.get("task", {})
    if not task:
        return True
    if "chief" in cfg.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def fit_multiworker(config, strategy, model, optimizer, dataset_fn, run, chief, steps_per_epoch,
                    epoch_callbacks=(), val_dataset=None, steps_per_call=8):
    """Custom training loop under MultiWorkerMirroredStrategy; checkpoints each epoch.

    ``dataset_fn(input_context)`` returns this worker's endless dataset of per-replica batches
    (``strategy.distribute_datasets_from_function``): each worker reads and decodes only its own
    share of the images. Up to ``steps_per_call`` steps run in one tf.function call (like Keras'
    ``steps_per_execution``), so the host syncs once per call, not once per step. Every worker
    takes part in saving (saving can run collectives); only the chief's copy is kept, the others
    write to a temporary folder they delete.

    On the chief, each epoch's logs (loss and its parts, learning rate, and ``val_*`` from
    ``val_dataset`` on validation epochs: every ``--eval-every`` and the last) go through
    ``epoch_callbacks``, the Keras callbacks of the fit path (COCO evaluation, TensorBoard,
    CSVLogger, drawn detections), and a progress bar shows the loss.
    Returns the history dict.
    """
    global_batch = config.batch_size
    dist_ds = strategy.distribute_datasets_from_function(dataset_fn)
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
        artifacts.restore_checkpoint(chief_latest, checkpoint=checkpoint)

    def replica_step(images, y_true):
        with tf.GradientTape() as tape:
            pred = model(images, training=True)
            loc, cls, _ = losses.ssd_loss_parts(y_true, pred)
            loc = tf.nn.compute_average_loss(loc, global_batch_size=global_batch)
            cls = tf.nn.compute_average_loss(cls, global_batch_size=global_batch)
            loss = loc + cls
            scaled = optimizer.scale_loss(loss)  # loss scaling under float16; identity otherwise
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return tf.stack([loss, loc, cls])

    @tf.function
    def train_steps(iterator, count):
        """``count`` steps in one call; returns [count, 3]: loss, localisation, classification."""
        parts = tf.TensorArray(tf.float32, size=count)
        for i in tf.range(count):
            images, y_true = next(iterator)
            per_replica = strategy.run(replica_step, args=(images, y_true))
            parts = parts.write(i, strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None))
        return parts.stack()

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

    chief_callbacks = keras.callbacks.CallbackList(list(epoch_callbacks) if chief else [], model=model,
                                                   epochs=config.epochs, steps=steps_per_epoch)
    history = {}
    iterator = iter(dist_ds)
    last_finite = None
    first_epoch = int(epoch_var.numpy())
    chief_callbacks.on_train_begin()
    for epoch in range(first_epoch, config.epochs):
        chief_callbacks.on_epoch_begin(epoch)
        progress = keras.utils.Progbar(steps_per_epoch, verbose=1 if chief else 0,
                                       stateful_metrics=["loss", "loc_loss", "cls_loss"])
        sums, done = np.zeros(3), 0
        while done < steps_per_epoch:
            count = min(steps_per_call, steps_per_epoch - done)
            parts = train_steps(iterator, tf.constant(count)).numpy()
            for i, (loss, _, _) in enumerate(parts):
                # Every worker sees the same all-reduced loss, so all stop together.
                step = epoch * steps_per_epoch + done + i + 1
                callbacks.check_finite_loss(float(loss), step, last_finite)
                last_finite = (step, float(loss))
            sums += parts.sum(axis=0)
            done += count
            means = sums / done
            progress.update(done, [("loss", means[0]), ("loc_loss", means[1]), ("cls_loss", means[2])])
        sync_moving_statistics()
        epoch_var.assign(epoch + 1)
        manager.save()
        logs = {"loss": means[0], "loc_loss": means[1], "cls_loss": means[2],
                "learning_rate": float(keras.ops.convert_to_numpy(optimizer.learning_rate))}
        if chief and val_dataset is not None and is_validation_epoch(epoch, config.eval_every, config.epochs):
            logs.update(validation_losses(model, val_dataset))
        chief_callbacks.on_epoch_end(epoch, logs)
        for key, value in logs.items():
            history.setdefault(key, []).append(float(value))
    chief_callbacks.on_train_end()
    if not chief:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return history


def validation_losses(model, dataset):
    """``val_loss``, ``val_loc_loss``, ``val_cls_loss``: the loss and its parts averaged over every
    image of ``dataset`` ((images, y_true) batches), inference mode, as Keras' fit reports them."""
    predict = tf.function(lambda images: model(images, training=False))
    sums, count = np.zeros(3), 0
    for images, y_true in dataset:
        loc, cls, _ = losses.ssd_loss_parts(y_true, predict(images))
        sums += [float(tf.reduce_sum(loc + cls)), float(tf.reduce_sum(loc)), float(tf.reduce_sum(cls))]
        count += int(images.shape[0])
    sums /= max(count, 1)
    return {"val_loss": sums[0], "val_loc_loss": sums[1], "val_cls_loss": sums[2]}

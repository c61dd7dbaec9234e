"""The training loop, one for every strategy: the default one on one device, MirroredStrategy on
one host's devices, MultiWorkerMirroredStrategy across hosts.

Keras 3's ``model.fit`` does not run under MultiWorkerMirroredStrategy (keras-team/keras#20585,
"Attempt to convert a value (PerReplica...)"), so ``scripts/train.py`` trains through this loop on
every path; ``model.fit`` with ``SSDLoss`` keeps working for user code on one host.
"""

import dataclasses
import logging
import pathlib
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from ssd_tf.inference import loading
from ssd_tf.modeling import batchnorm, losses
from ssd_tf.training import callbacks as callbacks_lib
from ssd_tf.training.config import JIT_COMPILE

log = logging.getLogger("ssd_tf.training.loop")


@dataclasses.dataclass
class LoopSettings:
    """How ``fit`` runs. ``validate(model)`` -> logs dict, and ``precise_bn()``, are called on
    every worker (both run collectives); ``validation_epochs`` are 1-based."""

    epochs: int
    steps_per_epoch: int
    global_batch: int
    checkpoint_dir: pathlib.Path
    chief: bool = True
    resume: bool = False
    validation_epochs: tuple = ()
    validate: object = None
    precise_bn: object = None
    steps_per_call: int = 8
    jit_compile: str = "off"
    loss_scaling: bool = False
    verbose: object = 1


def resolve_jit_compile(setting, strategy):
    """auto -> on with a GPU under a single replica, else off (Keras' own choice for ``fit``:
    XLA off on CPUs and under tf.distribute); on / off as they are."""
    if setting not in JIT_COMPILE:
        raise ValueError(f"jit_compile= must be one of {', '.join(JIT_COMPILE)}, not {setting!r}")
    if setting == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        return bool(gpus) and strategy.num_replicas_in_sync == 1
    return setting == "on"


def checkpoint_epochs_done(checkpoint_dir):
    """Epochs the checkpoints in ``checkpoint_dir`` hold as finished (0 when none)."""
    latest = tf.train.latest_checkpoint(str(checkpoint_dir))
    if latest:
        return int(tf.train.load_checkpoint(latest).get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE"))
    if (pathlib.Path(checkpoint_dir) / "training_metadata.json").is_file():
        raise ValueError(f"{checkpoint_dir}: a run of an earlier ssd-tf (Keras BackupAndRestore checkpoints), "
                         "which this version cannot resume; its latest.weights.h5 still loads with init_from=")
    return 0


def make_train_steps(model, optimizer, strategy, global_batch, jit_compile=False):
    """The training step: ``train_steps(iterator, count)`` runs ``count`` steps on batches of
    ``iterator`` (per-replica batches under ``strategy``) in one call and returns [count, 3] float32:
    loss, localisation and classification, summed over replicas. The loss is averaged over the
    ``global_batch`` (``tf.nn.compute_average_loss``); under a LossScaleOptimizer it is scaled.
    ``jit_compile``: forward and backward in XLA; the update (cross-replica sums, loss scaling)
    stays outside, where tf.distribute can run it."""

    def gradients(images, y_true):
        with tf.GradientTape() as tape:
            pred = model(images, training=True)
            loc, cls, _ = losses.ssd_loss_parts(y_true, pred)
            loc = tf.nn.compute_average_loss(loc, global_batch_size=global_batch)
            cls = tf.nn.compute_average_loss(cls, global_batch_size=global_batch)
            loss = loc + cls
            scaled = optimizer.scale_loss(loss)  # loss scaling under float16; identity otherwise
        return tape.gradient(scaled, model.trainable_variables), tf.stack([loss, loc, cls])

    if jit_compile:
        gradients = tf.function(gradients, jit_compile=True)

    def replica_step(images, y_true):
        grads, parts = gradients(images, y_true)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return parts

    @tf.function
    def train_steps(iterator, count):
        parts = tf.TensorArray(tf.float32, size=count)
        for i in tf.range(count):
            images, y_true = next(iterator)
            per_replica = strategy.run(replica_step, args=(images, y_true))
            parts = parts.write(i, strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None))
        return parts.stack()

    return train_steps


def fit(model, optimizer, strategy, dataset_fn, settings, callbacks=(), chief_callbacks=()):
    """Train ``model`` under ``strategy``; checkpoint after every epoch. Returns the history dict.

    ``dataset_fn(input_context)`` returns this input pipeline's endless dataset of per-replica
    batches (``strategy.distribute_datasets_from_function``): each worker reads, decodes and
    augments only its share of the images. Up to ``settings.steps_per_call`` steps run in one
    tf.function call (Keras' ``steps_per_execution``), so the host syncs once per call; callbacks'
    ``on_train_batch_end`` sees each call's last step, with the epoch's running means.

    ``chief_callbacks`` (the run folder's writers) run on the chief only, first, so an epoch is
    on record before anything else sees it; ``callbacks`` run on every worker, like Keras' under
    tf.distribute (``model.stop_training`` ends the run after the epoch). A progress bar shows on
    the chief. Each epoch logs loss, loc_loss, cls_loss,
    learning_rate and, on ``settings.validation_epochs``, what ``validate`` returns. A NaN or Inf
    loss raises ``callbacks.TrainingDiverged`` naming the step, on every worker at once (the loss
    is all-reduced), before that epoch's checkpoint.

    After each epoch: the replicas' BN moving statistics are averaged; on validation epochs and
    after the last, ``precise_bn`` recalibrates them; then the checkpoint (model, optimizer,
    epoch) is saved. Every worker takes part in saving (it may run collectives); only the chief's
    copy is kept. With ``resume``, training goes on from the chief's latest checkpoint.
    """
    s = settings
    dist_ds = strategy.distribute_datasets_from_function(dataset_fn)
    optimizer, epoch_var, manager, ckpt_dir = _checkpointed_state(model, optimizer, strategy, s)
    jit = resolve_jit_compile(s.jit_compile, strategy)
    log.info("training step: XLA %s (--jit-compile %s)", "on" if jit else "off", s.jit_compile)
    train_steps = make_train_steps(model, optimizer, strategy, s.global_batch, jit)
    every = _callback_lists(model, s, callbacks, chief_callbacks)
    history, last_finite = {}, None
    first_epoch = int(epoch_var.numpy())
    if first_epoch:
        log.info("resumed after epoch %d of %d", first_epoch, s.epochs)
    model.stop_training = False
    iterator = iter(dist_ds)
    for cbs in every:
        cbs.on_train_begin()
    for epoch in range(first_epoch, s.epochs):
        for cbs in every:
            cbs.on_epoch_begin(epoch)
        batch_logs, last_finite = _train_epoch(train_steps, iterator, epoch, s, every, last_finite)
        batchnorm.sync_moving_statistics(strategy, model)
        logs = {**batch_logs, "learning_rate": float(keras.ops.convert_to_numpy(optimizer.learning_rate))}
        logs.update(_end_of_epoch_checks(model, epoch, s))
        epoch_var.assign(epoch + 1)
        manager.save()
        for cbs in every:
            cbs.on_epoch_end(epoch, logs)
        for key, value in logs.items():
            history.setdefault(key, []).append(float(value))
        if model.stop_training:
            log.info("stopped after epoch %d: a callback set model.stop_training", epoch + 1)
            break
    for cbs in every:
        cbs.on_train_end()
    if not s.chief:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return history


def _checkpointed_state(model, optimizer, strategy, s):
    """(optimizer, wrapped for loss scaling and built; the epoch counter; the checkpoint manager;
    its folder), restored from the chief's latest checkpoint when resuming. Workers other than the
    chief save into a temporary folder, removed after training."""
    with strategy.scope():
        if s.loss_scaling and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var)
    ckpt_dir = s.checkpoint_dir if s.chief else pathlib.Path(tempfile.mkdtemp(prefix="ssd_tf_worker_"))
    manager = tf.train.CheckpointManager(checkpoint, str(ckpt_dir), max_to_keep=2)
    chief_latest = tf.train.latest_checkpoint(str(s.checkpoint_dir))
    if s.resume and chief_latest:
        loading.restore_checkpoint(chief_latest, checkpoint=checkpoint)
    return optimizer, epoch_var, manager, ckpt_dir


def _callback_lists(model, s, callbacks, chief_callbacks):
    """[the chief's callbacks (and its progress bar), everyone's callbacks], in the order they run."""
    everywhere = keras.callbacks.CallbackList(list(callbacks), add_history=False, add_progbar=False, model=model,
                                              epochs=s.epochs, steps=s.steps_per_epoch, verbose=s.verbose)
    progress = [keras.callbacks.ProgbarLogger()] if s.chief and s.verbose else []
    on_chief = keras.callbacks.CallbackList(list(chief_callbacks) + progress if s.chief else [], model=model,
                                            epochs=s.epochs, steps=s.steps_per_epoch, verbose=s.verbose)
    return [on_chief, everywhere]


def _train_epoch(train_steps, iterator, epoch, s, every, last_finite):
    """One epoch's steps, ``s.steps_per_call`` per call. Returns (the epoch's mean loss logs, the
    last finite (step, loss)); raises TrainingDiverged at a non-finite loss."""
    sums, done = np.zeros(3), 0
    while done < s.steps_per_epoch:
        count = min(s.steps_per_call, s.steps_per_epoch - done)
        for cbs in every:
            cbs.on_train_batch_begin(done)
        parts = train_steps(iterator, tf.constant(count)).numpy()
        for i, (loss, _, _) in enumerate(parts):
            # Every worker sees the same all-reduced loss, so all stop together.
            step = epoch * s.steps_per_epoch + done + i + 1
            callbacks_lib.check_finite_loss(float(loss), step, last_finite)
            last_finite = (step, float(loss))
        sums += parts.sum(axis=0)
        done += count
        means = sums / done
        batch_logs = {"loss": means[0], "loc_loss": means[1], "cls_loss": means[2]}
        for cbs in every:
            cbs.on_train_batch_end(done - 1, batch_logs)
    return batch_logs, last_finite


def _end_of_epoch_checks(model, epoch, s):
    """Precise BN on validation epochs and after the last; then the validation's logs, if due."""
    if epoch + 1 not in s.validation_epochs and epoch + 1 != s.epochs:
        return {}
    if s.precise_bn is not None:
        s.precise_bn()
    if s.validate is not None and epoch + 1 in s.validation_epochs:
        return s.validate(model)
    return {}

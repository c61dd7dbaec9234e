"""Training runs: strategy choice, data, optimizer, callbacks, and the fit loops.

One device and MirroredStrategy use Keras ``model.fit``. MultiWorkerMirroredStrategy uses a
custom loop over the same model, loss and data, because Keras 3 ``model.fit`` fails under it
(keras-team/keras#20585: "Attempt to convert a value (PerReplica...)").

A run folder holds: config.json (resolved config), checkpoints/ (resume state: weights,
optimizer, epoch), logs/ (TensorBoard), history.csv, skipped.txt, final.keras, summary.json.
"""

import json
import logging
import math
import os
import pathlib
import shutil
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from ssd_tf import artifacts
from ssd_tf import data as data_lib
from ssd_tf import evaluation, losses, postprocess, visualize
from ssd_tf.config import TrainConfig
from ssd_tf.model import build_ssd300
from ssd_tf.schedules import WarmupSchedule

log = logging.getLogger("ssd_tf.training")


# ---------------------------------------------------------------- strategy

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


# ---------------------------------------------------------------- data and model

def load_datasets(config):
    """(train DetectionSet, validation DetectionSet or None) for a resolved config."""
    if config.dataset == "synthetic":
        train = data_lib.read_dataset("synthetic", synthetic_images=config.synthetic_images, seed=config.seed)
        val = data_lib.read_dataset("synthetic", synthetic_images=max(4, config.synthetic_images // 4),
                                    seed=config.seed + 1000)
        return train, val
    read = lambda split: data_lib.read_dataset(config.dataset, config.data_dir, split, config.classes)  # noqa: E731
    return read(config.train_split), (read(config.val_split) if config.val_split else None)


def build_optimizer(config, steps_per_epoch):
    """SGD with momentum and weight decay on a warmup + step/cosine schedule (lr scaled by batch)."""
    total = config.epochs * steps_per_epoch
    boundaries = [round(total * 2 / 3), round(total * 5 / 6)]
    # NVIDIA's 300 warmup steps assume long runs; never let warmup take over a short one.
    warmup = min(config.warmup_steps, total // 4)
    if warmup < config.warmup_steps:
        log.info("warmup shortened from %d to %d steps (a quarter of this run)", config.warmup_steps, warmup)
    schedule = WarmupSchedule(config.scaled_lr, total, warmup, config.schedule, boundaries)
    return keras.optimizers.SGD(schedule, momentum=config.momentum, weight_decay=config.weight_decay)


def compile_model(model, optimizer):
    """Compile with the SSD loss and its two parts as metrics."""
    model.compile(optimizer=optimizer, loss=losses.SSDLoss(), metrics=losses.loss_part_metrics())
    return model


def set_precision(mixed_precision):
    """Set Keras' global dtype policy: None -> float32, 'float16' / 'bfloat16' -> mixed."""
    keras.config.set_dtype_policy({None: "float32", "float16": "mixed_float16",
                                   "bfloat16": "mixed_bfloat16"}[mixed_precision])


# ---------------------------------------------------------------- callbacks

class LearningRateLogger(keras.callbacks.Callback):
    """Adds the current learning rate to the epoch logs (so TensorBoard and CSV show it)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class DetectionImages(keras.callbacks.Callback):
    """Writes a few validation images with their drawn detections to TensorBoard each epoch."""

    def __init__(self, images, log_dir, class_names, score_threshold=0.3):
        super().__init__()
        self.images = np.asarray(images, np.float32)
        self.writer = tf.summary.create_file_writer(str(log_dir))
        self.class_names = class_names
        self.score_threshold = score_threshold

    def on_epoch_end(self, epoch, logs=None):
        dets = postprocess.decode_detections(self.model.predict(self.images, verbose=0))
        drawn = []
        for i, image in enumerate(self.images):
            n = int(dets["num_detections"][i])
            drawn.append(visualize.draw_detections(
                image, dets["boxes"][i, :n].numpy() * 300, dets["classes"][i, :n].numpy(),
                dets["scores"][i, :n].numpy(), self.class_names, min_score=self.score_threshold))
        with self.writer.as_default():
            tf.summary.image("validation_detections", np.stack(drawn), step=epoch, max_outputs=len(drawn))
        self.writer.flush()


def _sample_images(detection_set, count):
    if detection_set is None or count <= 0:
        return None
    for images, _ in data_lib.eval_dataset(detection_set.subset(range(min(count, len(detection_set)))), count):
        return images.numpy()
    return None


# ---------------------------------------------------------------- the run

def prepare_run_dir(config, chief=True):
    run = pathlib.Path(config.output or f"runs/ssd300-{config.dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
    checkpoints = run / "checkpoints"
    if not chief:  # other workers only read the chief's folder
        return run
    if config.resume:
        if not checkpoints.exists():
            raise FileNotFoundError(f"{run}: nothing to resume (no checkpoints/ folder)")
    elif checkpoints.exists() and any(checkpoints.iterdir()):
        raise FileExistsError(f"{run} already holds a run: pass --resume to continue it, or another --output")
    run.mkdir(parents=True, exist_ok=True)
    return run


def train(config, callbacks=(), model_fn=None):
    """Train SSD300 as ``config`` says. Returns a dict: run_dir, model, history, summary.

    ``callbacks`` are extra Keras callbacks (fit path only); ``model_fn(num_classes)``, if given,
    builds the model instead of ``build_ssd300`` (e.g. with frozen layers).
    """
    config = config.resolved()
    start = time.time()
    chief = is_chief()
    run = prepare_run_dir(config, chief)
    if chief:
        config.save(run / "config.json")
    keras.utils.set_random_seed(config.seed)
    set_precision(config.mixed_precision)
    strategy, strategy_name = make_strategy(config.strategy)
    multiworker = strategy_name == "multiworker"

    train_set, val_set = load_datasets(config)
    if chief:
        artifacts.write_classes(run / artifacts.CLASSES_FILE, train_set.class_names, train_set.category_ids)
    # The multi-worker loop runs one iterator across epochs over whole global batches.
    train_ds = data_lib.train_dataset(train_set, config.batch_size, seed=config.seed, drop_remainder=multiworker)
    val_ds = data_lib.validation_dataset(val_set, config.batch_size) if val_set is not None and len(val_set) else None
    report = [f"train: {train_set.report.summary()}"] + ([f"val: {val_set.report.summary()}"] if val_set else [])
    for line in report:
        if "nothing skipped" in line:
            log.info(line)
        else:
            log.warning(line)
    usable = len(train_set.without_difficult().without_empty(report=False))
    steps_per_epoch = usable // config.batch_size if multiworker else math.ceil(usable / config.batch_size)
    if steps_per_epoch < 1:
        raise ValueError(f"{usable} usable training images: fewer than one batch of {config.batch_size}")
    if config.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.steps_per_epoch)
    # One endless dataset, epochs counted in steps: --steps-per-epoch can cap them, and the
    # multi-worker loop keeps one iterator. Each repetition reshuffles and redraws augmentations.
    train_ds = train_ds.repeat()

    with strategy.scope():
        if model_fn is not None:
            model = model_fn(train_set.num_classes)
        else:
            model = build_ssd300(train_set.num_classes, backbone_weights=config.backbone_weights)
        optimizer = build_optimizer(config, steps_per_epoch)

    if multiworker:
        history = _fit_multiworker(config, strategy, model, optimizer, train_ds, run, chief, steps_per_epoch)
    else:
        with strategy.scope():
            compile_model(model, optimizer)
        # Order matters: callbacks that add to the epoch logs run before TensorBoard and CSVLogger.
        cbs = [keras.callbacks.BackupAndRestore(str(run / "checkpoints"), save_freq="epoch", delete_checkpoint=False),
               LearningRateLogger()]
        if val_ds is not None and config.eval_every > 0:
            cbs.append(evaluation.COCOEvaluation(val_set, config.eval_every, config.batch_size))
        cbs += [keras.callbacks.TensorBoard(str(run / "logs"), write_graph=False),
                keras.callbacks.CSVLogger(str(run / "history.csv"), append=True)]
        samples = _sample_images(val_set, config.val_images)
        if samples is not None:
            cbs.append(DetectionImages(samples, run / "logs" / "images", train_set.class_names))
        val_steps = math.ceil(len(val_set.without_empty(report=False)) / config.batch_size) if val_ds else None
        fit = model.fit(train_ds, validation_data=val_ds, epochs=config.epochs,
                        steps_per_epoch=steps_per_epoch, validation_steps=val_steps, shuffle=False,
                        callbacks=cbs + list(callbacks), verbose=2 if os.environ.get("CI") else "auto")
        history = fit.history

    summary = {
        "strategy": strategy_name, "replicas": strategy.num_replicas_in_sync, "epochs": config.epochs,
        "final_loss": float(history["loss"][-1]) if history.get("loss") else None,
        "wall_s": round(time.time() - start, 1), "skipped": report,
    }
    if chief:
        model.save(run / "final.keras")
        (run / "skipped.txt").write_text(
            "\n".join(report + train_set.report.messages + (val_set.report.messages if val_set else [])) + "\n")
        (run / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return {"run_dir": run, "model": model, "history": history, "summary": summary}


# ---------------------------------------------------------------- multi-worker custom loop

def _fit_multiworker(config, strategy, model, optimizer, train_ds, run, chief, steps_per_epoch):
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


__all__ = ["TrainConfig", "build_optimizer", "compile_model", "load_datasets", "make_strategy", "train"]

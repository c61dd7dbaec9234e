"""Training runs: data, optimizer, callbacks and the loop, as ``scripts/train.py`` runs them.

One loop (``ssd_tf.training.loop``) serves every strategy: one device, MirroredStrategy and
MultiWorkerMirroredStrategy.

A run folder holds: config.json (resolved config), checkpoints/ (resume state: weights,
optimizer, epoch), logs/ (TensorBoard), history.csv, skipped.txt, final.keras, summary.json,
predictions/ (validation images with the final model's detections drawn).
"""

import json
import logging
import os
import pathlib
import time

import keras

from ssd_tf import data as data_lib
from ssd_tf.core.classes import CLASSES_FILE, write_classes
from ssd_tf.evaluation import coco_metric as evaluation
from ssd_tf.evaluation import plots
from ssd_tf.inference import prediction
from ssd_tf.inference.detector import Detector
from ssd_tf.modeling import batchnorm, losses
from ssd_tf.modeling.backbone import layout_of
from ssd_tf.modeling.lr_schedules import WarmupSchedule
from ssd_tf.modeling.optimizers import TorchSGD
from ssd_tf.modeling.ssd300 import build_ssd300
from ssd_tf.training import callbacks as callbacks_lib
from ssd_tf.training import distribute, finetune, loop, validation
from ssd_tf.training.config import TrainConfig, run_folder

log = logging.getLogger("ssd_tf.training.run")


# ---------------------------------------------------------------- data and model

def load_datasets(config):
    """(train DetectionSet, validation DetectionSet or None) for a resolved config."""
    def read(split):
        return data_lib.read_dataset(config.dataset, config.data_dir, split, config.classes,
                                     synthetic_images=config.synthetic_images, seed=config.seed)
    return read(config.train_split), (read(config.val_split) if config.val_split else None)


def build_optimizer(config, steps_per_epoch):
    """NVIDIA's SGD (``optimizers.TorchSGD``: PyTorch momentum, coupled L2 on kernels only) on a
    warmup + step/cosine schedule, lr scaled by batch / 32."""
    total = config.epochs * steps_per_epoch
    boundaries = [round(total * 2 / 3), round(total * 5 / 6)]
    # NVIDIA's 300 warmup steps assume long runs; never let warmup take over a short one.
    warmup = min(config.warmup_steps, total // 4)
    if warmup < config.warmup_steps:
        log.info("warmup shortened from %d to %d steps (a quarter of this run)", config.warmup_steps, warmup)
    schedule = WarmupSchedule(config.scaled_lr, total, warmup, config.schedule, boundaries)
    return TorchSGD(schedule, momentum=config.momentum, weight_decay=config.weight_decay)


def compile_model(model, optimizer):
    """Compile with the SSD loss and its two parts as metrics."""
    model.compile(optimizer=optimizer, loss=losses.SSDLoss(), metrics=losses.loss_part_metrics())
    if model.built and not model.optimizer.built:
        # Eagerly, now: created inside the first step's trace, its ~320 slot variables cost ~3 s.
        model.optimizer.build(model.trainable_variables)
    return model


def set_precision(mixed_precision):
    """Set Keras' global dtype policy: None -> float32, 'float16' / 'bfloat16' -> mixed."""
    keras.config.set_dtype_policy({None: "float32", "float16": "mixed_float16",
                                   "bfloat16": "mixed_bfloat16"}[mixed_precision])


# ---------------------------------------------------------------- the run

def prepare_run_dir(config, chief=True, create=True):
    """The run folder's path, checked (``training.config.run_folder``; other workers only read the chief's
    folder). ``create``: make the folder now (``train`` makes it once the data have been read, so
    that a failed start leaves nothing behind)."""
    run = run_folder(config, check=chief)
    if chief and create:
        run.mkdir(parents=True, exist_ok=True)
    return run


def _run_folder_callbacks(config, run, train_set, val_set, detector=None, validate=None):
    """The chief's run-folder writers: TensorBoard, history.csv, drawn detections (through
    ``detector``, when given) and, after each of ``validate``'s validations, PR curves and the
    confusion matrix in TensorBoard."""
    val_columns = list(validation.LOG_KEYS) if val_set is not None and len(val_set) and config.eval_every > 0 else []
    cbs = [keras.callbacks.TensorBoard(str(run / "logs"), write_graph=False),
           callbacks_lib.CSVLogger(str(run / "history.csv"), columns=val_columns, append=True)]
    samples = callbacks_lib.sample_images(val_set, config.val_images)
    if samples is not None:
        cbs.append(callbacks_lib.DetectionImages(samples, run / "logs" / "images", train_set.class_names,
                                                 every=config.eval_every, detector=detector))
    if validate is not None:
        cbs.append(callbacks_lib.ValidationPictures(validate, run / "logs" / "validation_pictures"))
    return cbs


def validation_epochs(config):
    """The 1-based epochs after which a run validates (``--eval-every`` and the last): validation
    loss after precise BN, COCO mAP and TensorBoard images."""
    return [e + 1 for e in range(config.epochs) if validation.is_validation_epoch(e, config.eval_every, config.epochs)]


def run_epochs_done(run):
    """Epochs a run folder's checkpoints hold as finished (0 when none)."""
    return loop.checkpoint_epochs_done(pathlib.Path(run) / "checkpoints")


def train(config, callbacks=(), model_fn=None):
    """Train SSD300 as ``config`` says. Returns a dict: run_dir, model, history, summary.

    ``callbacks`` are extra Keras callbacks, run on every worker; ``model_fn(num_classes)``, if given,
    builds the model instead of ``build_ssd300`` (e.g. with frozen layers).
    Resuming a run that already finished ``config.epochs`` trains nothing and returns with
    ``summary["already_finished"]`` true (and ``model`` None). A NaN or Inf loss raises
    ``callbacks.TrainingDiverged`` at that step.
    """
    config = config.resolved()
    start = time.time()
    chief = distribute.is_chief()
    run = prepare_run_dir(config, chief, create=False)
    finished = _already_finished(config, run)
    if finished is not None:
        return finished
    # The data first: a wrong folder, class name or batch size fails before the run folder exists.
    train_set, val_set = load_datasets(config)
    usable, steps_per_epoch, report = _training_images(config, train_set, val_set)
    if config.backbone_weights == "imagenet" and config.backbone_layout in (None, "torchvision"):
        from ssd_tf.modeling import torch_weights

        torch_weights.torchvision_resnet50_file()  # the download (or the cache) too, before the run folder
    if chief:
        run.mkdir(parents=True, exist_ok=True)
    source = _fine_tuning_source(config, run)
    if chief:
        config.save(run / "config.json")
        write_classes(run / CLASSES_FILE, train_set.class_names, train_set.category_ids)
    keras.utils.set_random_seed(config.seed)
    set_precision(config.mixed_precision)
    strategy, strategy_name = distribute.make_strategy(config.strategy)

    with strategy.scope():
        model = _build_model(config, train_set.num_classes, model_fn, source, run if chief else None)
        # Compiled for what reads model.optimizer (TensorBoard's learning rate, user callbacks) and
        # for final.keras; under mixed_float16 compile wraps it in a LossScaleOptimizer.
        compile_model(model, build_optimizer(config, steps_per_epoch))
    data_lib.check_labels(train_set, model.output_shape[-1] - 4)

    def dataset_fn(input_context):  # each worker reads, decodes and augments only its own share
        return data_lib.train_dataset(usable, config.batch_size, seed=config.seed, drop_remainder=True,
                                      input_context=input_context, num_classes=train_set.num_classes,
                                      skip_empty=True).repeat()

    # One Detector for validation, the TensorBoard images and the final drawings: the model's
    # detection graph is traced once per run, not once for each.
    detector = Detector(model, train_set.class_names, train_set.category_ids)
    settings = _loop_settings(config, model, strategy, usable, val_set, detector, steps_per_epoch, run, chief)
    chief_callbacks = (_run_folder_callbacks(config, run, train_set, val_set, detector, settings.validate)
                       if chief else [])
    history = loop.fit(model, model.optimizer, strategy, dataset_fn, settings, callbacks=callbacks,
                       chief_callbacks=chief_callbacks)

    summary = {
        "strategy": strategy_name, "replicas": strategy.num_replicas_in_sync, "epochs": config.epochs,
        "final_loss": float(history["loss"][-1]) if history.get("loss") else None,
        "wall_s": round(time.time() - start, 1), "skipped": report,
    }
    if chief:
        _write_results(config, run, model, detector, train_set, val_set, history, summary, settings.validate)
    return {"run_dir": run, "model": model, "history": history, "summary": summary}


def _already_finished(config, run):
    """``train``'s result for a resumed run that has already trained ``config.epochs``, else None."""
    if not config.resume:
        return None
    done = run_epochs_done(run)
    if done < config.epochs:
        return None
    log.info("%s already finished %d of %d epochs: nothing to train", run, done, config.epochs)
    summary = {"already_finished": True, "epochs": config.epochs, "completed_epochs": done}
    return {"run_dir": run, "model": None, "history": {}, "summary": summary}


def _fine_tuning_source(config, run):
    """The ``init_from`` model whose weights start the run (None without one, or when resuming: the
    weights then come from the run). Sets ``config.backbone_layout`` to its layout when unset."""
    if not config.init_from or (config.resume and run_epochs_done(run)):
        return None
    source = finetune.load_source(config.init_from)
    source_layout = layout_of(source)
    if config.backbone_layout is None:  # the fine-tuned model keeps its source's layout
        config.backbone_layout = source_layout
    elif config.backbone_layout != source_layout:
        raise ValueError(f"init_from={config.init_from}: its backbone layout is {source_layout!r}, "
                         f"and backbone_layout={config.backbone_layout!r} asks for another")
    return source


def _training_images(config, train_set, val_set):
    """(usable training set, steps per epoch, the skip report's lines). Difficult objects and
    object-less images are dropped (and reported) once, here."""
    usable, num_usable = data_lib.for_training(train_set)
    report = [f"train: {train_set.report.summary()}"] + ([f"val: {val_set.report.summary()}"] if val_set else [])
    for line in report:
        if "nothing skipped" in line:
            log.info(line)
        else:
            log.warning(line)
    # Whole global batches only, on every path: each epoch reshuffles, so no image is always left out.
    steps_per_epoch = data_lib.num_batches(num_usable, config.batch_size, drop_remainder=True)
    if steps_per_epoch < 1 and not num_usable:
        first = f"; first: {train_set.report.messages[0]}" if train_set.report.messages else ""
        raise ValueError(f"{train_set.name}: no usable training image ({train_set.report.summary()}{first})")
    if steps_per_epoch < 1:
        raise ValueError(f"{train_set.name}: {num_usable} usable training images, fewer than one batch of "
                         f"{config.batch_size} (batch_size=)")
    if config.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.steps_per_epoch)
    return usable, steps_per_epoch, report


def _build_model(config, num_classes, model_fn, source, run):
    """The model to train (inside the strategy's scope): ``model_fn``'s or SSD300, with the
    fine-tuning ``source``'s weights copied in (recorded in ``run`` when given)."""
    if model_fn is not None:
        model = model_fn(num_classes)
    else:
        weights = None if config.backbone_weights == "none" else config.backbone_weights
        # From random weights, residual blocks start as identities (zero-init residual BN scale).
        model = build_ssd300(num_classes, backbone_weights=weights, sync_bn=config.sync_bn,
                             zero_init_residual=weights is None and source is None,
                             backbone_layout=config.backbone_layout)
    if source is not None:
        finetune.record(finetune.init_from(model, source, config.init_from), run)
    return model


def _loop_settings(config, model, strategy, usable, val_set, detector, steps_per_epoch, run, chief):
    """The training loop's settings: epochs, checkpoints, validation, precise BN, XLA, loss scaling."""
    precise_bn = None
    if config.precise_bn > 0:
        def bn_dataset_fn(input_context):  # unaugmented training images, whole global batches
            return data_lib.train_dataset(usable, config.batch_size, seed=config.seed, augment_images=False,
                                          drop_remainder=True, input_context=input_context, skip_empty=True).repeat()
        precise_bn = batchnorm.PreciseBN(model, strategy.distribute_datasets_from_function(bn_dataset_fn),
                                         config.precise_bn, strategy)
    has_val = val_set is not None and len(val_set) > 0
    return loop.LoopSettings(
        epochs=config.epochs, steps_per_epoch=steps_per_epoch, global_batch=config.batch_size,
        checkpoint_dir=run / "checkpoints", chief=chief, resume=config.resume,
        validation_epochs=tuple(validation_epochs(config)) if has_val else (),
        validate=validation.Validation(val_set, config.batch_size, strategy, detector=detector) if has_val else None,
        precise_bn=precise_bn, jit_compile=config.jit_compile,
        loss_scaling=config.mixed_precision == "float16", verbose=2 if os.environ.get("CI") else 1)


def _write_results(config, run, model, detector, train_set, val_set, history, summary, validate=None):
    """The chief's last files: the final validation and drawings, final.keras, skipped.txt, summary.json."""
    if val_set is not None and len(val_set):
        summary.update(_final_validation(config, detector, val_set, history, run, validate))
    model.save(run / "final.keras")
    report = summary["skipped"]
    (run / "skipped.txt").write_text(
        "\n".join(report + train_set.report.messages + (val_set.report.messages if val_set else [])) + "\n")
    (run / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def _final_validation(config, detector, val_set, history, run, validate=None):
    """The final model's (``detector``'s) validation report, its pictures in ``run/plots/`` (PR
    curves, confusion matrices, F1 against the score threshold, the run's curves from history.csv)
    and a few validation images with its detections drawn, in ``run/predictions/``. Returns the
    summary's fields: the mAP and AP50 are the last epoch's validation when it ran (the same model
    and images), else this report's. The report is ``validate``'s last when it scored these very
    weights (after the last epoch), else made now."""
    step = validation.training_step(detector.model)
    reuse = (validate is not None and validate.last_report is not None and step is not None
             and validate.last_report_step == step)
    report = validate.last_report if reuse else evaluation.evaluate_model(detector, val_set, config.batch_size)
    stats = report["stats"]
    if config.eval_every > 0 and history.get("val_AP50"):  # a run that validates does so after its last epoch
        stats = {"AP": history["val_mAP"][-1], "AP50": history["val_AP50"][-1]}
    (run / "plots").mkdir(exist_ok=True)
    (run / "plots" / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    plots.write_report_plots(report, run / "plots")
    if (run / "history.csv").is_file():
        plots.training_curves(run / "history.csv", run / "plots" / "training_curves.png")
    drawn = prediction.draw_set_predictions(detector, val_set, run / "predictions", count=max(config.val_images, 1))
    return {"val_mAP": round(float(stats["AP"]), 4), "val_AP50": round(float(stats["AP50"]), 4),
            "best_f1_threshold": report["best_f1"]["threshold"], "plots": str(run / "plots"),
            "predictions": str(run / "predictions"), "predictions_drawn": len(drawn)}


__all__ = ["TrainConfig", "build_optimizer", "compile_model", "load_datasets", "train"]

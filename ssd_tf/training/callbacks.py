"""Training callbacks and checks: a stop on a non-finite loss, CSV columns fixed from the start,
drawn detections in TensorBoard, precise BN and COCO mAP for ``model.fit``."""

import logging
import math

import keras
import numpy as np
import tensorflow as tf

from ssd_tf import data as data_lib
from ssd_tf.evaluation import coco_metric
from ssd_tf.inference import drawing as visualize
from ssd_tf.inference.detector import Detector
from ssd_tf.modeling import batchnorm
from ssd_tf.training.validation import is_validation_epoch

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; training stopped at that step."""


def check_finite_loss(loss, step, last_finite):
    """Raise TrainingDiverged when ``loss`` is NaN or Inf. ``step`` counts from 1 over the whole run;
    ``last_finite`` is (step, loss) of the last finite loss, or None."""
    if math.isfinite(loss):
        return
    before = (f"the last finite loss was {last_finite[1]:.4f} at step {last_finite[0]}" if last_finite
              else "no step had a finite loss")
    raise TrainingDiverged(
        f"loss is {loss} at step {step}; {before}. Training stopped; the checkpoint of the last finished "
        "epoch is kept (lower lr=, or check the data).")


class DetectionImages(keras.callbacks.Callback):
    """Writes a few validation images with their drawn detections to TensorBoard every ``every``
    epochs and after the last."""

    def __init__(self, images, log_dir, class_names, score_threshold=0.3, every=1, detector=None):
        super().__init__()
        self.images = np.asarray(images, np.float32)
        self.writer = tf.summary.create_file_writer(str(log_dir))
        self.class_names = class_names
        self.score_threshold = score_threshold
        self.every = every
        self._detector = detector  # a Detector of the model trained, to share its traced graph

    def on_epoch_end(self, epoch, logs=None):
        if not is_validation_epoch(epoch, self.every, (self.params or {}).get("epochs")):
            return
        # The model called directly (Detector's graph), not predict(): it also runs on the chief alone
        # under MultiWorkerMirroredStrategy.
        if self._detector is None or self._detector.model is not self.model:
            self._detector = Detector(self.model, self.class_names)
        dets = self._detector.detect_resized(self.images)
        drawn = []
        for i, image in enumerate(self.images):
            n = int(dets["num_detections"][i])
            drawn.append(visualize.draw_kept(image, dets["boxes"][i, :n], dets["classes"][i, :n],
                                             dets["scores"][i, :n], self._detector.class_names,
                                             self.score_threshold)[0])
        with self.writer.as_default():
            tf.summary.image("validation_detections", np.stack(drawn), step=epoch, max_outputs=len(drawn))
        self.writer.flush()


class ValidationPictures(keras.callbacks.Callback):
    """After each validation, into TensorBoard: precision-recall curves at IoU 0.5 (TensorBoard's
    pr_curve summaries, one per class, over the score thresholds 0..1) and the confusion matrix,
    in counts, as an image. Reads ``validation``'s (a ``Validation``) latest report; runs on the
    chief, where the report is made."""

    def __init__(self, validation, log_dir):
        super().__init__()
        self.validation = validation
        self.writer = tf.summary.create_file_writer(str(log_dir))
        self._written = 0

    def on_epoch_end(self, epoch, logs=None):
        report = self.validation.last_report
        if report is None or self.validation.reports == self._written:
            return
        self._written = self.validation.reports
        from tensorboard.plugins.pr_curve import summary as pr_summary

        from ssd_tf.evaluation import plots

        with self.writer.as_default():
            for name, counts in report["threshold_counts"].items():
                tp, fp = np.array(counts["tp"], float), np.array(counts["fp"], float)
                fn = np.maximum(counts["gt"] - tp, 0)
                precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
                recall = tp / max(counts["gt"], 1)
                pb = pr_summary.raw_data_pb(f"pr_curve/{name}", tp, fp, np.zeros_like(tp), fn, precision, recall,
                                            num_thresholds=len(tp))
                tf.summary.experimental.write_raw_pb(pb.SerializeToString(), step=epoch)
            png = plots.confusion_png(report)
            tf.summary.image("confusion_matrix", tf.io.decode_png(png)[None], step=epoch)
        self.writer.flush()


class CSVLogger(keras.callbacks.CSVLogger):
    """Keras' CSVLogger with ``columns`` (say ``val_loss``) from the first epoch on, written NA on
    epochs that don't log them: Keras' own fixes its columns at the first epoch, so a run that
    validates later would lose them."""

    def __init__(self, filename, columns=(), **kwargs):
        super().__init__(filename, **kwargs)
        self.columns = tuple(columns)

    def on_epoch_end(self, epoch, logs=None):
        if self.keys is None:
            self.keys = sorted(set(logs or {}) | set(self.columns))
        super().on_epoch_end(epoch, logs)


def sample_images(detection_set, count):
    if detection_set is None or count <= 0:
        return None
    for images, _ in data_lib.eval_dataset(detection_set, count).take(1):
        return images.numpy()
    return None


class PreciseBatchNorm(keras.callbacks.Callback):
    """For ``model.fit``: ``batchnorm.PreciseBN`` over ``batches`` batches of ``dataset`` ((images,
    y_true), unaugmented training images) before each validation, and at the end of the last epoch
    (or of every epoch when the number of epochs is unknown). Checkpoints of epochs without
    validation keep the lagging moving averages; training does not use them.

    Early in training, from random weights, the moving averages lag far behind weights that change
    fast, so inference-mode outputs (validation, the saved model) explode while the training loss
    falls. Cost: ``batches`` forward passes per validation. ``scripts/train.py`` runs the same
    recalibration in its loop, under any strategy.
    """

    def __init__(self, dataset, batches=4):
        super().__init__()
        self.dataset = dataset
        self.batches = batches
        self._precise = None
        self._done_epoch = None
        self._epoch = None

    def recalibrate(self):
        if self._precise is None or self._precise.model is not self.model:
            self._precise = batchnorm.PreciseBN(self.model, self.dataset, self.batches)
        self._precise()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_test_begin(self, logs=None):
        if self._epoch is not None and self._done_epoch != self._epoch:  # validation inside fit
            self.recalibrate()
            self._done_epoch = self._epoch

    def on_epoch_end(self, epoch, logs=None):
        epochs = (self.params or {}).get("epochs")
        if self._done_epoch != epoch and (epochs is None or epoch + 1 == epochs):
            self.recalibrate()
            self._done_epoch = epoch

    def on_train_end(self, logs=None):
        self._epoch = None


class COCOEvaluation(keras.callbacks.Callback):
    """Keras callback: COCO mAP on a DetectionSet every ``every`` epochs and after the last (as
    ``model.fit`` tells it), into the logs as ``val_mAP`` and ``val_AP50`` (so TensorBoard,
    CSVLogger and progress bars show them). Epochs in between log nothing; Keras' CSVLogger fixes
    its columns at the first epoch, so with ``every`` > 1 use ``ssd_tf.training.callbacks.CSVLogger(path,
    columns=["val_mAP", "val_AP50"])``."""

    def __init__(self, detection_set, every=1, batch_size=8):
        super().__init__()
        self.detection_set = detection_set
        self.every = every
        self.batch_size = batch_size
        self._detector = None

    def on_train_begin(self, logs=None):
        self._detector = Detector(self.model)  # traced once per run, not once per epoch

    def on_epoch_end(self, epoch, logs=None):
        if not is_validation_epoch(epoch, self.every, (self.params or {}).get("epochs")):
            return
        if self._detector is None or self._detector.model is not self.model:  # used outside model.fit
            self._detector = Detector(self.model)
        report = coco_metric.evaluate_model(self._detector, self.detection_set, self.batch_size)
        if logs is not None:
            logs["val_mAP"] = report["stats"]["AP"]
            logs["val_AP50"] = report["stats"]["AP50"]
        log.info("epoch %d: val mAP %.4f, AP50 %.4f", epoch + 1, report["stats"]["AP"], report["stats"]["AP50"])

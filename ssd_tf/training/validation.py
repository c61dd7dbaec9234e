"""Validation during training, shared out among the workers: the loss and COCO mAP.

Each worker scores its share of the validation images (images i, i + n, ... of n workers, or whole
TFRecord files): the loss sums and the detections are gathered with collectives, and the COCO
metric is computed once, on the chief, over all the detections. Every worker returns the same logs.
"""

import logging

import numpy as np
import tensorflow as tf

from ssd_tf import data as data_lib
from ssd_tf.evaluation import coco_metric as evaluation
from ssd_tf.inference.detector import Detector
from ssd_tf.modeling import losses
from ssd_tf.training import distribute

log = logging.getLogger("ssd_tf.training.validation")

LOG_KEYS = ("val_loss", "val_loc_loss", "val_cls_loss", "val_mAP", "val_AP50")


class Validation:
    """``Validation(val_set, batch_size, strategy)(model)`` -> {val_loss, val_loc_loss,
    val_cls_loss (per image, inference mode, as Keras' fit reports them), val_mAP, val_AP50}.

    A collective under MultiWorkerMirroredStrategy: every worker calls it, and gets the same numbers.
    ``coco=False`` skips the COCO metric. ``detector``: a ``Detector`` of the model validated, to
    share its traced graph (a training run's drawings use the same one).
    """

    def __init__(self, detection_set, batch_size, strategy=None, coco=True, detector=None):
        self.detection_set = detection_set
        self.batch_size = batch_size
        self.strategy = strategy or tf.distribute.get_strategy()
        self.coco = coco
        self.share = distribute.worker_share(self.strategy)
        self._model = self._predict = None
        self._detector = detector
        self.last_report = None  # the chief's last COCO report (``evaluate_detections``'), with its count
        self.reports = 0
        self.last_report_step = None  # the training step the last report's weights had

    def _bind(self, model):
        if self._model is not model:  # traced once per model, not once per validation
            self._model = model
            self._predict = tf.function(lambda images: model(images, training=False))
            if self._detector is None or self._detector.model is not model:
                self._detector = Detector(model)

    def losses(self, model):
        """{val_loss, val_loc_loss, val_cls_loss} over every worker's share."""
        self._bind(model)
        sums = np.zeros(4)  # loss, localisation, classification, images
        for images, y_true in data_lib.validation_dataset(self.detection_set, self.batch_size, shard=self.share):
            if not len(images):
                continue
            loc, cls, _ = losses.ssd_loss_parts(y_true, self._predict(images))
            sums += [float(tf.reduce_sum(loc + cls)), float(tf.reduce_sum(loc)), float(tf.reduce_sum(cls)),
                     int(images.shape[0])]
        log.info("validation: worker %d of %d scored %d images", *self.share, int(sums[3]))
        sums = distribute.all_sum(self.strategy, sums)
        mean = sums[:3] / max(sums[3], 1)
        return {"val_loss": mean[0], "val_loc_loss": mean[1], "val_cls_loss": mean[2]}

    def detections(self, model):
        """COCO result dicts of every worker's share, on every worker."""
        self._bind(model)
        mine = evaluation.predict_coco_results(self._detector, self.detection_set, self.batch_size,
                                               shard=self.share)
        rows = np.array([[d["image_id"], *d["bbox"], d["score"], d["category_id"]] for d in mine],
                        np.float64).reshape(-1, 7)
        rows = distribute.all_gather_rows(self.strategy, rows)
        return [{"image_id": int(r[0]), "bbox": [float(v) for v in r[1:5]], "score": float(r[5]),
                 "category_id": int(r[6])} for r in rows]

    def __call__(self, model):
        logs = self.losses(model)
        if self.coco:
            results = self.detections(model)
            stats = np.zeros(2)
            if distribute.is_chief():  # scored once; the others receive the numbers
                report = evaluation.evaluate_detections(self.detection_set, results)
                stats = np.array([report["stats"]["AP"], report["stats"]["AP50"]])
                self.last_report, self.reports = report, self.reports + 1
                self.last_report_step = training_step(model)
            if self.share[1] > 1:
                stats = distribute.all_sum(self.strategy, stats)
            logs.update(val_mAP=float(stats[0]), val_AP50=float(stats[1]))
        return logs


def is_validation_epoch(epoch, every, epochs=None):
    """Whether a run validates after ``epoch`` (0-based): every ``every`` epochs and after the last
    of ``epochs`` (when known); never when ``every`` is 0."""
    if every <= 0:
        return False
    return (epoch + 1) % every == 0 or (epochs is not None and epoch + 1 == epochs)


def training_step(model):
    """The optimizer's step count of a compiled model (None without one): equal counts, equal weights."""
    optimizer = getattr(model, "optimizer", None)
    return int(optimizer.iterations.numpy()) if optimizer is not None else None

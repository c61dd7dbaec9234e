"""Training callbacks: resume state, a stop on a non-finite loss, learning rate in the logs, drawn
detections in TensorBoard."""

import logging
import math

import keras
import numpy as np
import tensorflow as tf

from ssd_tf import data as data_lib
from ssd_tf import artifacts, visualize
from ssd_tf.detector import Detector
from ssd_tf.evaluation import is_validation_epoch


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
        "epoch is kept (lower --lr, or check the data).")


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raises TrainingDiverged at the first step whose loss is NaN or Inf (``model.fit`` path).

    The step's loss is Keras' running mean over the epoch, so it turns non-finite at the step that
    does. Raising mid-epoch leaves the last epoch's checkpoint as it was.
    """

    def __init__(self, steps_per_epoch):
        super().__init__()
        self.steps_per_epoch = steps_per_epoch
        self.epoch = 0
        self.last_finite = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if logs and "loss" in logs:
            loss = float(keras.ops.convert_to_numpy(logs["loss"]))
            step = self.epoch * self.steps_per_epoch + batch + 1
            check_finite_loss(loss, step, self.last_finite)
            self.last_finite = (step, loss)


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore, whose restore names the file when it does not fit the model."""

    def on_train_begin(self, logs=None):
        try:
            super().on_train_begin(logs)
        except (ValueError, OSError) as err:
            raise ValueError(f"{self._weights_path}: resume state does not fit the model: "
                             f"{artifacts.first_line(err)}") from None


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the current learning rate to the epoch logs (so TensorBoard and CSV show it)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class DetectionImages(keras.callbacks.Callback):
    """Writes a few validation images with their drawn detections to TensorBoard every ``every``
    epochs and after the last."""

    def __init__(self, images, log_dir, class_names, score_threshold=0.3, every=1):
        super().__init__()
        self.images = np.asarray(images, np.float32)
        self.writer = tf.summary.create_file_writer(str(log_dir))
        self.class_names = class_names
        self.score_threshold = score_threshold
        self.every = every
        self._detector = None

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
    """Before each validation, and at the end of the last epoch (or of every epoch when the number
    of epochs is unknown), set every batch norm's moving mean and variance to their average over
    ``batches`` batches of ``dataset`` ((images, y_true), unaugmented training images): "precise
    BN" (Wu and Johnson, 2021). Checkpoints of epochs without validation keep the lagging
    moving averages; training does not use them.

    Early in training, from random weights, the moving averages lag far behind weights that change
    fast, so inference-mode outputs (validation, the saved model) explode while the training loss
    falls. The forward passes run in training mode without a weight update; cost: ``batches``
    forward passes per epoch. Single replica only (``training.train`` adds it then).
    """

    def __init__(self, dataset, batches=4):
        super().__init__()
        self.dataset = dataset
        self.batches = batches
        self._forward = None
        self._done_epoch = None
        self._epoch = None

    def _layers(self):
        return [layer for layer in self.model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)
                and layer.trainable]

    def recalibrate(self):
        layers = self._layers()
        if not layers or self.batches <= 0:
            return
        momenta = [layer.momentum for layer in layers]
        before = [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in layers]
        try:
            for layer in layers:  # each forward pass leaves exactly its batch's statistics
                layer.momentum = 0.0
            if self._forward is None:  # traced once, with momentum 0
                self._forward = tf.function(lambda images: self.model(images, training=True))
            sums, count = None, 0
            for images, _ in self.dataset.take(self.batches):
                self._forward(images)
                stats = [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in layers]
                sums = stats if sums is None else [(m + a, v + b) for (m, v), (a, b) in zip(sums, stats)]
                count += 1
        finally:
            for layer, momentum in zip(layers, momenta):
                layer.momentum = momentum
        new = before if not count else [(m / count, v / count) for m, v in sums]
        if not all(np.all(np.isfinite(m)) and np.all(np.isfinite(v)) for m, v in new):
            # Diverged weights: keep the moving statistics as they were; the loss check stops the run.
            logging.getLogger("ssd_tf.callbacks").warning("precise BN: non-finite statistics, left unchanged")
            new = before
        for layer, (mean, variance) in zip(layers, new):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)

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

"""Training callbacks: learning rate in the logs, drawn detections in TensorBoard."""

import keras
import numpy as np
import tensorflow as tf

from ssd_tf import data as data_lib
from ssd_tf import postprocess, visualize


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


def sample_images(detection_set, count):
    if detection_set is None or count <= 0:
        return None
    for images, _ in data_lib.eval_dataset(detection_set.subset(range(min(count, len(detection_set)))), count):
        return images.numpy()
    return None

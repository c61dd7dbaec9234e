"""SSD multibox loss: smooth-L1 on positives + cross-entropy with 3:1 hard-negative mining.

Same value as the reference's ``Loss.forward`` on the same inputs.
"""

import keras
import tensorflow as tf


def _smooth_l1(x):
    """Elementwise smooth-L1 with beta = 1 (PyTorch's SmoothL1Loss default)."""
    ax = tf.abs(x)
    return tf.where(ax < 1.0, 0.5 * x * x, ax - 0.5)


def hard_negative_mask(ce, positive, neg_pos_ratio=3):
    """Pick the hardest negatives of each image.

    Args:
      ce: [B, A] per-slot cross-entropy.
      positive: [B, A] bool.
    Returns:
      [B, A] bool: the ``neg_pos_ratio * num_positives`` negatives with the highest loss
      (at most all negatives), ranked like the reference (sort of sort, stable).
    """
    num_pos = tf.reduce_sum(tf.cast(positive, tf.int32), axis=1, keepdims=True)
    neg_loss = tf.where(positive, tf.zeros_like(ce), ce)
    order = tf.argsort(neg_loss, axis=1, direction="DESCENDING", stable=True)
    rank = tf.argsort(order, axis=1, stable=True)
    num_neg = tf.minimum(neg_pos_ratio * num_pos, tf.shape(ce)[1])
    # The reference counts a positive twice if the rank cut reaches it (only when positives exceed
    # a quarter of all slots); we never count a positive as a negative.
    return tf.logical_and(rank < num_neg, tf.logical_not(positive))


def ssd_loss_parts(y_true, y_pred, neg_pos_ratio=3):
    """Per-image loss parts.

    Args:
      y_true: [B, A, 5] encoded offsets + label (float), from ``encode_y_true``.
      y_pred: [B, A, 4 + C] model output (offsets, then class logits).
    Returns:
      (localisation [B], classification [B], num_positives [B]); both losses are already divided
      by the image's positive count and are 0 for an image without positives.
    """
    y_true = tf.cast(y_true, tf.float32)
    y_pred = tf.cast(y_pred, tf.float32)  # mixed precision: losses in float32
    target_offsets = y_true[..., :4]
    labels = tf.cast(tf.round(y_true[..., 4]), tf.int32)
    num_classes = tf.shape(y_pred)[-1] - 4
    # Name the mismatch here instead of failing inside the cross-entropy kernel.
    with tf.control_dependencies([tf.debugging.assert_less(
        tf.reduce_max(labels), num_classes, summarize=1,
        message="SSDLoss: y_true holds a class id >= the model's num_classes (y_pred has 4 + num_classes "
                "values per box); build the model with the data set's num_classes")]):
        labels = tf.identity(labels)
    positive = labels > 0
    pos_f = tf.cast(positive, tf.float32)
    num_pos = tf.reduce_sum(pos_f, axis=1)

    loc = tf.reduce_sum(_smooth_l1(y_pred[..., :4] - target_offsets), axis=-1)
    loc = tf.reduce_sum(loc * pos_f, axis=1)

    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=y_pred[..., 4:])
    negative = hard_negative_mask(tf.stop_gradient(ce), positive, neg_pos_ratio)
    cls = tf.reduce_sum(ce * (pos_f + tf.cast(negative, tf.float32)), axis=1)

    norm = tf.math.divide_no_nan(1.0, num_pos)  # images without positives count 0
    return loc * norm, cls * norm, num_pos


@keras.saving.register_keras_serializable(package="ssd_tf")
class SSDLoss(keras.losses.Loss):
    """SSD multibox loss as a Keras loss.

    ``y_true`` [B, 8732, 5] (offsets + label as float), ``y_pred`` [B, 8732, 4 + C].
    Returns one value per image, (loc + cls) / positives, so that Keras' reduction (mean over
    the global batch) stays right under ``tf.distribute``.

    Example:
      model.compile(optimizer="sgd", loss=ssd_tf.SSDLoss())
    """

    def __init__(self, neg_pos_ratio=3, name="ssd_loss", reduction="sum_over_batch_size", **kwargs):
        super().__init__(name=name, reduction=reduction, **kwargs)
        self.neg_pos_ratio = neg_pos_ratio

    def call(self, y_true, y_pred):
        loc, cls, _ = ssd_loss_parts(y_true, y_pred, self.neg_pos_ratio)
        return loc + cls

    def get_config(self):
        return {**super().get_config(), "neg_pos_ratio": self.neg_pos_ratio}


@keras.saving.register_keras_serializable(package="ssd_tf")
class LossPart(keras.metrics.Mean):
    """Mean of one part of the SSD loss ("localisation" or "classification") per image.

    Pass to ``model.compile(metrics=...)`` so progress bars and TensorBoard show both parts.
    """

    def __init__(self, part="localisation", name=None, **kwargs):
        if part not in ("localisation", "classification"):
            raise ValueError(f"part must be 'localisation' or 'classification', got {part!r}")
        super().__init__(name=name or ("loc_loss" if part == "localisation" else "cls_loss"), **kwargs)
        self.part = part

    def update_state(self, y_true, y_pred, sample_weight=None):
        loc, cls, _ = ssd_loss_parts(y_true, y_pred)
        return super().update_state(loc if self.part == "localisation" else cls, sample_weight)

    def get_config(self):
        return {**super().get_config(), "part": self.part}


def loss_part_metrics():
    """[localisation, classification] metrics for ``model.compile``."""
    return [LossPart("localisation"), LossPart("classification")]

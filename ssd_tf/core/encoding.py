"""Ground truth -> per-default-box training targets (the reference's ``Encoder.encode``).

Pure TensorFlow and graph-safe: usable inside ``tf.data.Dataset.map`` and ``tf.function``.
"""

import tensorflow as tf

from ssd_tf.core import anchors as anchors_lib
from ssd_tf.core import boxes as box_ops


def boxes_to_offsets(boxes_cxcywh, anchors_cxcywh, spec=anchors_lib.SSD300):
    """Regression targets of boxes relative to anchors (the reference's ``_location_vec``).

    Both [..., 4] (cx, cy, w, h). Returns [..., 4]:
    ((cx - acx) / aw / 0.1, (cy - acy) / ah / 0.1, log(w / aw) / 0.2, log(h / ah) / 0.2).
    """
    xy = (boxes_cxcywh[..., :2] - anchors_cxcywh[..., :2]) / anchors_cxcywh[..., 2:] / spec.scale_xy
    wh = tf.math.log(boxes_cxcywh[..., 2:] / anchors_cxcywh[..., 2:]) / spec.scale_wh
    return tf.concat([xy, wh], axis=-1)


def offsets_to_boxes(offsets, anchors_cxcywh, spec=anchors_lib.SSD300):
    """Inverse of :func:`boxes_to_offsets`: [..., 4] offsets -> [..., 4] xyxy boxes."""
    xy = offsets[..., :2] * spec.scale_xy * anchors_cxcywh[..., 2:] + anchors_cxcywh[..., :2]
    wh = tf.exp(offsets[..., 2:] * spec.scale_wh) * anchors_cxcywh[..., 2:]
    return box_ops.cxcywh_to_xyxy(tf.concat([xy, wh], axis=-1))


def encode_targets(boxes, labels, iou_threshold=0.5, spec=anchors_lib.SSD300, num_valid=None):
    """Match ground truth to the default boxes.

    Args:
      boxes: [N, 4] float, normalised xyxy. N may be 0.
      labels: [N] int, classes in 1..C-1.
      iou_threshold: a default box whose best IoU exceeds this is a positive.
      num_valid: only the first ``num_valid`` rows are ground truth; the rest is padding (fixed
        shapes for XLA). Default: all N.

    Returns:
      offsets: [8732, 4] float32 regression targets (0 for background slots).
      labels: [8732] int32, 0 = background.

    Matching is the reference's: each default box takes its highest-IoU ground truth; each ground
    truth then claims its own best default box (IoU forced to 2, later ground truths win a shared
    box); a default box is positive when its IoU exceeds ``iou_threshold``.
    """
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    anchors_cxcywh = tf.constant(anchors_lib.default_boxes(spec))
    anchors_xyxy = box_ops.cxcywh_to_xyxy(anchors_cxcywh)
    num_anchors = spec.num_boxes
    num_gt = tf.shape(boxes)[0]
    num_valid = num_gt if num_valid is None else tf.cast(num_valid, tf.int32)

    def _match():
        valid = tf.range(num_gt) < num_valid  # [N]; padding never matches anything
        ious = tf.where(valid[:, None], box_ops.pairwise_iou(boxes, anchors_xyxy), -1.0)  # [N, A]
        best_gt_iou = tf.reduce_max(ious, axis=0)  # [A]
        best_gt_idx = tf.argmax(ious, axis=0, output_type=tf.int32)  # [A]
        best_anchor_idx = tf.argmax(ious, axis=1, output_type=tf.int32)  # [N]
        # Each ground truth claims its best anchor. Where several share one, the reference's indexed
        # assignment leaves the last ground truth; take the max index explicitly, since scatter
        # order with duplicate indices is undefined in TF.
        claims = tf.equal(best_anchor_idx[:, None], tf.range(num_anchors)[None, :]) & valid[:, None]  # [N, A]
        claimant = tf.reduce_max(tf.where(claims, tf.range(num_gt)[:, None], -1), axis=0)  # [A]
        forced = claimant >= 0
        best_gt_iou = tf.where(forced, 2.0, best_gt_iou)
        best_gt_idx = tf.where(forced, claimant, best_gt_idx)
        positive = best_gt_iou > iou_threshold
        matched_boxes = tf.gather(boxes, best_gt_idx)
        matched_labels = tf.where(positive, tf.gather(labels, best_gt_idx), 0)
        offsets = boxes_to_offsets(box_ops.xyxy_to_cxcywh(matched_boxes), anchors_cxcywh, spec)
        offsets = tf.where(positive[:, None], offsets, 0.0)
        return offsets, matched_labels

    def _background():
        return tf.zeros([num_anchors, 4], tf.float32), tf.zeros([num_anchors], tf.int32)

    offsets, out_labels = tf.cond(num_valid > 0, _match, _background)
    offsets = tf.ensure_shape(offsets, [num_anchors, 4])
    out_labels = tf.ensure_shape(out_labels, [num_anchors])
    return offsets, out_labels


def encode_y_true(boxes, labels, iou_threshold=0.5, spec=anchors_lib.SSD300, num_valid=None):
    """:func:`encode_targets` packed as the loss expects: [8732, 5] = offsets + label (float)."""
    offsets, out_labels = encode_targets(boxes, labels, iou_threshold, spec, num_valid)
    return tf.concat([offsets, tf.cast(out_labels, tf.float32)[:, None]], axis=-1)

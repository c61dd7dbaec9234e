"""Box formats and IoU: the one place that owns box maths.

Coordinate conventions used everywhere in ssd_tf (unless a name says otherwise):

=================  ==========================================  ===========
name               layout                                      units
=================  ==========================================  ===========
``boxes``          ``[xmin, ymin, xmax, ymax]``                normalised to [0, 1]
``*_cxcywh``       ``[cx, cy, w, h]`` (centre, size)           normalised to [0, 1]
``*_xywh``         ``[x, y, w, h]`` (top-left corner, size)    as named (COCO json)
``*_pixels``       ``[xmin, ymin, xmax, ymax]``                pixels
=================  ==========================================  ===========

Normalised x runs along the image width, y along its height, origin at top-left.
All functions take and return ``tf.Tensor`` (float32) and work on any leading
batch dimensions ``[..., 4]``.
"""

import tensorflow as tf


def cxcywh_to_xyxy(boxes_cxcywh):
    """[..., 4] (cx, cy, w, h) -> [..., 4] (xmin, ymin, xmax, ymax)."""
    cx, cy, w, h = tf.unstack(boxes_cxcywh, axis=-1)
    return tf.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def xyxy_to_cxcywh(boxes):
    """[..., 4] (xmin, ymin, xmax, ymax) -> [..., 4] (cx, cy, w, h)."""
    x0, y0, x1, y1 = tf.unstack(boxes, axis=-1)
    return tf.stack([0.5 * (x0 + x1), 0.5 * (y0 + y1), x1 - x0, y1 - y0], axis=-1)


def box_area(boxes):
    """[..., 4] xyxy -> [...] area (0 for degenerate boxes)."""
    return tf.maximum(boxes[..., 2] - boxes[..., 0], 0.0) * tf.maximum(
        boxes[..., 3] - boxes[..., 1], 0.0
    )


def iou(boxes_a, boxes_b):
    """IoU of ``boxes_a`` [..., 4] and ``boxes_b`` [..., 4], broadcast against each other -> [...].

    Both xyxy. Pairs whose union is empty get IoU 0 rather than NaN.
    """
    lt = tf.maximum(boxes_a[..., :2], boxes_b[..., :2])
    rb = tf.minimum(boxes_a[..., 2:], boxes_b[..., 2:])
    wh = tf.maximum(rb - lt, 0.0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(boxes_a) + box_area(boxes_b) - inter
    return tf.math.divide_no_nan(inter, union)


def pairwise_iou(boxes_a, boxes_b):
    """IoU of every box in ``boxes_a`` [N, 4] with every box in ``boxes_b`` [M, 4] -> [N, M]."""
    return iou(boxes_a[:, None, :], boxes_b[None, :, :])

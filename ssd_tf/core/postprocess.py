"""Model output -> detections: softmax, decode against the default boxes, per-class NMS.

Same detections as the reference's ``PostProcess`` (boxes clipped to [0, 1], then boxes under
1/300 wide or high dropped, score > threshold, per-class NMS, best ``max_detections`` overall).
"""

import tensorflow as tf

from ssd_tf.core import anchors as anchors_lib
from ssd_tf.core import encoding


def decode_detections(
    predictions,
    score_threshold=0.05,
    iou_threshold=0.5,
    max_detections=100,
    spec=anchors_lib.SSD300,
):
    """Decode a batch of raw model outputs.

    Args:
      predictions: [B, 8732, 4 + C] model output.
    Returns:
      dict with ``boxes`` [B, K, 4] normalised xyxy in [0, 1], ``scores`` [B, K] float32,
      ``classes`` [B, K] int32 in 1..C-1, ``num_detections`` [B] int32; K = max_detections.
      Slots past ``num_detections`` are padding (zero box, score 0, class 0).
    """
    predictions = tf.cast(predictions, tf.float32)
    anchors_cxcywh = tf.constant(anchors_lib.default_boxes(spec))
    boxes = encoding.offsets_to_boxes(predictions[..., :4], anchors_cxcywh, spec)
    boxes = tf.clip_by_value(boxes, 0.0, 1.0)
    probs = tf.nn.softmax(predictions[..., 4:], axis=-1)[..., 1:]  # drop background
    min_size = 1.0 / spec.image_size
    big_enough = tf.logical_and(
        boxes[..., 2] - boxes[..., 0] >= min_size, boxes[..., 3] - boxes[..., 1] >= min_size
    )
    probs = tf.where(big_enough[..., None], probs, 0.0)
    nms = tf.image.combined_non_max_suppression(
        boxes[:, :, None, :],
        probs,
        # No per-class cap beyond the total: a class can't place more than K in the top K.
        max_output_size_per_class=max_detections,
        max_total_size=max_detections,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        clip_boxes=False,
    )
    num = tf.cast(nms.valid_detections, tf.int32)
    valid = tf.range(max_detections)[None, :] < num[:, None]
    classes = tf.where(valid, tf.cast(nms.nmsed_classes, tf.int32) + 1, 0)
    return {
        "boxes": nms.nmsed_boxes,
        "scores": nms.nmsed_scores,
        "classes": classes,
        "num_detections": num,
    }

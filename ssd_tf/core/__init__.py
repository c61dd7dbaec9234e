"""The conventions everything else shares: boxes, the 8732 default boxes in output-slot order,
matching and box encoding, decoding to detections, and class names.

Boxes are normalised [xmin, ymin, xmax, ymax] unless a name says otherwise (``*_cxcywh``,
``*_pixels``). Class 0 is background; data set classes are 1..C-1.
"""

from ssd_tf.lazy import exports

_EXPORTS = {
    "xyxy_to_cxcywh": "boxes", "cxcywh_to_xyxy": "boxes", "box_area": "boxes", "iou": "boxes", "pairwise_iou": "boxes",
    "AnchorSpec": "anchors", "SSD300": "anchors", "default_boxes": "anchors", "level_box_sizes": "anchors",
    "slot_index": "anchors",
    "boxes_to_offsets": "encoding", "offsets_to_boxes": "encoding", "encode_targets": "encoding",
    "encode_y_true": "encoding",
    "decode_detections": "postprocess",
    "CLASSES_FILE": "classes", "read_classes": "classes", "write_classes": "classes", "generic_names": "classes",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = exports(__name__, _EXPORTS)

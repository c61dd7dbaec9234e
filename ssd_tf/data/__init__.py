"""Data: readers (VOC, COCO, YOLO, TFRecords, built-in synthetic), the tf.data pipelines, image files and
int8 calibration images.

Names are imported on first use (as in ``ssd_tf``): the data set kinds and ``--classes`` parsing
(``ssd_tf.data.kinds``) load without TensorFlow, for the scripts' ``--help``.
"""

from ssd_tf.lazy import exports

_EXPORTS = {
    "read_coco": "coco",
    "check_labels": "pipeline", "eval_dataset": "pipeline", "for_training": "pipeline", "num_batches": "pipeline",
    "train_dataset": "pipeline", "validation_dataset": "pipeline",
    "DetectionSet": "detection_set", "SkipReport": "detection_set",
    "KINDS": "kinds", "default_split": "kinds", "parse_classes": "kinds", "read_dataset": "kinds",
    "make_synthetic": "synthetic",
    "TFRecordSet": "tfrecord", "read_tfrecords": "tfrecord",
    "VOC_CLASSES": "voc", "read_voc": "voc",
    "read_yolo": "yolo",
    "IMAGE_SUFFIXES": "images", "list_images": "images", "load_image": "images",
    "calibration_images": "calibration",
    "resize_image": "resize", "to_uint8_input": "resize",
    "convert": "conversion",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = exports(__name__, _EXPORTS)

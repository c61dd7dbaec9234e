"""Data: readers (VOC, COCO, built-in synthetic) and the tf.data pipelines."""

from ssd_tf.data.coco import read_coco
from ssd_tf.data.pipeline import (check_labels, eval_dataset, for_training, num_batches, train_dataset,
                                  validation_dataset)
from ssd_tf.data.detection_set import DetectionSet, SkipReport
from ssd_tf.data.kinds import KINDS, default_split, parse_classes, read_dataset
from ssd_tf.data.synthetic import make_synthetic
from ssd_tf.data.tfrecord import TFRecordSet, read_tfrecords
from ssd_tf.data.voc import VOC_CLASSES, read_voc

__all__ = [
    "DetectionSet", "SkipReport", "VOC_CLASSES", "eval_dataset", "make_synthetic", "num_batches", "read_coco",
    "read_dataset", "read_voc", "train_dataset", "validation_dataset", "TFRecordSet", "read_tfrecords",
    "for_training", "check_labels", "KINDS", "default_split", "parse_classes",
]

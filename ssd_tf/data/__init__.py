"""Data: readers (VOC, COCO, built-in synthetic) and the tf.data pipelines.

Names are imported on first use (as in ``ssd_tf``): the data set kinds and ``--classes`` parsing
(``ssd_tf.data.kinds``) load without TensorFlow, for the scripts' ``--help``.
"""

import importlib

_EXPORTS = {
    "read_coco": "coco",
    "check_labels": "pipeline", "eval_dataset": "pipeline", "for_training": "pipeline", "num_batches": "pipeline",
    "train_dataset": "pipeline", "validation_dataset": "pipeline",
    "DetectionSet": "detection_set", "SkipReport": "detection_set",
    "KINDS": "kinds", "default_split": "kinds", "parse_classes": "kinds", "read_dataset": "kinds",
    "make_synthetic": "synthetic",
    "TFRecordSet": "tfrecord", "read_tfrecords": "tfrecord",
    "VOC_CLASSES": "voc", "read_voc": "voc",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    elif importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))

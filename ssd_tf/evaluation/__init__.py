"""Scoring detections: the COCO metric (pycocotools) on any data set this project reads.

Importing this package loads no TensorFlow; its names load on first use.
"""

from ssd_tf.lazy import exports

_EXPORTS = {
    "STAT_NAMES": "coco_metric", "evaluate_model": "coco_metric", "evaluate_detections": "coco_metric",
    "predict_coco_results": "coco_metric", "coco_evaluate": "coco_metric", "detections_to_coco": "coco_metric",
    "format_report": "coco_metric",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = exports(__name__, _EXPORTS)

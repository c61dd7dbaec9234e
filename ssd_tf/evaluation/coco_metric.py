"""COCO-style evaluation (pycocotools COCOeval, iouType "bbox") for any DetectionSet.

For a COCO data set the ground truth is its instances file itself, as the official metric uses it:
crowd regions (``iscrowd: 1``) make detections on them ignored, APs/APm/APl bin objects by each
annotation's ``area`` (the segmentation area, not the box), and images without annotations count.
Other data sets are converted to COCO form (VOC ``difficult`` objects become ``iscrowd: 1`` so that
pycocotools ignores detections on them instead of counting them as misses). Detections are mapped
back to original-image pixels and data set category ids.
"""

import contextlib
import io
import logging

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ssd_tf import data as data_lib
from ssd_tf.data.coco import coco_ground_truth, load_json  # noqa: F401 (coco_ground_truth re-exported)
from ssd_tf.evaluation import confusion, curves
from ssd_tf.inference.detector import Detector
from ssd_tf.progress import track

log = logging.getLogger(__name__)

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def detections_to_coco(boxes, scores, classes, image_id, size, category_ids):
    """One image's detections (normalised xyxy, contiguous classes) -> COCO result dicts in pixels."""
    height, width = (float(v) for v in size)
    out = []
    for box, score, cls in zip(boxes, scores, classes):
        x0, y0, x1, y1 = (float(box[0]) * width, float(box[1]) * height, float(box[2]) * width, float(box[3]) * height)
        out.append({"image_id": int(image_id), "category_id": int(category_ids[int(cls)]),
                    "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(score)})
    return out


def _quiet(fn, verbose):
    if verbose:
        return fn()
    with contextlib.redirect_stdout(io.StringIO()):
        return fn()


def coco_evaluate(ground_truth, results, verbose=True, image_ids=None):
    """Run COCOeval. ``ground_truth``: COCO dict or instances-file path; ``results``: list of dicts or
    results-file path (a list, or a COCO-style dict whose "annotations" are the detections);
    ``image_ids``: evaluate these images only (default: all in the ground truth).
    Returns {"stats": {name: value} (the 12 COCO stats), "per_class_ap50": {name: AP50},
    "per_class": {name: {"AP50", "AP", "gt_count"}}, "curves": ``curves.pr_curves``' arrays at IoU
    0.5, "best_f1": ``curves.best_f1``, "threshold_counts": ``curves.threshold_counts``}.
    ``gt_count`` is the boxes COCOeval counts (crowd ones left out).
    """
    if not isinstance(results, (list, tuple)):
        loaded = load_json(results)
        if isinstance(loaded, dict):
            if not isinstance(loaded.get("annotations"), list):
                raise ValueError(f"{results}: detections must be a list or a dict with an 'annotations' list")
            loaded = loaded["annotations"]
        results = loaded

    def run():
        if isinstance(ground_truth, dict):
            gt = COCO()
            gt.dataset = ground_truth
            gt.createIndex()
        else:
            gt = COCO(str(ground_truth))
        if isinstance(results, (list, tuple)) and not results:
            return None, gt
        dt = gt.loadRes(list(results))
        evaluator = COCOeval(gt, dt, iouType="bbox")
        if image_ids is not None:
            evaluator.params.imgIds = sorted(int(i) for i in image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        return evaluator, gt

    evaluator, gt = _quiet(run, verbose)
    cat_ids = sorted(gt.cats)
    names = [gt.cats[c]["name"] for c in cat_ids]
    images = sorted(int(i) for i in image_ids) if image_ids is not None else gt.getImgIds()
    counts = {gt.cats[c]["name"]: len(gt.getAnnIds(imgIds=images, catIds=[c], iscrowd=False)) for c in cat_ids}
    if evaluator is None:  # no detections at all: every stat is 0
        return {"stats": {k: 0.0 for k in STAT_NAMES}, "per_class_ap50": {n: 0.0 for n in names},
                "per_class": {n: {"AP50": 0.0, "AP": 0.0, "gt_count": counts[n]} for n in names},
                "curves": curves.pr_curves(None, None, names), "best_f1": curves.best_f1(None, names),
                "threshold_counts": {n: {"tp": [0] * len(curves.THRESHOLDS), "fp": [0] * len(curves.THRESHOLDS),
                                         "gt": counts[n]} for n in names}}
    # precision and scores: [IoU thresholds, recall points, categories, area ranges, max dets]
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # all areas, 100 dets
    scores = evaluator.eval["scores"][0, :, :, 0, -1]
    order = [evaluator.params.catIds.index(c) for c in cat_ids]
    precision, scores = precision[:, :, order], scores[:, order]
    matched = curves.matches(evaluator, cat_ids)
    per_class = {}
    for k, name in enumerate(names):
        at_50, every = precision[0, :, k], precision[:, :, k]
        per_class[name] = {"AP50": _mean_valid(at_50), "AP": _mean_valid(every), "gt_count": counts[name]}
    return {"stats": dict(zip(STAT_NAMES, (float(s) for s in evaluator.stats))),
            "per_class_ap50": {n: v["AP50"] for n, v in per_class.items()}, "per_class": per_class,
            "curves": curves.pr_curves(precision[0], scores, names), "best_f1": curves.best_f1(matched, names),
            "threshold_counts": curves.threshold_counts(matched, names)}


def _mean_valid(values):
    """COCOeval's mean over entries > -1 (nan when none: a class without ground truth)."""
    values = np.asarray(values)
    return float(values[values > -1].mean()) if np.any(values > -1) else float("nan")


def predict_coco_results(detector, detection_set, batch_size=8, shard=None, progress=False):
    """Run a ``Detector`` (or a Keras model, wrapped in one) over a DetectionSet; return COCO result
    dicts (pixels, the set's category ids). ``shard=(index, count)``: that share of the images only.

    A Keras model detects on batches of resized images; a SavedModel or ``.tflite`` model on each
    decoded image at its own size, exactly as it serves. ``progress``: show it on stderr
    (``ssd_tf.progress``)."""
    if not isinstance(detector, Detector):
        detector = Detector(detector)
    results = []
    if detector.takes_resized:
        batches = ((detector.detect_resized(images), info)
                   for images, info in data_lib.eval_dataset(detection_set, batch_size, shard=shard))
    else:
        batches = ((detector.detect_batch(images.numpy()), info)
                   for images, info in data_lib.eval_dataset(detection_set, 1, resize=False, shard=shard)
                   if len(images))
    if progress:
        total = len(detection_set) if shard is None else len(range(shard[0], len(detection_set), shard[1]))
        batches = track(batches, total, "detecting", count=lambda item: len(item[1]["image_id"]))
    for dets, info in batches:
        for i, (image_id, size) in enumerate(zip(info["image_id"].numpy(), info["size"].numpy())):
            n = int(dets["num_detections"][i])
            results += detections_to_coco(dets["boxes"][i, :n], dets["scores"][i, :n], dets["classes"][i, :n],
                                          image_id, size, detection_set.category_ids)
    return results


def evaluate_detections(detection_set, results, verbose=False, score_threshold=0.25):
    """The COCO report of ``results`` (COCO result dicts: pixels, category ids) on ``detection_set``,
    with the confusion matrix at IoU 0.5 and ``score_threshold`` (``confusion``).

    A set read from a COCO instances file is scored against that file (the official metric),
    over the set's images: all of the file's, unless the reader skipped unreadable ones. Other sets
    are scored against ``coco_ground_truth``. Returns ``coco_evaluate``'s report plus
    ``num_detections``.
    """
    if detection_set.annotation_file:  # read once, for the metric and the confusion matrix
        truth, images = load_json(detection_set.annotation_file), detection_set.image_ids
    elif not hasattr(detection_set, "boxes"):
        raise ValueError(f"{detection_set.name}: no ground truth to evaluate against (records converted by "
                         "scripts/convert.py carry <split>-instances.json)")
    else:
        truth, images = coco_ground_truth(detection_set), None
    report = coco_evaluate(truth, results, verbose, image_ids=images)
    report["num_detections"] = len(results)
    report["confusion_matrix"] = confusion.confusion_matrix(truth, results, iou_threshold=0.5,
                                                            score_threshold=score_threshold, image_ids=images)
    return report


def evaluate_model(detector, detection_set, batch_size=8, verbose=False, score_threshold=0.25, progress=False):
    """The COCO report (``evaluate_detections``) of a ``Detector`` (or a Keras model) on a DetectionSet."""
    results = predict_coco_results(detector, detection_set, batch_size, progress=progress)
    return evaluate_detections(detection_set, results, verbose, score_threshold)


def format_report(report):
    """The report as ``evaluate.py`` prints it: the 12 stats, each class's AP50, AP and ground truth
    count, and the best-F1 score threshold."""
    lines = [f"{name:>6} {value:.4f}" for name, value in report["stats"].items()]
    lines.append(f"  {'class':<20} {'AP50':>6} {'AP':>6} {'boxes':>6}")
    for name, value in report["per_class_ap50"].items():
        entry = report.get("per_class", {}).get(name, {})
        lines.append(f"  {name:<20} {value:6.4f} {entry.get('AP', float('nan')):6.4f} {entry.get('gt_count', 0):6d}")
    if "best_f1" in report:
        best = report["best_f1"]
        lines.append(f"best F1 {best['f1']:.3f} at score threshold {best['threshold']:.2f} "
                     f"(precision {best['precision']:.3f}, recall {best['recall']:.3f})")
    return "\n".join(lines)

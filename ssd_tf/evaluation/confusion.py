"""Confusion matrix of detections against ground truth, with a background row and column.

``matrix[true][predicted]``, index 0 the background, 1..C-1 the data set's classes in the order of
its category ids. Ground truth counts as COCOeval counts it: crowd boxes (``iscrowd``) are left out.
Detections count from ``score_threshold`` up. Detections and boxes are paired regardless of class,
best overlap first (as Ultralytics' and the TF Object Detection API's matrices do): the pair of
highest IoU at or above ``iou_threshold``, then the next among those left, each detection and each
box used once. Then:
- a matched pair adds 1 at [its box's class][the detection's class];
- a box no detection matched adds 1 at [its class][0] (missed);
- a detection that matched no box adds 1 at [0][its class] (a false detection, duplicates
  included), unless it lies on a crowd region (half its area or more, COCO's rule for crowds):
  COCOeval ignores those, and so does the matrix.

So row c sums to class c's ground truth boxes, and column c to class c's detections above the
threshold, less those on crowd regions.
"""

import numpy as np
from pycocotools import mask as mask_utils


def _overlaps(boxes, others, crowd):
    """[N, 4] x [M, 4] xywh (pixels) -> [N, M] overlaps as COCOeval computes them (pycocotools'
    ``mask.iou``): IoU, or with ``crowd`` the share of each box's area inside the other."""
    if not len(boxes) or not len(others):
        return np.zeros((len(boxes), len(others)))
    return np.asarray(mask_utils.iou([list(map(float, b)) for b in boxes], [list(map(float, o)) for o in others],
                                     [int(crowd)] * len(others)), float).reshape(len(boxes), len(others))


def confusion_matrix(ground_truth, results, iou_threshold=0.5, score_threshold=0.25, image_ids=None):
    """The matrix of a COCO ground truth dict (``images``, ``annotations``, ``categories``) and
    COCO result dicts (``image_id``, ``category_id``, ``bbox`` xywh pixels, ``score``).

    Returns {"classes": ["background", names...], "category_ids": [...], "iou_threshold",
    "score_threshold", "matrix": [[int]] of [C][C]}. ``image_ids``: these images only.
    """
    categories = sorted(ground_truth["categories"], key=lambda c: c["id"])
    index = {c["id"]: k + 1 for k, c in enumerate(categories)}
    size = len(categories) + 1
    matrix = np.zeros((size, size), np.int64)
    images = set(image_ids) if image_ids is not None else {i["id"] for i in ground_truth["images"]}
    truth, crowds, found = {}, {}, {}
    for a in ground_truth["annotations"]:
        if a["image_id"] in images and a["category_id"] in index:
            target = crowds if a.get("iscrowd", 0) or a.get("ignore", 0) else truth
            target.setdefault(a["image_id"], []).append((a["bbox"], index[a["category_id"]]))
    for r in results:
        if r["image_id"] in images and r["score"] >= score_threshold and r["category_id"] in index:
            found.setdefault(r["image_id"], []).append((r["score"], r["bbox"], index[r["category_id"]]))
    for image in images:
        boxes = truth.get(image, [])
        detections = sorted(found.get(image, []), key=lambda d: -d[0])
        overlap = _overlaps([d[1] for d in detections], [b[0] for b in boxes], crowd=False)
        on_crowd = _overlaps([d[1] for d in detections], [c[0] for c in crowds.get(image, [])], crowd=True)
        taken = np.zeros(len(boxes), bool)
        matched = np.zeros(len(detections), bool)
        pairs = np.argwhere(overlap >= iou_threshold) if overlap.size else np.zeros((0, 2), int)
        # Best overlap first; among equal overlaps, the better score (detections are sorted by it).
        for k, j in sorted(pairs.tolist(), key=lambda kj: (-overlap[kj[0], kj[1]], kj[0])):
            if not matched[k] and not taken[j]:
                matched[k] = taken[j] = True
                matrix[boxes[j][1], detections[k][2]] += 1
        for k, (_, _, predicted) in enumerate(detections):
            if not matched[k] and not (on_crowd.shape[1] and on_crowd[k].max() >= 0.5):
                matrix[0, predicted] += 1
        for j, (_, true) in enumerate(boxes):
            if not taken[j]:
                matrix[true, 0] += 1
    return {"classes": ["background"] + [c["name"] for c in categories],
            "category_ids": [c["id"] for c in categories],
            "iou_threshold": float(iou_threshold), "score_threshold": float(score_threshold),
            "matrix": matrix.tolist()}


def row_normalised(matrix):
    """Each row divided by its sum (rows without ground truth stay 0)."""
    m = np.asarray(matrix, float)
    return m / np.maximum(m.sum(axis=1, keepdims=True), 1)

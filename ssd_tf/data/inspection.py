"""A data set's numbers before training: boxes per class, sizes and aspect ratios at the model's
input, and default-box coverage.

Coverage: for each ground-truth box, its best IoU with SSD300's 8732 default boxes, computed as
the matching in ``ssd_tf.core.encoding`` computes it (normalised boxes, the image stretched to
300x300). A box whose best IoU is below 0.5 is matched to no default box by the threshold rule
and is learnt only through the one default box the forced best match gives it.
Sizes are sides, sqrt(w * h), in pixels of the 300x300 input.
"""

import numpy as np
import tensorflow as tf

from ssd_tf.core import anchors as anchors_lib
from ssd_tf.core.boxes import cxcywh_to_xyxy, pairwise_iou

THRESHOLDS = (0.5, 0.3)
# A class or size band is called poorly covered when this share of its boxes has no default box
# at IoU >= 0.5.
POOR_SHARE = 0.10


def best_default_iou(boxes, spec=anchors_lib.SSD300, chunk=2048):
    """float64 [n]: each normalised xyxy box's best IoU with the default boxes of ``spec``."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    defaults = cxcywh_to_xyxy(tf.constant(anchors_lib.default_boxes(spec)))
    out = [tf.reduce_max(pairwise_iou(tf.constant(boxes[i:i + chunk]), defaults), axis=1).numpy()
           for i in range(0, len(boxes), chunk)]
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def size_bands(spec=anchors_lib.SSD300):
    """[(label, low_px, high_px)]: bands between the six feature maps' scales (21, 45, ... 261 px)."""
    edges = [0.0] + [float(s) for s in spec.scales[:len(spec.feature_sizes)]] + [np.inf]
    labels = [f"<{edges[1]:g} px"] + [f"{lo:g}-{hi:g} px" for lo, hi in zip(edges[1:-2], edges[2:-1])]
    return list(zip(labels + [f">={edges[-2]:g} px"], edges[:-1], edges[1:]))


def _shares(best):
    return {f"below_{t}": float(np.mean(best < t)) if len(best) else 0.0 for t in THRESHOLDS}


def _median(values):
    return float(np.median(values)) if len(values) else None


def box_table(detection_sets, spec=anchors_lib.SSD300):
    """Every box of ``detection_sets`` (one per split): dict of arrays ``label``, ``side_px``,
    ``aspect`` (w / h at the input) and ``best_iou``."""
    boxes = [b.reshape(-1, 4) for s in detection_sets for b in s.boxes]
    boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32)
    labels = [np.asarray(lab) for s in detection_sets for lab in s.labels]
    w, h = (boxes[:, 2] - boxes[:, 0]).astype(np.float64), (boxes[:, 3] - boxes[:, 1]).astype(np.float64)
    return {"label": np.concatenate(labels).astype(int) if labels else np.zeros(0, int),
            "side_px": np.sqrt(w * h) * spec.image_size, "aspect": w / np.maximum(h, 1e-12),
            "best_iou": best_default_iou(boxes, spec)}


def _coverage(table, mask):
    best = table["best_iou"][mask]
    poor = best < THRESHOLDS[0]
    return {"boxes": int(mask.sum()), **_shares(best), "median_best_iou": _median(best),
            "median_side_px": _median(table["side_px"][mask]),
            "median_side_px_below_0.5": _median(table["side_px"][mask][poor])}


def inspect(detection_sets, splits, spec=anchors_lib.SSD300, table=None):
    """The numbers of a data set's ``splits`` (names of ``detection_sets``, read with one class list);
    ``table``: their ``box_table``, when the caller has it already (its best IoUs are the costly part).

    Returns a JSON-ready dict: ``splits`` (images, boxes, images without boxes, skipped counts),
    ``classes`` and ``size_bands`` (boxes, shares of boxes whose best IoU is below 0.5 and 0.3,
    medians), ``coverage`` over all boxes, ``warnings`` (plain sentences) and the geometry used.
    """
    class_names = detection_sets[0].class_names
    table = box_table(detection_sets, spec) if table is None else table
    report = {
        "input_size": spec.image_size, "scales_px": list(spec.scales[:len(spec.feature_sizes)]),
        "aspect_ratios": sorted({1.0} | {float(a) for ars in spec.aspect_ratios for a in ars}
                                | {1.0 / a for ars in spec.aspect_ratios for a in ars}),
        "splits": {
            split: {"images": len(s), "boxes": s.num_objects,
                    "images_without_boxes": int(sum(len(lab) == 0 for lab in s.labels)),
                    "skipped": dict(s.report.counts), "skipped_total": s.report.total}
            for split, s in zip(splits, detection_sets)},
        "coverage": _coverage(table, np.ones(len(table["label"]), bool)),
        "classes": {name: _coverage(table, table["label"] == k) for k, name in enumerate(class_names) if k},
        "size_bands": {label: _coverage(table, (table["side_px"] >= lo) & (table["side_px"] < hi))
                       for label, lo, hi in size_bands(spec)},
    }
    report["warnings"] = coverage_warnings(report)
    return report


def coverage_warnings(report):
    """Sentences for each class (and the whole set) of which POOR_SHARE or more of the boxes have no
    default box at IoU >= 0.5, with the median side of those boxes and what to consider."""
    out = []
    scales = report["scales_px"]
    for name, row in report["classes"].items():
        if not row["boxes"] or row["below_0.5"] < POOR_SHARE:
            continue
        side = row["median_side_px_below_0.5"]
        if side < scales[1]:
            advice = "consider a larger input or other default-box scales"
        elif side > scales[-1]:
            advice = "consider a larger last default-box scale"
        else:
            advice = "consider other default-box aspect ratios"
        out.append(f"{row['below_0.5']:.0%} of {name!r} boxes have no default box at IoU >= 0.5 "
                   f"(median side {side:.0f} px at {report['input_size']}x{report['input_size']}); {advice}")
    if not report["coverage"]["boxes"]:
        out.append("no boxes: nothing to train on")
    return out

"""Precision-recall and F1-against-threshold curves at IoU 0.5, from COCOeval's own work (no second
matcher): the PR curves are its interpolated precision at 101 recall points; precision, recall and
F1 against the score threshold come from its per-image matches (``evalImgs``), counted as
``accumulate`` counts them, but not interpolated."""

import numpy as np

RECALL = np.linspace(0.0, 1.0, 101)  # COCOeval's recall points
THRESHOLDS = np.linspace(0.0, 1.0, 101)


def pr_curves(precision, scores, names):
    """{"recall": [101], "precision": {name: [101]}, "scores": {name: [101]}}; ``precision`` and
    ``scores`` [101, K] (-1 where COCOeval has no value, e.g. a class without ground truth; 0 in
    the lists). None (no detections): all zero."""
    if precision is None:
        precision = scores = np.zeros((len(RECALL), len(names)))
    clean = lambda a: np.where(np.asarray(a) > -1, a, 0.0)  # noqa: E731
    return {"recall": RECALL.round(2).tolist(),
            "precision": {n: clean(precision[:, k]).round(5).tolist() for k, n in enumerate(names)},
            "scores": {n: clean(scores[:, k]).round(5).tolist() for k, n in enumerate(names)}}


def matches(evaluator, cat_ids):
    """Per category (in ``cat_ids``' order): (scores sorted best first, cumulative true positives,
    cumulative false positives, ground truth count) at IoU 0.5, all areas, 100 detections an
    image: the counts COCOeval's ``accumulate`` builds its precision from. Ignored detections (on
    crowd regions) are left out."""
    params = evaluator.params
    areas, images = len(params.areaRng), len(params.imgIds)
    out = []
    for cat in cat_ids:
        k = list(params.catIds).index(cat)
        entries = [e for e in evaluator.evalImgs[k * areas * images:k * areas * images + images] if e is not None]
        if not entries:
            out.append((np.zeros(0), np.zeros(0), np.zeros(0), 0))
            continue
        limit = params.maxDets[-1]
        scores = np.concatenate([e["dtScores"][:limit] for e in entries])
        order = np.argsort(-scores, kind="mergesort")
        matched = np.concatenate([e["dtMatches"][0, :limit] for e in entries])[order] > 0
        ignored = np.concatenate([e["dtIgnore"][0, :limit] for e in entries])[order] > 0
        truth = int(np.count_nonzero(np.concatenate([e["gtIgnore"] for e in entries]) == 0))
        keep = ~ignored
        out.append((scores[order][keep], np.cumsum(matched[keep]), np.cumsum(~matched[keep]), truth))
    return out


def threshold_counts(counts, names):
    """{name: {"tp": [101], "fp": [101], "gt": int}}: true and false positives among the detections
    scoring >= each of THRESHOLDS, matched as COCOeval matched them (``matches``' list)."""
    out = {}
    for name, (scores, tp, fp, truth) in zip(names, counts):
        kept = np.searchsorted(-scores, -THRESHOLDS, side="right")  # detections with score >= t
        tps = np.where(kept > 0, tp[np.maximum(kept - 1, 0)] if len(tp) else 0, 0)
        fps = np.where(kept > 0, fp[np.maximum(kept - 1, 0)] if len(fp) else 0, 0)
        out[name] = {"tp": [int(v) for v in tps], "fp": [int(v) for v in fps], "gt": int(truth)}
    return out


def by_threshold(counts, names):
    """Per class with ground truth, (precision, recall, F1) at each of THRESHOLDS [101]: the
    detections scoring >= t, matched as COCOeval matched them. ``counts``: ``matches``' list.
    Returns {name: (p [101], r [101], f1 [101])}."""
    out = {}
    for name, entry in threshold_counts(counts, names).items():
        truth = entry["gt"]
        if truth == 0:
            continue
        tps, fps = np.array(entry["tp"], float), np.array(entry["fp"], float)
        prec = np.where(tps + fps > 0, tps / np.maximum(tps + fps, 1), 0.0)
        rec = tps / truth
        f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-12), 0.0)
        out[name] = (prec, rec, f1)
    return out


def best_f1(counts, names):
    """The score threshold of the best F1 averaged over the classes with ground truth: {"threshold",
    "f1", "precision", "recall"}, and the mean curves {"thresholds", "f1_curve", "precision_curve",
    "recall_curve"}. ``counts``: ``matches``' list, or None (no detections)."""
    per_class = by_threshold(counts, names) if counts is not None else {}
    if not per_class:
        zero = np.zeros(len(THRESHOLDS))
        p = r = f1 = zero
    else:
        p, r, f1 = (np.mean([v[i] for v in per_class.values()], axis=0) for i in range(3))
    best = len(f1) - 1 - int(np.argmax(f1[::-1]))  # of equal F1s the highest threshold: fewer false detections
    return {"threshold": float(THRESHOLDS[best]), "f1": float(f1[best]), "precision": float(p[best]),
            "recall": float(r[best]), "thresholds": THRESHOLDS.round(2).tolist(),
            "f1_curve": f1.round(5).tolist(), "precision_curve": p.round(5).tolist(),
            "recall_curve": r.round(5).tolist()}

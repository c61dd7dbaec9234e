import json

import numpy as np
import pytest

import ssd_tf
from conftest import shared_data
from ssd_tf import data, evaluation

KNOWN = [0.503647, 0.696973, 0.571667, 0.593252, 0.557991, 0.489363, 0.386813, 0.59368, 0.595353, 0.654764,
         0.60313, 0.553744]


def test_known_coco_stats():
    case = shared_data("coco_eval_case")
    report = evaluation.coco_evaluate(case / "instances_val2014_subset.json", case / "bbox_results.json",
                                      verbose=False)
    np.testing.assert_allclose(list(report["stats"].values()), KNOWN, atol=1e-6)
    ap50 = [v for v in report["per_class_ap50"].values() if not np.isnan(v)]
    assert len(report["per_class_ap50"]) == 80 and 0 < np.mean(ap50) <= 1


def test_voc_conversion_equals_coco_instances():
    root = shared_data("voc2012_sample")
    voc = data.read_voc(root / "VOC2012", "trainval")
    ours = evaluation.coco_ground_truth(voc)
    theirs = json.loads((root / "coco" / "instances.json").read_text())
    theirs_names = {c["id"]: c["name"] for c in theirs["categories"]}
    files = {img["id"]: img["file_name"].rsplit("/", 1)[-1] for img in theirs["images"]}
    ours_files = {img["id"]: img["file_name"].rsplit("/", 1)[-1] for img in ours["images"]}
    ours_names = {c["id"]: c["name"] for c in ours["categories"]}

    def boxes(coco, names, file_of):
        return sorted((file_of[a["image_id"]], names[a["category_id"]], *np.round(a["bbox"], 2))
                      for a in coco["annotations"])
    assert boxes(ours, ours_names, ours_files) == boxes(theirs, theirs_names, files)
    assert sum(a["iscrowd"] for a in ours["annotations"]) == 38  # difficult: ignored, not misses


def test_ground_truth_as_detections_scores_perfect():
    s = data.read_voc(shared_data("voc2012_sample", "VOC2012"), "val")
    results = []
    for i in range(len(s)):
        keep = ~s.difficult[i]
        results += evaluation.detections_to_coco(s.boxes[i][keep], np.ones(keep.sum()), s.labels[i][keep],
                                                 s.image_ids[i], s.sizes[i], s.category_ids)
    report = evaluation.coco_evaluate(evaluation.coco_ground_truth(s), results, verbose=False)
    assert report["stats"]["AP"] == pytest.approx(1.0) and report["stats"]["AP50"] == pytest.approx(1.0)
    # A detection on a difficult object is ignored, not a false positive.
    i = next(i for i in range(len(s)) if s.difficult[i].any())
    extra = evaluation.detections_to_coco(s.boxes[i][s.difficult[i]], [0.5], s.labels[i][s.difficult[i]],
                                          s.image_ids[i], s.sizes[i], s.category_ids)
    again = evaluation.coco_evaluate(evaluation.coco_ground_truth(s), results + extra[:1], verbose=False)
    assert again["stats"]["AP"] == pytest.approx(1.0)


def test_evaluate_model_and_callback_on_real_images():
    s = data.read_voc(shared_data("raccoon", "VOC2007"), "val", class_names=("raccoon",)).subset(range(6))
    model = ssd_tf.build_ssd300(num_classes=2)
    report = evaluation.evaluate_model(model, s, batch_size=3)
    assert set(report["stats"]) == set(evaluation.STAT_NAMES) and report["num_detections"] > 0
    assert all(-1 <= v <= 1 for v in report["stats"].values())
    logs = {}
    callback = evaluation.COCOEvaluation(s, every=1, batch_size=3)
    callback.set_model(model)
    callback.on_epoch_end(0, logs)
    assert logs["val_mAP"] == pytest.approx(report["stats"]["AP"])

import json

import numpy as np
import pytest

from conftest import shared_data
from ssd_tf import data
from ssd_tf.evaluation import coco_metric as evaluation
from ssd_tf.training.callbacks import COCOEvaluation
from ssd_tf.training.validation import is_validation_epoch
from helpers import coco_case, one_box_model

KNOWN = [0.503647, 0.696973, 0.571667, 0.593252, 0.557991, 0.489363, 0.386813, 0.59368, 0.595353, 0.654764,
         0.60313, 0.553744]


def test_known_coco_stats():
    case = shared_data("coco_eval_case")
    report = evaluation.coco_evaluate(case / "instances_val2014_subset.json", case / "bbox_results.json",
                                      verbose=False)
    np.testing.assert_allclose(list(report["stats"].values()), KNOWN, atol=1e-6)
    # AP50 is the mean of the per-class AP50s over the classes with ground truth.
    ap50 = [v for v in report["per_class_ap50"].values() if v >= 0]
    assert len(report["per_class_ap50"]) == 80 and np.mean(ap50) == pytest.approx(KNOWN[1], abs=1e-6)


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


def _one_box_answer(s, slot, gain=8.0):
    """The detections ``one_box_model`` makes on DetectionSet ``s``, by hand: the slot's box in
    each image's pixels, scored sigmoid(gain x the original image's mean level / 255). The model
    sees the image resized to 300x300, whose mean level differs by well under a level; the
    images' levels are far more apart than that (asserted), so the ranking, which is all COCOeval
    reads of scores, is the model's."""
    from PIL import Image

    from ssd_tf.core import anchors

    from ssd_tf.core import boxes

    box = boxes.cxcywh_to_xyxy(anchors.default_boxes(anchors.SSD300)[slot]).numpy()
    levels = np.array([np.asarray(Image.open(s.describe(i)).convert("RGB"), np.float64).mean() for i in range(len(s))])
    assert np.diff(np.sort(levels)).min() > 2.0, levels  # distinct scores, by a margin
    scores = 1 / (1 + np.exp(-gain * levels / 255))
    return [{"image_id": int(image_id), "category_id": int(s.category_ids[1]), "score": float(score),
             "bbox": [box[0] * w, box[1] * h, (box[2] - box[0]) * w, (box[3] - box[1]) * h]}
            for image_id, (h, w), score in zip(s.image_ids, s.sizes, scores)]


def test_evaluate_model_scores_known_detections_as_pycocotools_does():
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    s = data.read_voc(shared_data("raccoon", "VOC2007"), "val", class_names=("raccoon",)).subset(range(6))
    slot = 8728  # the largest square default box, centred: [0.06, 0.06, 0.94, 0.94]
    model = one_box_model(slot)
    gt = COCO()
    gt.dataset = evaluation.coco_ground_truth(s)
    gt.createIndex()
    official = COCOeval(gt, gt.loadRes(_one_box_answer(s, slot)), iouType="bbox")
    official.evaluate()
    official.accumulate()
    official.summarize()
    assert 0.1 < official.stats[1] < 0.9  # some raccoons fill that box, some don't: not a trivial 0 or 1
    # Any batch size (the remainder batch included) scores the hand-made answer.
    for batch_size in (4, 3, 1):
        report = evaluation.evaluate_model(model, s, batch_size=batch_size)
        assert report["num_detections"] == 6
        np.testing.assert_allclose(list(report["stats"].values()), official.stats, atol=1e-6)
    # The epoch callback writes the same numbers into the logs.
    logs = {}
    callback = COCOEvaluation(s, every=1, batch_size=3)
    callback.set_model(model)
    callback.on_epoch_end(0, logs)
    assert logs["val_mAP"] == pytest.approx(official.stats[0], abs=1e-6)
    assert logs["val_AP50"] == pytest.approx(official.stats[1], abs=1e-6)
    # Every 2 epochs: the first epoch logs nothing.
    every_other = COCOEvaluation(s, every=2, batch_size=3)
    every_other.set_model(model)
    first, second = {}, {}
    every_other.on_epoch_end(0, first)
    every_other.on_epoch_end(1, second)
    assert first == {}
    assert second["val_AP50"] == pytest.approx(official.stats[1], abs=1e-6)
    every_other.set_params({"epochs": 3, "steps": 1, "verbose": 0})  # inside fit: the last epoch evaluates too
    third = {}
    every_other.on_epoch_end(2, third)
    assert third["val_AP50"] == pytest.approx(official.stats[1], abs=1e-6)


def test_coco_evaluation_is_the_official_metric_on_the_instances_file(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    path, images_dir, results = coco_case(tmp_path, np.random.default_rng(0))
    dataset = data.read_coco(path, images_dir)
    assert len(dataset) == 8 and dataset.report.total == 0
    ours = evaluation.evaluate_detections(dataset, results)

    gt = COCO(str(path))
    official = COCOeval(gt, gt.loadRes(results), iouType="bbox")
    official.evaluate()
    official.accumulate()
    official.summarize()
    np.testing.assert_allclose(list(ours["stats"].values()), official.stats, atol=1e-6)
    assert ours["num_detections"] == len(results)
    # The case matters: rebuilding ground truth from the readers' boxes (no crowd, box areas)
    # scores differently, which is what the old evaluation did.
    rebuilt = evaluation.coco_evaluate(evaluation.coco_ground_truth(dataset), results, verbose=False)
    assert abs(rebuilt["stats"]["AP"] - ours["stats"]["AP"]) > 1e-3
    assert abs(rebuilt["stats"]["APs"] - ours["stats"]["APs"]) > 1e-3


def test_validation_epochs_are_every_nth_and_the_last():
    def validated(every, epochs):
        return [e + 1 for e in range(epochs) if is_validation_epoch(e, every, epochs)]

    assert validated(3, 7) == [3, 6, 7]
    assert validated(3, 6) == [3, 6]
    assert validated(1, 3) == [1, 2, 3]
    assert validated(0, 3) == []
    assert validated(4, 2) == [2]
    assert not is_validation_epoch(4, 3)  # number of epochs unknown: every 3rd only

"""The confusion matrix on hand-made cases with known answers."""

import json

import numpy as np
import pytest

from ssd_tf.evaluation.confusion import confusion_matrix, row_normalised

CATEGORIES = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]  # indices 1 and 2


def _truth(annotations, images=(1,)):
    return {"images": [{"id": i, "width": 100, "height": 100} for i in images], "categories": CATEGORIES,
            "annotations": [{"id": k + 1, "iscrowd": 0, **a} for k, a in enumerate(annotations)]}


def _det(image, category, box, score=0.9):
    return {"image_id": image, "category_id": category, "bbox": box, "score": score}


def test_right_class_wrong_class_miss_duplicate_and_crowd():
    truth = _truth([
        {"image_id": 1, "category_id": 3, "bbox": [0, 0, 20, 20]},     # found as cat
        {"image_id": 1, "category_id": 3, "bbox": [50, 50, 20, 20]},   # found as dog: a confusion
        {"image_id": 1, "category_id": 7, "bbox": [0, 60, 30, 30]},    # missed
        {"image_id": 1, "category_id": 7, "bbox": [70, 0, 30, 30], "iscrowd": 1},  # a crowd of dogs
    ])
    results = [
        _det(1, 3, [1, 1, 20, 20], 0.9),      # right class
        _det(1, 3, [0, 0, 19, 20], 0.8),      # a duplicate of it: a false detection
        _det(1, 7, [50, 51, 20, 20], 0.7),    # wrong class on the second cat
        _det(1, 7, [72, 2, 10, 10], 0.6),     # on the crowd region: ignored, as COCOeval does
        _det(1, 3, [30, 30, 5, 5], 0.1),      # under the score threshold: not counted
    ]
    report = confusion_matrix(truth, results, iou_threshold=0.5, score_threshold=0.25)
    assert report["classes"] == ["background", "cat", "dog"] and report["category_ids"] == [3, 7]
    expected = [[0, 1, 0],   # true background: the duplicate, predicted cat
                [0, 1, 1],   # true cat: one right, one taken for a dog
                [1, 0, 0]]   # true dog: missed (the crowd box is not ground truth that counts)
    assert report["matrix"] == expected
    rows = np.asarray(report["matrix"]).sum(axis=1)
    assert list(rows[1:]) == [2, 1]  # each class's non-crowd ground truth boxes


def test_pairs_go_best_overlap_first_and_each_box_is_matched_once():
    # Two overlapping boxes of different classes. Pairs go best overlap first, whatever the class:
    # the second dog detection and the cat detection sit exactly on their boxes and take them; the
    # first dog detection, left without a box, is a false one (not a confusion of the cat).
    truth = _truth([{"image_id": 1, "category_id": 3, "bbox": [0, 0, 40, 40]},
                    {"image_id": 1, "category_id": 7, "bbox": [6, 6, 40, 40]}])
    results = [_det(1, 7, [2, 2, 40, 40], 0.9), _det(1, 7, [6, 6, 40, 40], 0.8), _det(1, 3, [0, 0, 40, 40], 0.7)]
    matrix = confusion_matrix(truth, results)["matrix"]
    assert matrix == [[0, 0, 1], [0, 1, 0], [0, 0, 1]]


def test_images_without_truth_and_thresholds():
    truth = _truth([{"image_id": 1, "category_id": 3, "bbox": [0, 0, 20, 20]}], images=(1, 2))
    results = [_det(2, 3, [0, 0, 20, 20], 0.5), _det(1, 3, [0, 0, 20, 20], 0.3)]
    assert confusion_matrix(truth, results)["matrix"] == [[0, 1, 0], [0, 1, 0], [0, 0, 0]]
    # At a higher score threshold the cat is missed; at a higher IoU threshold a loose box misses.
    assert confusion_matrix(truth, results, score_threshold=0.4)["matrix"] == [[0, 1, 0], [1, 0, 0], [0, 0, 0]]
    loose = [_det(1, 3, [5, 5, 20, 20], 0.9)]  # IoU 225/575 = 0.39
    assert confusion_matrix(truth, loose, iou_threshold=0.3)["matrix"][1] == [0, 1, 0]
    assert confusion_matrix(truth, loose, iou_threshold=0.5)["matrix"] == [[0, 1, 0], [1, 0, 0], [0, 0, 0]]
    # Only the images asked for.
    assert confusion_matrix(truth, results, image_ids=[2])["matrix"] == [[0, 1, 0], [0, 0, 0], [0, 0, 0]]
    np.testing.assert_allclose(row_normalised([[0, 2], [1, 3]]), [[0, 1], [0.25, 0.75]])


def _one_class_case():
    """One class (cat), 4 boxes in one image and a crowd region; detections: right (0.9, 0.8, 0.6),
    a false one (0.7) and one on the crowd (0.95, ignored)."""
    boxes = [[0, 0, 20, 20], [30, 0, 20, 20], [60, 0, 20, 20], [0, 50, 20, 20]]
    truth = _truth([{"image_id": 1, "category_id": 3, "bbox": b, "area": 400.0} for b in boxes]
                   + [{"image_id": 1, "category_id": 3, "bbox": [60, 60, 40, 40], "area": 1600.0, "iscrowd": 1}])
    truth["categories"] = CATEGORIES[:1]
    results = [_det(1, 3, boxes[0], 0.9), _det(1, 3, boxes[1], 0.8), _det(1, 3, [30, 30, 10, 10], 0.7),
               _det(1, 3, boxes[2], 0.6), _det(1, 3, [65, 65, 20, 20], 0.95)]
    return truth, results


def test_precision_recall_and_f1_against_the_threshold_follow_cocoevals_matches():
    from ssd_tf.evaluation.coco_metric import coco_evaluate

    truth, results = _one_class_case()
    report = coco_evaluate(truth, results, verbose=False)
    assert report["per_class"]["cat"]["gt_count"] == 4  # the crowd region is not counted
    # By score, ignoring the crowd one: TP .9, TP .8, FP .7, TP .6 over 4 boxes. COCOeval's
    # interpolated precision: 1 up to recall 0.5, 0.75 up to 0.75, 0 beyond.
    precision = np.array(report["curves"]["precision"]["cat"])
    recall = np.array(report["curves"]["recall"])
    np.testing.assert_allclose(precision[recall <= 0.5], 1.0)
    np.testing.assert_allclose(precision[(recall > 0.5) & (recall <= 0.75)], 0.75)
    np.testing.assert_allclose(precision[recall > 0.75], 0.0)
    assert report["per_class"]["cat"]["AP50"] == pytest.approx(precision.mean())
    # Not interpolated against the threshold: at 0.65, 2 TP and 1 FP (P 2/3, R 1/2, F1 4/7); from 0.6
    # down, 3 TP and 1 FP (F1 0.75, the best: its highest threshold is reported).
    best = report["best_f1"]
    thresholds = np.array(best["thresholds"])
    f1 = np.array(best["f1_curve"])
    assert f1[np.isclose(thresholds, 0.65)][0] == pytest.approx(4 / 7, abs=1e-5)  # the report rounds to 5 places
    assert f1[np.isclose(thresholds, 0.85)][0] == pytest.approx(0.4)
    assert best["threshold"] == pytest.approx(0.6) and best["f1"] == pytest.approx(0.75)
    assert best["precision"] == pytest.approx(0.75) and best["recall"] == pytest.approx(0.75)
    assert f1[thresholds > 0.9].max() == 0.0


def test_the_report_of_a_data_set_holds_the_confusion_matrix_and_per_class_numbers():
    from ssd_tf import data
    from ssd_tf.data.coco import coco_ground_truth
    from ssd_tf.evaluation.coco_metric import evaluate_detections

    s = data.make_synthetic(6, seed=3)
    truth = coco_ground_truth(s)
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
               for a in truth["annotations"] if not a.get("iscrowd")]
    report = evaluate_detections(s, results, score_threshold=0.5)
    matrix = np.array(report["confusion_matrix"]["matrix"])
    counts = [report["per_class"][name]["gt_count"] for name in report["confusion_matrix"]["classes"][1:]]
    assert report["confusion_matrix"]["score_threshold"] == 0.5 and report["confusion_matrix"]["iou_threshold"] == 0.5
    np.testing.assert_array_equal(np.diag(matrix)[1:], counts)  # every box found, as its own class
    assert matrix.sum() == sum(counts) and report["stats"]["AP50"] == pytest.approx(1.0)
    json.dumps(report)  # the --output report is JSON

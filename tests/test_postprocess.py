import numpy as np
import pytest
import tensorflow as tf

import ssd_tf
from conftest import random_gt_boxes

A = 8732


def _sparse_predictions(rng, batch, num_classes, hot=300):
    """Mostly-background logits with ``hot`` slots per image confident in some class."""
    pred = rng.normal(0, 0.5, size=(batch, A, 4 + num_classes)).astype(np.float32)
    pred[..., 4] += 6.0  # background
    for b in range(batch):
        slots = rng.choice(A, hot, replace=False)
        classes = rng.integers(1, num_classes, hot)
        pred[b, slots, 4 + classes] += rng.uniform(4, 10, hot)
    return pred


def test_matches_the_references_postprocess():
    torch = pytest.importorskip("torch")
    design = pytest.importorskip("reference.design")
    rng = np.random.default_rng(0)
    pred = _sparse_predictions(rng, 2, 21)
    ours = {k: v.numpy() for k, v in ssd_tf.decode_detections(pred).items()}
    ref = design.PostProcess(design.dboxes300_coco())(
        torch.tensor(pred[..., :4]).permute(0, 2, 1), torch.tensor(pred[..., 4:]).permute(0, 2, 1)
    )
    for b, (ref_boxes, ref_labels, ref_scores) in enumerate(ref):
        n = ours["num_detections"][b]
        assert n == len(ref_scores) and n > 20
        order = np.argsort(-ref_scores.numpy(), kind="stable")
        np.testing.assert_allclose(ours["scores"][b, :n], ref_scores.numpy()[order], rtol=1e-5)
        np.testing.assert_array_equal(ours["classes"][b, :n], ref_labels.numpy()[order])
        np.testing.assert_allclose(ours["boxes"][b, :n], ref_boxes.numpy()[order], atol=1e-5)


def test_output_contract():
    rng = np.random.default_rng(1)
    out = ssd_tf.decode_detections(_sparse_predictions(rng, 3, 4), max_detections=50)
    assert out["boxes"].shape == (3, 50, 4) and out["scores"].shape == (3, 50)
    assert out["classes"].dtype == tf.int32 and out["num_detections"].dtype == tf.int32
    for b in range(3):
        n = int(out["num_detections"][b])
        classes, scores = out["classes"][b].numpy(), out["scores"][b].numpy()
        assert 0 < n <= 50
        assert np.all((classes[:n] >= 1) & (classes[:n] <= 3)) and not classes[n:].any()
        assert np.all(scores[:n] > 0.05) and not scores[n:].any()
        assert np.all(np.diff(scores[:n]) <= 0)
    boxes = out["boxes"].numpy()
    assert boxes.min() >= 0 and boxes.max() <= 1


def test_thresholds():
    rng = np.random.default_rng(2)
    pred = _sparse_predictions(rng, 1, 21)
    loose = ssd_tf.decode_detections(pred)
    strict = ssd_tf.decode_detections(pred, score_threshold=0.9)
    assert 0 < int(strict["num_detections"][0]) < int(loose["num_detections"][0])
    assert strict["scores"][0, : int(strict["num_detections"][0])].numpy().min() > 0.9


def test_encode_then_decode_recovers_ground_truth():
    rng = np.random.default_rng(3)
    gt = random_gt_boxes(rng, 4, min_size=0.1)
    labels = np.array([1, 2, 3, 4])
    offsets, slot_labels = ssd_tf.encode_targets(gt, labels)
    logits = np.full((A, 5), -5.0, np.float32)
    logits[:, 0] = 5.0
    logits[np.arange(A), slot_labels.numpy()] = 5.0  # positives: confident in their class
    pred = np.concatenate([offsets.numpy(), logits], axis=1)[None]
    out = ssd_tf.decode_detections(pred)
    n = int(out["num_detections"][0])
    assert n == 4  # NMS merges each object's positives into one detection
    found = sorted(zip(out["classes"][0, :n].numpy(), out["boxes"][0, :n].numpy().tolist()))
    for (cls, box), expected_cls in zip(found, labels):
        assert cls == expected_cls
        np.testing.assert_allclose(box, gt[cls - 1], atol=1e-5)


def test_tiny_boxes_are_dropped():
    # All slots predict class 1 with a box shrunk far below 1/300 of the image.
    pred = np.zeros((1, A, 6), np.float32)
    pred[0, :, 2:4] = -40.0  # exp(-40 * 0.2) * anchor size << 1/300
    pred[0, :, 5] = 10.0
    assert int(ssd_tf.decode_detections(pred)["num_detections"][0]) == 0

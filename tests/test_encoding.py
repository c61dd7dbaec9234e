import numpy as np
import pytest
import tensorflow as tf

import ssd_tf
from conftest import random_gt_boxes
from ssd_tf.core import boxes as box_ops
from ssd_tf.core import encoding

torch = pytest.importorskip("torch")
design = pytest.importorskip("reference.design")
REFERENCE_ENCODER = design.Encoder(design.dboxes300_coco())
ANCHORS = ssd_tf.default_boxes()


def _reference_encode(boxes, labels):
    """The reference's encode + its loss' _location_vec -> (offsets [A, 4], labels [A])."""
    gloc, glabel = REFERENCE_ENCODER.encode(torch.tensor(boxes), torch.tensor(labels, dtype=torch.int64))
    loss = design.Loss(design.dboxes300_coco())
    offsets = loss._location_vec(gloc.T[None])[0].T
    return offsets.numpy(), glabel.numpy()


@pytest.mark.parametrize("n, seed_value", [(1, 0), (3, 1), (7, 2), (20, 3)])
def test_matches_the_reference_on_random_boxes(n, seed_value):
    rng = np.random.default_rng(seed_value)
    gt = random_gt_boxes(rng, n)
    labels = rng.integers(1, 21, size=n)
    offsets, out_labels = ssd_tf.encode_targets(gt, labels)
    ref_offsets, ref_labels = _reference_encode(gt, labels)
    np.testing.assert_array_equal(out_labels.numpy(), ref_labels)
    pos = ref_labels > 0
    assert pos.sum() >= n  # every ground truth gets at least its best box
    np.testing.assert_allclose(offsets.numpy()[pos], ref_offsets[pos], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(offsets.numpy()[~pos], 0.0)


def test_no_ground_truth_is_all_background():
    offsets, labels = ssd_tf.encode_targets(np.zeros((0, 4), np.float32), np.zeros((0,), np.int32))
    assert offsets.shape == (8732, 4) and labels.shape == (8732,)
    assert labels.dtype == tf.int32
    assert not np.any(labels.numpy()) and not np.any(offsets.numpy())


def test_two_ground_truths_sharing_a_best_box():
    # Two nearly identical boxes: both have the same best default box; like the reference, the later
    # one keeps it, and the earlier one still gets boxes with IoU > 0.5 via the threshold rule.
    a = np.array([0.30, 0.30, 0.50, 0.50], np.float32)
    gt = np.stack([a, a + [0.001, 0.0, 0.001, 0.0]]).astype(np.float32)
    labels = np.array([5, 9])
    best = box_ops.pairwise_iou(gt, box_ops.cxcywh_to_xyxy(ANCHORS)).numpy().argmax(axis=1)
    assert best[0] == best[1]
    _, out = ssd_tf.encode_targets(gt, labels)
    assert out.numpy()[best[0]] == 9
    np.testing.assert_array_equal(out.numpy(), _reference_encode(gt, labels)[1])


def test_tiny_box_gets_exactly_its_best_box():
    gt = np.array([[0.500, 0.500, 0.505, 0.505]], np.float32)  # 1.5 px wide at 300
    offsets, labels = ssd_tf.encode_targets(gt, [3])
    pos = np.flatnonzero(labels.numpy())
    assert len(pos) == 1 and labels.numpy()[pos[0]] == 3
    assert np.all(np.isfinite(offsets.numpy()))
    np.testing.assert_array_equal(labels.numpy(), _reference_encode(gt, [3])[1])


def test_round_trip_decodes_back_to_ground_truth():
    rng = np.random.default_rng(7)
    gt = random_gt_boxes(rng, 5)
    offsets, labels = ssd_tf.encode_targets(gt, np.arange(1, 6))
    decoded = encoding.offsets_to_boxes(offsets, tf.constant(ANCHORS)).numpy()
    pos = np.flatnonzero(labels.numpy())
    np.testing.assert_allclose(decoded[pos], gt[labels.numpy()[pos] - 1], atol=1e-5)


def test_graph_safe_in_dataset_map_with_varying_counts():
    rng = np.random.default_rng(3)
    sets = [random_gt_boxes(rng, n) for n in (0, 2, 5)]
    ds = tf.data.Dataset.from_generator(
        lambda: ((b, np.ones(len(b), np.int32)) for b in sets),
        output_signature=(tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int32)),
    ).map(ssd_tf.encode_y_true)
    out = list(ds.as_numpy_iterator())
    assert [o.shape for o in out] == [(8732, 5)] * 3
    for b, o in zip(sets[1:], out[1:]):  # against the reference's encoder, not the function it wraps
        ref_offsets, ref_labels = _reference_encode(b, np.ones(len(b), np.int64))
        np.testing.assert_array_equal(o[:, 4].astype(np.int32), ref_labels)
        pos = ref_labels > 0
        np.testing.assert_allclose(o[pos, :4], ref_offsets[pos], rtol=1e-4, atol=1e-5)
    assert not out[0][:, 4].any() and (out[2][:, 4] > 0).sum() >= 5


def test_iou_threshold_changes_positive_count():
    gt = np.array([[0.2, 0.2, 0.6, 0.7]], np.float32)
    n_default = int((ssd_tf.encode_targets(gt, [1])[1].numpy() > 0).sum())
    n_loose = int((ssd_tf.encode_targets(gt, [1], iou_threshold=0.3)[1].numpy() > 0).sum())
    assert n_loose > n_default >= 1

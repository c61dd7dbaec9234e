import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import ssd_tf
from conftest import random_gt_boxes
from ssd_tf.modeling import losses

A = 8732


def _numpy_loss(y_true, y_pred, ratio=3):
    """Plain NumPy SSD loss, written independently: per-image values."""
    out = []
    for t, p in zip(y_true, y_pred):
        labels = t[:, 4].astype(int)
        pos = labels > 0
        n = pos.sum()
        if n == 0:
            out.append(0.0)
            continue
        d = np.abs(p[:, :4] - t[:, :4])
        loc = np.where(d < 1, 0.5 * d * d, d - 0.5).sum(axis=1)[pos].sum()
        logits = p[:, 4:].astype(np.float64)
        logz = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
        ce = logz - logits[np.arange(len(labels)), labels]
        neg_idx = np.flatnonzero(~pos)
        hardest = neg_idx[np.argsort(-ce[neg_idx], kind="stable")][: min(ratio * n, len(neg_idx))]
        out.append((loc + ce[pos].sum() + ce[hardest].sum()) / n)
    return np.array(out)


def _random_batch(rng, batch, num_classes=21, empty=()):
    y_true = []
    for b in range(batch):
        n = 0 if b in empty else int(rng.integers(1, 6))
        y_true.append(ssd_tf.encode_y_true(random_gt_boxes(rng, n), rng.integers(1, num_classes, n)).numpy())
    y_pred = rng.normal(0, 1.5, size=(batch, A, 4 + num_classes)).astype(np.float32)
    return np.stack(y_true), y_pred


def test_hand_worked_example():
    """Four slots, two classes: one positive, 3 negatives of which 3 are mined."""
    y_true = np.zeros((1, 4, 5), np.float32)
    y_true[0, 0] = [0.5, -2.0, 0.0, 0.0, 1]  # positive, class 1
    y_pred = np.zeros((1, 4, 6), np.float32)
    y_pred[0, 0, :4] = [0.0, 0.0, 0.0, 3.0]  # diffs -0.5, 2, 0, 3 -> 0.125 + 1.5 + 0 + 2.5
    y_pred[0, 0, 4:] = [0.0, 0.0]  # CE = log 2
    y_pred[0, 1, 4:] = [0.0, 1.0]  # negatives: CE = log(1 + e), log(1 + e^-1)... all 3 mined
    y_pred[0, 2, 4:] = [1.0, 0.0]
    y_pred[0, 3, 4:] = [0.0, 2.0]
    loc = 0.125 + 1.5 + 0.0 + 2.5
    cls = math.log(2) + math.log(1 + math.e) + math.log(1 + math.exp(-1)) + math.log(1 + math.exp(2))
    loc_part, cls_part, npos = losses.ssd_loss_parts(y_true, y_pred)
    np.testing.assert_allclose([loc_part[0], cls_part[0], npos[0]], [loc, cls, 1.0], rtol=1e-6)


def test_hard_negative_count_and_choice():
    rng = np.random.default_rng(0)
    ce = tf.constant(rng.uniform(0, 1, size=(2, 40)), tf.float32)
    positive = np.zeros((2, 40), bool)
    positive[0, [1, 5, 9]] = True  # 3 positives -> 9 negatives
    positive[1, :35] = True  # 35 positives -> only 5 negatives exist
    mask = losses.hard_negative_mask(ce, tf.constant(positive)).numpy()
    assert mask.sum(axis=1).tolist() == [9, 5]
    assert not np.any(mask & positive)
    negatives = np.where(positive[0], -1, ce.numpy()[0])
    assert set(np.flatnonzero(mask[0])) == set(np.argsort(-negatives)[:9])


def test_matches_numpy_reimplementation():
    rng = np.random.default_rng(1)
    y_true, y_pred = _random_batch(rng, 4, empty=(2,))
    loc, cls, _ = losses.ssd_loss_parts(y_true, y_pred)
    np.testing.assert_allclose((loc + cls).numpy(), _numpy_loss(y_true, y_pred), rtol=1e-5)


def test_matches_the_reference():
    torch = pytest.importorskip("torch")
    design = pytest.importorskip("reference.design")
    rng = np.random.default_rng(2)
    batch, num_classes = 3, 21
    gt_sets = [random_gt_boxes(rng, n) for n in (1, 4, 0)]
    label_sets = [rng.integers(1, num_classes, len(b)) for b in gt_sets]
    y_true = np.stack([ssd_tf.encode_y_true(b, lab).numpy() for b, lab in zip(gt_sets, label_sets)])
    y_pred = rng.normal(0, 1.5, size=(batch, A, 4 + num_classes)).astype(np.float32)

    dboxes = design.dboxes300_coco()
    encoder = design.Encoder(dboxes)
    gloc, glabel = [], []
    for b, lab in zip(gt_sets, label_sets):
        if len(b):
            loc_t, lab_t = encoder.encode(torch.tensor(b), torch.tensor(lab, dtype=torch.int64))
        else:  # the reference's encode needs a box; an image without objects is all background
            loc_t, lab_t = dboxes(order="xywh").clone(), torch.zeros(A, dtype=torch.int64)
        gloc.append(loc_t.T)
        glabel.append(lab_t)
    ref = design.Loss(dboxes)(
        torch.tensor(y_pred[..., :4]).permute(0, 2, 1), torch.tensor(y_pred[..., 4:]).permute(0, 2, 1),
        torch.stack(gloc), torch.stack(glabel),
    ).item()
    ours = float(ssd_tf.SSDLoss()(y_true, y_pred))
    np.testing.assert_allclose(ours, ref, rtol=1e-4)


def test_returns_per_image_values_and_keras_mean():
    rng = np.random.default_rng(4)
    y_true, y_pred = _random_batch(rng, 3)
    loss = ssd_tf.SSDLoss()
    per_image = loss.call(tf.constant(y_true), tf.constant(y_pred))
    assert per_image.shape == (3,)
    np.testing.assert_allclose(float(loss(y_true, y_pred)), per_image.numpy().mean(), rtol=1e-6)


def test_all_background_batch_is_zero_with_finite_gradients():
    y_true = np.zeros((2, A, 5), np.float32)
    y_pred = tf.Variable(np.random.default_rng(5).normal(size=(2, A, 25)).astype(np.float32))
    with tf.GradientTape() as tape:
        value = ssd_tf.SSDLoss()(y_true, y_pred)
    grad = tape.gradient(value, y_pred)
    assert float(value) == 0.0
    assert np.all(np.isfinite(grad.numpy()))


def test_gradients_finite_on_mixed_batch_and_float16_input():
    rng = np.random.default_rng(6)
    y_true, y_pred = _random_batch(rng, 2, empty=(1,))
    var = tf.Variable(y_pred)
    with tf.GradientTape() as tape:
        value = ssd_tf.SSDLoss()(y_true, tf.cast(var, tf.float16))
    assert value.dtype == tf.float32 and np.isfinite(float(value))
    assert np.all(np.isfinite(tape.gradient(value, var).numpy()))


def test_config_round_trip():
    loss = ssd_tf.SSDLoss(neg_pos_ratio=2)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(again, ssd_tf.SSDLoss) and again.neg_pos_ratio == 2


def test_label_beyond_num_classes_is_named():
    y_true = np.zeros((1, A, 5), np.float32)
    y_true[0, 0, 4] = 7
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_classes"):
        ssd_tf.SSDLoss()(y_true, np.zeros((1, A, 4 + 3), np.float32))

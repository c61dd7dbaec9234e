"""Property tests of the graph-mode augmentations over many seeds."""

import numpy as np
import tensorflow as tf

from conftest import random_gt_boxes
from ssd_tf import boxes as box_ops
from ssd_tf.data import augment


@tf.function
def _crop_case(boxes, seed):
    crop, keep, bound = augment.choose_crop(boxes, seed)
    image = tf.zeros([200, 300, 3])
    cropped, new_boxes, _ = augment.apply_crop(image, boxes, tf.range(tf.shape(boxes)[0]), crop, keep)
    return crop, keep, bound, new_boxes, tf.shape(cropped)


def test_crop_properties_over_many_seeds():
    rng = np.random.default_rng(0)
    cropped = 0
    for trial in range(300):
        boxes = random_gt_boxes(rng, int(rng.integers(1, 6)), min_size=0.05)
        case = _crop_case(tf.constant(boxes), tf.constant([trial, 7]))
        crop, keep, bound, new_boxes, shape = (t.numpy() for t in case)
        new_boxes = new_boxes.reshape(-1, 4)
        assert new_boxes.min() >= 0 and new_boxes.max() <= 1
        assert len(new_boxes) == keep.sum() >= 1
        if np.array_equal(crop, [0, 0, 1, 1]):
            assert keep.all()
            continue
        cropped += 1
        w, h = crop[2] - crop[0], crop[3] - crop[1]
        assert 0.3 <= w <= 1 and 0.3 <= h <= 1 and 0.5 <= w / h <= 2
        ious = box_ops.pairwise_iou(tf.constant(boxes), tf.constant(crop[None])).numpy()[:, 0]
        assert np.all(ious > bound), (ious, bound)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        inside = np.all((centres > crop[:2]) & (centres < crop[2:]), axis=1)
        np.testing.assert_array_equal(keep, inside)
        # Kept boxes map into the crop: back-projection equals the original box clipped to it.
        back = new_boxes * np.tile([w, h], 2) + np.tile(crop[:2], 2)
        np.testing.assert_allclose(back, np.clip(boxes[keep], np.tile(crop[:2], 2), np.tile(crop[2:], 2)), atol=1e-5)
        assert abs(shape[1] - w * 300) <= 1.5 and abs(shape[0] - h * 200) <= 1.5
    assert 150 < cropped < 300  # "no crop" is one of seven options


def test_no_boxes_means_no_crop():
    crop, keep, _ = augment.choose_crop(tf.zeros([0, 4]), tf.constant([1, 2]))
    np.testing.assert_array_equal(crop.numpy(), [0, 0, 1, 1])
    assert keep.shape == (0,)


def test_flip_twice_is_identity_and_flip_mirrors():
    rng = np.random.default_rng(1)
    boxes = tf.constant(random_gt_boxes(rng, 5))
    np.testing.assert_allclose(augment.flip_boxes(augment.flip_boxes(boxes)), boxes, atol=1e-7)
    image = tf.constant(rng.uniform(0, 255, (20, 30, 3)), tf.float32)
    # Find a seed that flips: the pixel under a box corner moves with the box.
    for s in range(20):
        flipped, fboxes = augment.random_flip(image, boxes, tf.constant([s, 0]))
        if not np.array_equal(flipped.numpy(), image.numpy()):
            np.testing.assert_array_equal(flipped.numpy()[:, ::-1], image.numpy())
            np.testing.assert_allclose(fboxes, augment.flip_boxes(boxes), atol=1e-7)
            break
    else:
        raise AssertionError("no seed flipped in 20 tries")


def test_color_jitter_bounds_and_determinism():
    image = tf.constant(np.random.default_rng(2).uniform(0, 255, (30, 30, 3)), tf.float32)
    outs = [augment.color_jitter(image, tf.constant([s, 3])).numpy() for s in range(8)]
    assert all(o.min() >= 0 and o.max() <= 255 for o in outs)
    assert len({o.tobytes() for o in outs}) == 8  # different seeds, different jitter
    np.testing.assert_array_equal(augment.color_jitter(image, tf.constant([0, 3])).numpy(), outs[0])
    # Small amounts: the seed's jitter keeps the image recognisable.
    assert max(np.abs(o - image.numpy()).mean() for o in outs) < 60

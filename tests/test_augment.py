"""Property tests of the graph-mode augmentations over many seeds."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import random_gt_boxes
from ssd_tf.core import boxes as box_ops
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
        assert bound in SEED_MIN_IOUS, bound
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


# The reference's SSDCropping.sample_options, as minimum IoUs: None = keep the whole image; the
# (None, None) option ("any crop") has no minimum. Each is drawn with probability 1/7.
SEED_MIN_IOUS = (0.1, 0.3, 0.5, 0.7, 0.9, float("-inf"))


@tf.function
def _many_crops(boxes, seeds):
    return tf.map_fn(lambda s: augment.choose_crop(boxes, s)[::2], seeds, fn_output_signature=(tf.float32,) * 2)


def test_every_reference_crop_option_is_drawn_and_none_other():
    # One box filling the image: a window's IoU with it is its area, so every option can succeed.
    seeds = tf.stack([tf.range(3000), tf.fill([3000], 5)], axis=1)
    crops, bounds = (t.numpy() for t in _many_crops(tf.constant([[0.0, 0.0, 1.0, 1.0]]), seeds))
    whole = np.all(crops == [0, 0, 1, 1], axis=1)
    np.testing.assert_allclose(bounds[whole], float("-inf"))
    counts = {bound: int(np.isclose(bounds[~whole], bound).sum() if np.isfinite(bound)
                         else np.isneginf(bounds[~whole]).sum()) for bound in SEED_MIN_IOUS}
    assert sum(counts.values()) == (~whole).sum()  # no bound outside the reference's table
    assert all(count > 0 for count in counts.values()), counts
    areas = (crops[:, 2] - crops[:, 0]) * (crops[:, 3] - crops[:, 1])
    assert np.all(areas[~whole] > bounds[~whole])  # IoU with the full-image box
    # "Whole image", "any crop" and "IoU > 0.1" (every window has area > 0.09, nearly all > 0.1)
    # succeed at once, so each ends about 1/6 of the searches (rare failures are redrawn).
    for count in (whole.sum(), counts[float("-inf")], counts[0.1]):
        assert abs(count - 3000 / 5.4) < 90, (whole.sum(), counts)


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
    # Small amounts: the reference's jitter keeps the image recognisable.
    assert max(np.abs(o - image.numpy()).mean() for o in outs) < 60


# ---------------------------------------------------------------- colour jitter against the reference

def _photo():
    """A 64x96 uint8 RGB crop of a real photo (varied, saturated colours), as PIL and numpy."""
    from PIL import Image

    from conftest import shared_data

    path = shared_data("voc2012_sample", "VOC2012", "JPEGImages")
    image = Image.open(sorted(path.glob("*.jpg"))[0]).convert("RGB").resize((96, 64), Image.BILINEAR)
    return image, np.asarray(image).astype(np.float32)


ADJUSTMENTS = [  # (ours, the reference's PIL name, factor, max abs difference in 0..255 levels)
    (augment.adjust_brightness, "adjust_brightness", 0.875, 1.0),
    (augment.adjust_brightness, "adjust_brightness", 1.125, 1.0),
    (augment.adjust_contrast, "adjust_contrast", 0.5, 1.5),
    (augment.adjust_contrast, "adjust_contrast", 1.5, 1.5),
    (augment.adjust_saturation, "adjust_saturation", 0.5, 1.5),
    (augment.adjust_saturation, "adjust_saturation", 1.5, 1.5),
]


def test_each_adjustment_equals_the_references_pil_adjustment_at_fixed_factors():
    design = pytest.importorskip("reference.design")
    pil, pixels = _photo()
    for ours, name, factor, tolerance in ADJUSTMENTS:
        expected = np.asarray(getattr(design, name)(pil, factor)).astype(np.float32)
        got = ours(tf.constant(pixels), factor).numpy()
        # PIL works in uint8 (rounded grey levels, truncated blends): within a level or so.
        assert np.abs(got - expected).max() <= tolerance + 1e-3, (name, factor, np.abs(got - expected).max())
        assert np.abs(got - pixels).mean() > 3 * tolerance  # the factor visibly changed the image


def test_hue_shift_equals_the_references_pil_hsv_shift():
    design = pytest.importorskip("reference.design")
    pil, pixels = _photo()
    for delta in (-0.05, 0.05):
        expected = np.asarray(design.adjust_hue(pil, delta)).astype(np.float32)
        got = augment.adjust_hue(tf.constant(pixels), delta).numpy()
        diff = np.abs(got - expected)
        # PIL quantises hue to 1/256 of a turn (the shift to int(delta * 255)) and its HSV to uint8.
        assert diff.mean() < 1.0 and np.percentile(diff, 99) < 6, (delta, diff.mean(), np.percentile(diff, 99))
        assert np.abs(got - pixels).mean() > 3 * diff.mean()


def test_jitter_composes_the_four_adjustments_as_the_reference_does():
    design = pytest.importorskip("reference.design")
    pil, pixels = _photo()
    factors = {"adjust_brightness": 1.1, "adjust_contrast": 0.6, "adjust_saturation": 1.45, "adjust_hue": 0.04}
    identity = {"adjust_brightness": 1.0, "adjust_contrast": 1.0, "adjust_saturation": 1.0, "adjust_hue": 0.0}
    names = list(factors)  # order indices: 0 brightness, 1 contrast, 2 saturation, 3 hue
    # Each factor drives its own adjustment: one at a time, in a shuffled order.
    for name in names:
        alone = {**identity, name: factors[name]}
        got = augment.apply_jitter(tf.constant(pixels), *alone.values(), tf.constant([3, 1, 0, 2])).numpy()
        diff = np.abs(got - np.asarray(getattr(design, name)(pil, factors[name])).astype(np.float32))
        assert np.percentile(diff, 99) < 6 and diff.mean() < 1.0, (name, diff.mean())
    # All four: the reference rounds to uint8 after each step, so differences add up to a level or two.
    # (The order matters only through clipping: these adjustments nearly commute.)
    for order in ([2, 0, 3, 1], [1, 3, 0, 2]):
        expected = pil
        for i in order:
            expected = getattr(design, names[i])(expected, factors[names[i]])
        got = augment.apply_jitter(tf.constant(pixels), *factors.values(), tf.constant(order)).numpy()
        diff = np.abs(got - np.asarray(expected).astype(np.float32))
        assert diff.mean() < 2.0 and np.percentile(diff, 99) < 6, (order, diff.mean(), np.percentile(diff, 99))
        assert np.abs(got - pixels).mean() > 4 * diff.mean()


def test_drawn_jitter_factors_span_the_references_ranges_and_every_order():
    @tf.function
    def draw(seeds):
        return tf.map_fn(lambda s: augment.jitter_params(s), seeds,
                         fn_output_signature=(tf.float32,) * 4 + (tf.int32,))

    seeds = tf.stack([tf.range(2000), tf.fill([2000], 11)], axis=1)
    *factors, orders = (t.numpy() for t in draw(seeds))
    # torchvision ColorJitter(brightness=0.125, contrast=0.5, saturation=0.5, hue=0.05).
    for values, (low, high) in zip(factors, [(0.875, 1.125), (0.5, 1.5), (0.5, 1.5), (-0.05, 0.05)]):
        assert low <= values.min() < low + 0.02 * (high - low), (low, values.min())
        assert high - 0.02 * (high - low) < values.max() <= high, (high, values.max())
        assert abs(np.median(values) - (low + high) / 2) < 0.05 * (high - low)  # uniform
    assert len({tuple(o) for o in orders}) == 24 and all(sorted(o) == [0, 1, 2, 3] for o in orders)


def test_hue_rotation_equals_tf_image_adjust_hue_eagerly_and_under_xla():
    rng = np.random.default_rng(5)
    pixels = rng.uniform(0, 255, (40, 50, 3)).astype(np.float32)
    pixels[:5] = pixels[:5, :, :1]  # grey pixels (no hue)
    pixels[5:10, :, 1] = pixels[5:10, :, 0]  # ties between the largest channels
    pixels[10:15, :, 2] = 0.0  # a channel at 0 and saturated colours
    pixels[15:20] = np.minimum(np.round(pixels[15:20] / 64) * 64, 255)  # few levels: many exact ties
    image = tf.constant(pixels)
    xla = tf.function(augment.adjust_hue, jit_compile=True)
    for delta in (-0.5, -0.05, -0.013, 0.0, 0.021, 0.05, 0.37):
        expected = tf.image.adjust_hue(image / 255.0, delta).numpy() * 255.0
        for got in (augment.adjust_hue(image, delta), xla(image, tf.constant(delta))):
            np.testing.assert_allclose(got.numpy(), expected, atol=2e-3)
        assert delta == 0.0 or np.abs(expected - pixels).mean() > 0.5  # the shift moved colours
    batch = tf.stack([image, image[::-1]])  # [B, H, W, 3] too
    np.testing.assert_allclose(augment.adjust_hue(batch, 0.05).numpy()[1],
                               augment.adjust_hue(image[::-1], 0.05).numpy(), atol=1e-4)


def test_crops_drawn_for_a_padded_batch_ignore_the_padding_and_row_zero_is_choose_crop():
    rng = np.random.default_rng(4)
    rows = [rng.uniform(0, 0.5, (k, 2)) for k in (3, 1, 5, 0)]
    rows = [np.concatenate([xy, xy + rng.uniform(0.1, 0.5, xy.shape)], 1).astype(np.float32) for xy in rows]
    counts = tf.constant([len(r) for r in rows])

    def padded(fill):
        return tf.constant(np.stack([np.concatenate([r, np.tile(np.float32(fill), (5 - len(r), 1))]) for r in rows]))

    for seed in tf.unstack(tf.stack([tf.range(8), tf.fill([8], 1)], 1)):
        results = [augment.choose_crops(padded(fill), counts, seed)
                   for fill in ([0, 0, 0, 0], [0.6, 0.6, 0.9, 0.9], [0, 0, 1, 1], [0.05, 0.9, 0.1, 0.95])]
        for other in results[1:]:
            for a, b in zip(results[0], other):
                np.testing.assert_array_equal(a.numpy(), b.numpy())  # padding changes nothing
        crop, keep, bound = results[0]
        assert not keep.numpy()[counts.numpy()[:, None] <= np.arange(5)].any()  # padding never kept
        np.testing.assert_array_equal(crop[3].numpy(), [0, 0, 1, 1])  # no boxes: no crop
        for got, want in zip((crop[0], keep[0, :3], bound[0]), augment.choose_crop(tf.constant(rows[0]), seed)):
            np.testing.assert_array_equal(got.numpy(), want.numpy())
    seed = tf.constant([7, 1])
    many = augment.choose_crops(tf.tile(padded([0, 0, 0, 0])[:1], [64, 1, 1]), tf.fill([64], 3), seed)[0].numpy()
    assert len({tuple(c) for c in many}) > 32  # each image of a batch draws its own crop


def test_the_pipelines_batched_draws_follow_the_references_distributions():
    """The production path (``pipeline._plan_crops``: crops, jitter and flips drawn for a whole
    batch of undecoded elements from one seed), not the one-image helpers: over 3000 images, the
    reference's crop options, ColorJitter ranges and orders, and flip rate."""
    from ssd_tf.data import pipeline
    n = 3000
    batch = {"boxes": tf.RaggedTensor.from_tensor(tf.tile([[[0.0, 0.0, 1.0, 1.0]]], [n, 1, 1])),
             "labels": tf.RaggedTensor.from_tensor(tf.ones([n, 1], tf.int32)),
             "difficult": tf.RaggedTensor.from_tensor(tf.zeros([n, 1], tf.bool))}
    plan = pipeline._plan_crops(batch, tf.constant([3, 9], tf.int64))
    crops = plan["crop"].numpy()
    whole = np.all(crops == [0, 0, 1, 1], axis=1)
    areas = (crops[:, 2] - crops[:, 0]) * (crops[:, 3] - crops[:, 1])
    w, h = crops[:, 2] - crops[:, 0], crops[:, 3] - crops[:, 1]
    aspect = w[~whole] / h[~whole]
    assert np.all((w[~whole] >= 0.3) & (h[~whole] >= 0.3) & (aspect >= 0.5) & (aspect <= 2))
    # One full-image box: "whole image", "any crop" and "IoU > 0.1" each end about 1/5.4 of the
    # searches (as in test_every_reference_crop_option_is_drawn_and_none_other); IoU > 0.9 needs area > 0.9.
    assert abs(whole.sum() - n / 5.4) < 90, whole.sum()
    assert 0 < (areas[~whole] > 0.9).sum() < (areas[~whole] > 0.7).sum() < (areas[~whole] > 0.5).sum()
    assert all(len(b) == 1 for b in plan["boxes"].to_list())  # the box's centre is in every window
    jitter = plan["jitter"].numpy()
    for values, (low, high) in zip(jitter.T, [(0.875, 1.125), (0.5, 1.5), (0.5, 1.5), (-0.05, 0.05)]):
        assert low <= values.min() < low + 0.02 * (high - low) and high - 0.02 * (high - low) < values.max() <= high
        assert abs(np.median(values) - (low + high) / 2) < 0.05 * (high - low)
    assert len({tuple(o) for o in plan["order"].numpy()}) == 24
    flips = plan["flip"].numpy()
    assert abs(flips.mean() - 0.5) < 3 * np.sqrt(0.25 / n)  # the reference's p = 0.5, within 3 sigma
    # The box covers every window, so inside it (flipped or not) it is the whole window.
    np.testing.assert_allclose(np.array([b[0] for b in plan["boxes"].to_list()]), np.tile([0, 0, 1, 1], (n, 1)),
                               atol=1e-5)

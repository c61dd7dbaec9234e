"""The model's 8732 output slots are in the order of ssd_tf.default_boxes()."""

import numpy as np
import pytest
import tensorflow as tf

import ssd_tf
from ssd_tf.core import anchors

SPEC = anchors.SSD300


def _gradient_centre(model, slot, image):
    """Centre (x, y) in pixels of the input region that drives output ``slot``."""
    with tf.GradientTape() as tape:
        tape.watch(image)
        out = model(image, training=False)
        target = tf.reduce_sum(out[0, slot, :4])
    grad = tape.gradient(target, image)[0]
    weight = tf.reduce_sum(tf.square(grad), axis=-1).numpy()
    ys, xs = np.mgrid[0:300, 0:300] + 0.5
    return float((weight * xs).sum() / weight.sum()), float((weight * ys).sum() / weight.sum())


@pytest.mark.slow
def test_slot_receptive_field_centre_is_box_centre(ssd21):
    """Slot k's receptive field is centred on default box k (within one cell).

    Cells are chosen away from the diagonal so a row/column swap, a wrong level or a wrong
    shape-vs-cell order would land far away.
    """
    image = tf.constant(np.random.default_rng(0).uniform(0, 255, (1, 300, 300, 3)), tf.float32)
    boxes = ssd_tf.default_boxes()
    cases = [(0, 1, 6, 30), (0, 3, 31, 8), (1, 4, 3, 15), (2, 2, 7, 2), (3, 5, 1, 3), (4, 0, 0, 2)]
    for level, shape, row, col in cases:
        slot = anchors.slot_index(level, shape, row, col)
        cx, cy = _gradient_centre(ssd21, slot, image)
        step = SPEC.steps[level]
        np.testing.assert_allclose(
            [cx, cy], boxes[slot, :2] * 300, atol=step,
            err_msg=f"slot {slot} (level {level}, shape {shape}, cell {row},{col})",
        )


def test_slot_box_shape_order():
    """Head channel group d feeds exactly the slots whose default box has shape d."""
    model = ssd_tf.build_ssd300(num_classes=3)
    for level, nd in enumerate(SPEC.boxes_per_cell):
        conv = model.get_layer(f"loc{level}_conv")
        kernel, _ = conv.get_weights()
        # Zero kernel, bias = channel index: slot outputs reveal which channels feed them.
        conv.set_weights([np.zeros_like(kernel), np.arange(nd * 4, dtype=np.float32)])
    out = model(np.zeros((1, 300, 300, 3), np.float32), training=False).numpy()[0, :, :4]
    for level, (nd, size) in enumerate(zip(SPEC.boxes_per_cell, SPEC.feature_sizes)):
        sizes = anchors.level_box_sizes(SPEC, level)
        for shape in range(nd):
            for row, col in [(0, 0), (size - 1, size // 2)]:
                slot = anchors.slot_index(level, shape, row, col)
                np.testing.assert_array_equal(out[slot], np.arange(4) + 4 * shape)
                np.testing.assert_allclose(
                    ssd_tf.default_boxes()[slot, 2:], np.clip(sizes[shape], 0, 1), rtol=1e-6
                )

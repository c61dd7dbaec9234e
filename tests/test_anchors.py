import math

import numpy as np
import pytest

import ssd_tf
from ssd_tf.core import anchors


def test_count_and_shape():
    boxes = ssd_tf.default_boxes()
    assert boxes.shape == (8732, 4) and boxes.dtype == np.float32
    assert anchors.SSD300.num_boxes == 8732
    assert anchors.SSD300.boxes_per_cell == (4, 6, 6, 6, 4, 4)
    assert boxes.min() >= 0 and boxes.max() <= 1


@pytest.mark.parametrize(
    "level, shape, row, col, expected",
    [
        # level 0: step 8 -> centres (j + .5) * 8 / 300; sizes 21/300, sqrt(21*45)/300, ratio 2
        (0, 0, 0, 0, (4 / 300, 4 / 300, 0.07, 0.07)),
        # row 37: (37 + .5) * 8 = 300 px: steps do not divide 300, the last centres sit on the edge
        (0, 1, 37, 2, (20 / 300, 1.0, math.sqrt(21 * 45) / 300, math.sqrt(21 * 45) / 300)),
        (0, 2, 5, 9, (76 / 300, 44 / 300, 0.07 * math.sqrt(2), 0.07 / math.sqrt(2))),
        (0, 3, 5, 9, (76 / 300, 44 / 300, 0.07 / math.sqrt(2), 0.07 * math.sqrt(2))),
        # level 1: step 16, base 45/300, ratio 3 at shapes 4, 5
        (1, 4, 3, 15, (248 / 300, 56 / 300, 0.15 * math.sqrt(3), 0.15 / math.sqrt(3))),
        (1, 5, 18, 0, (8 / 300, 296 / 300, 0.15 / math.sqrt(3), 0.15 * math.sqrt(3))),
        # level 2: step 32; level 3: step 64 (centre 288/300 at col 4)
        (2, 0, 9, 9, (304 / 300, 304 / 300, 0.33, 0.33)),  # clamped below
        (3, 1, 0, 4, (288 / 300, 32 / 300, math.sqrt(153 * 207) / 300, math.sqrt(153 * 207) / 300)),
        # level 4: step 100, 207/300 base; level 5: one cell at the centre
        (4, 2, 1, 2, (250 / 300, 150 / 300, 0.69 * math.sqrt(2), 0.69 / math.sqrt(2))),
        (5, 0, 0, 0, (0.5, 0.5, 0.87, 0.87)),
        (5, 1, 0, 0, (0.5, 0.5, math.sqrt(261 * 315) / 300, math.sqrt(261 * 315) / 300)),
        (5, 3, 0, 0, (0.5, 0.5, 0.87 / math.sqrt(2), 0.87 * math.sqrt(2))),
    ],
)
def test_hand_computed_boxes(level, shape, row, col, expected):
    box = ssd_tf.default_boxes()[anchors.slot_index(level, shape, row, col)]
    np.testing.assert_allclose(box, np.clip(expected, 0, 1), rtol=1e-6, atol=1e-7)


def test_level_offsets():
    # 38*38*4 = 5776, + 19*19*6 = 2166 -> 7942, + 600 -> 8542, + 150 -> 8692, + 36 -> 8728, + 4
    assert [anchors.slot_index(level, 0, 0, 0) for level in range(6)] == [0, 5776, 7942, 8542, 8692, 8728]


def test_equals_the_reference():
    design = pytest.importorskip("reference.design")
    np.testing.assert_array_equal(ssd_tf.default_boxes(), design.dboxes300_coco()(order="xywh").numpy())


def test_returned_array_is_a_copy():
    boxes = ssd_tf.default_boxes()
    boxes[0] = -1
    assert ssd_tf.default_boxes()[0, 0] > 0

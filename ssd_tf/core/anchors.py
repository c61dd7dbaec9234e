"""SSD300 default boxes (anchors), generated in the order of the model's 8732 output slots.

The numbers are those of the reference's ``dboxes300_coco()`` (NVIDIA SSD300 v1.1 / Caffe SSD):
six feature maps of 38, 19, 10, 5, 3, 1 cells with 4, 6, 6, 6, 4, 4 boxes per cell.

Slot order, which ``ssd_tf.modeling.ssd300`` reproduces when it flattens its heads:
level-major; inside a level, box-shape-major (the shapes listed by
:func:`level_box_sizes`); inside a shape, row-major over cells (row ``i`` = y, column ``j`` = x).
So slot ``offset[level] + d * S * S + i * S + j`` is shape ``d`` at cell ``(i, j)``.
"""

import dataclasses
import functools
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class AnchorSpec:
    """Geometry of SSD's default boxes. Sizes and steps are in input pixels."""

    image_size: int = 300
    feature_sizes: tuple = (38, 19, 10, 5, 3, 1)
    steps: tuple = (8, 16, 32, 64, 100, 300)
    scales: tuple = (21, 45, 99, 153, 207, 261, 315)
    aspect_ratios: tuple = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))
    # Offsets are divided by these variances (the reference's scale_xy, scale_wh).
    scale_xy: float = 0.1
    scale_wh: float = 0.2

    @property
    def boxes_per_cell(self):
        """Default boxes per cell for each level: 2 square + 2 per aspect ratio."""
        return tuple(2 + 2 * len(ars) for ars in self.aspect_ratios)

    @property
    def num_boxes(self):
        return sum(n * s * s for n, s in zip(self.boxes_per_cell, self.feature_sizes))


SSD300 = AnchorSpec()


def level_box_sizes(spec, level):
    """(w, h) of each box shape of ``level``, normalised, in slot order."""
    sk1 = spec.scales[level] / spec.image_size
    sk2 = spec.scales[level + 1] / spec.image_size
    sk3 = math.sqrt(sk1 * sk2)
    sizes = [(sk1, sk1), (sk3, sk3)]
    for alpha in spec.aspect_ratios[level]:
        w, h = sk1 * math.sqrt(alpha), sk1 / math.sqrt(alpha)
        sizes += [(w, h), (h, w)]
    return sizes


@functools.lru_cache(maxsize=8)
def _default_boxes_np(spec):
    out = []
    for level, size in enumerate(spec.feature_sizes):
        fk = spec.image_size / spec.steps[level]
        # Centres follow the step, not the map size: (j + 0.5) * step / image_size.
        centres = (np.arange(size, dtype=np.float64) + 0.5) / fk
        cy, cx = np.meshgrid(centres, centres, indexing="ij")  # row i -> y, column j -> x
        for w, h in level_box_sizes(spec, level):
            block = np.stack(
                [cx.ravel(), cy.ravel(), np.full(size * size, w), np.full(size * size, h)], axis=1
            )
            out.append(block)
    boxes = np.concatenate(out).astype(np.float32)
    np.clip(boxes, 0.0, 1.0, out=boxes)  # the reference clamps (cx, cy, w, h) to [0, 1]
    boxes.setflags(write=False)
    return boxes


def default_boxes(spec=SSD300):
    """The default boxes: float32 numpy array [8732, 4] of normalised (cx, cy, w, h).

    Identical to the reference's ``dboxes300_coco()(order="xywh")`` (clamped to [0, 1]),
    in the order of the model's output slots (see module docstring).
    """
    return _default_boxes_np(spec).copy()


def slot_index(level, shape, row, col, spec=SSD300):
    """Output slot of box shape ``shape`` at cell (``row``, ``col``) of ``level``."""
    offset = sum(
        n * s * s for n, s in zip(spec.boxes_per_cell[:level], spec.feature_sizes[:level])
    )
    size = spec.feature_sizes[level]
    return offset + shape * size * size + row * size + col

"""Built-in synthetic detection set: large coloured shapes on plain backgrounds, from a seed.

No download: lets the main command run on a fresh machine, and easy enough that SSD300 learns it
from random weights in a few minutes on a CPU. Classes: 1 circle (reddish), 2 square (greenish),
3 triangle (bluish); one or two per image, each 30-75 % of the image's shorter side, on a plain
light background with a faint gradient. Images are JPEG bytes held in memory; same seed, same
bytes.
"""

import io

import numpy as np
from PIL import Image, ImageDraw

from ssd_tf.data.detection_set import DetectionSet, SkipReport

SHAPES = ("circle", "square", "triangle")


# Each class's colour family: shape and colour both tell the classes apart.
_COLOURS = ((200, 40, 40), (40, 170, 60), (40, 70, 210))


def _background(rng, height, width):
    # A light, nearly grey plain colour with a faint gradient.
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    base = rng.uniform(190, 235) + rng.uniform(-10, 10, 3)
    slope = rng.uniform(-15, 15, (2, 3))
    image = base + xx[..., None] * slope[0] + yy[..., None] * slope[1]
    return np.clip(image, 0, 255).astype(np.uint8)


def _draw_one(draw, shape, box, colour):
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=colour)


def make_synthetic(num_images=64, seed=0, image_size=(240, 320), max_objects=2, name="synthetic"):
    """Generate the built-in set. Returns a DetectionSet with JPEG bytes as sources.

    ``image_size`` is (height, width); objects are 30-75 % of the shorter side, overlapping
    little (IoU < 0.1 between objects).
    """
    rng = np.random.default_rng(seed)
    height, width = image_size
    out = dict(sources=[], boxes=[], labels=[], difficult=[], image_ids=[], sizes=[])
    for index in range(num_images):
        image = Image.fromarray(_background(rng, height, width))
        draw = ImageDraw.Draw(image)
        boxes, labels = [], []
        for _ in range(int(rng.integers(1, max_objects + 1))):
            for _attempt in range(10):
                side = rng.uniform(0.3, 0.75) * min(height, width)
                w, h = side * rng.uniform(0.8, 1.25), side
                x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
                box = np.array([x0, y0, x0 + w, y0 + h])
                if all(_iou(box, b) < 0.1 for b in boxes):
                    break
            else:
                continue
            label = int(rng.integers(1, len(SHAPES) + 1))
            colour = tuple(int(c) for c in np.clip(np.array(_COLOURS[label - 1]) + rng.integers(-30, 31, 3), 0, 255))
            _draw_one(draw, SHAPES[label - 1], tuple(box), colour)
            boxes.append(box)
            labels.append(label)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=92)
        scale = np.array([width, height, width, height])
        out["sources"].append(buffer.getvalue())
        out["boxes"].append((np.array(boxes) / scale).astype(np.float32).reshape(-1, 4))
        out["labels"].append(np.array(labels, np.int32))
        out["difficult"].append(np.zeros(len(labels), bool))
        out["image_ids"].append(index)
        out["sizes"].append((height, width))
    return DetectionSet(
        **out, class_names=("background",) + SHAPES, category_ids=(0, 1, 2, 3),
        report=SkipReport(), name=name,
    )


def builtin_split(split="train", train_images=64, seed=0):
    """The built-in set as training reads it, the one definition of both splits: "train" is
    ``train_images`` images from ``seed``; "val" is max(4, train_images // 4) from ``seed + 1000``."""
    if split == "train":
        return make_synthetic(train_images, seed=seed, name=f"synthetic-train-{seed}")
    if split == "val":
        return make_synthetic(max(4, train_images // 4), seed=seed + 1000, name=f"synthetic-val-{seed}")
    raise ValueError(f"the built-in set has splits train and val, not {split!r}")


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

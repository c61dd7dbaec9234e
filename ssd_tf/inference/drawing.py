"""Draw detections on images so people can read them: labelled, coloured per class, with scores."""

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Kelly's colours of maximum contrast (without white and black): neighbouring ids never look alike.
_PALETTE = (
    (255, 179, 0), (128, 62, 117), (255, 104, 0), (166, 189, 215), (193, 0, 32), (206, 162, 98),
    (0, 125, 52), (246, 118, 142), (0, 83, 138), (255, 122, 92), (83, 55, 122), (255, 142, 0),
    (179, 40, 81), (244, 200, 0), (127, 24, 13), (147, 170, 0), (89, 51, 21), (241, 58, 19),
    (35, 44, 22), (129, 112, 102),
)


def class_colour(class_id):
    """A stable colour per class id from a high-contrast palette."""
    return _PALETTE[(int(class_id) - 1) % len(_PALETTE)]


def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def draw_detections(image, boxes_pixels, classes, scores, class_names=None, min_score=0.0):
    """Return a copy of ``image`` (uint8 [H, W, 3] or PIL) with labelled boxes.

    Args:
      boxes_pixels: [K, 4] xmin, ymin, xmax, ymax in this image's pixels.
      classes: [K] int class ids (1..C-1); scores: [K] float, or None for ground truth (names only).
      class_names: names indexed by class id, or None to print ids.
    Lowest scores are drawn first so the best boxes sit on top.
    """
    image = Image.fromarray(np.asarray(image, np.uint8)) if not isinstance(image, Image.Image) else image.copy()
    image = image.convert("RGB")
    draw = ImageDraw.Draw(image)
    width, height = image.size
    line = max(2, round(min(width, height) / 200))
    font = _font(max(13, round(min(width, height) / 28)))
    truth = scores is None
    scores = np.ones(len(classes)) if truth else np.asarray(scores)
    for i in np.argsort(scores, kind="stable"):
        score = float(scores[i])
        if score < min_score:
            continue
        cls = int(classes[i])
        colour = class_colour(cls)
        x0, y0, x1, y1 = (float(v) for v in boxes_pixels[i])
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=line)
        name = class_names[cls] if class_names is not None and cls < len(class_names) else str(cls)
        text = name if truth else f"{name} {score:.2f}"
        tx0, ty0, tx1, ty1 = draw.textbbox((0, 0), text, font=font)
        tw, th = tx1 - tx0 + 6, ty1 - ty0 + 4
        # Label above the box, or inside its top edge when the box touches the image top.
        ly = y0 - th if y0 - th >= 0 else y0
        lx = min(max(0.0, x0), max(0.0, width - tw))
        draw.rectangle([lx, ly, lx + tw, ly + th], fill=colour)
        luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
        draw.text((lx + 3 - tx0, ly + 2 - ty0), text, fill=(0, 0, 0) if luminance > 140 else (255, 255, 255), font=font)
    return np.asarray(image)


def draw_kept(image, boxes, classes, scores, class_names, min_score):
    """Keep detections with score >= ``min_score`` and draw them on uint8 ``image`` [H, W, 3].

    ``boxes`` normalised [K, 4]. Returns (drawn image, kept boxes in pixels, classes, scores)."""
    height, width = image.shape[:2]
    keep = np.asarray(scores) >= min_score
    boxes_pixels = np.asarray(boxes)[keep] * np.array([width, height, width, height], np.float32)
    classes, scores = np.asarray(classes)[keep], np.asarray(scores)[keep]
    return draw_detections(image, boxes_pixels, classes, scores, class_names), boxes_pixels, classes, scores

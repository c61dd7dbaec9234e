"""Training augmentations in graph mode, as in the seed: SSD random crop, colour jitter, flip.

Every function is stateless: randomness comes from an explicit ``seed`` (int32/int64 [2]
tensor), so a pipeline with a seed repeats exactly. Images are float32 [H, W, 3] in 0..255;
boxes normalised xyxy.
"""

import tensorflow as tf

from ssd_tf import boxes as box_ops

# The seed's SSDCropping options: index 0 = no crop; then min IoU 0.1 .. 0.9; then any crop.
_MIN_IOU = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, float("-inf"))
_TRIES = 5  # crops tried per chosen option, as in the seed
_ROUNDS = 16  # option re-draws; the seed loops until one succeeds (P(16 failures) < 1e-2 worst case)
# The seed's ColorJitter amounts (torchvision semantics).
BRIGHTNESS, CONTRAST, SATURATION, HUE = 0.125, 0.5, 0.5, 0.05


def _seeds(seed, n):
    return tf.unstack(tf.random.experimental.stateless_split(seed, n))


def choose_crop(boxes, seed):
    """Draw an SSD crop window for ``boxes`` [N, 4].

    Returns (crop [4] normalised xyxy, keep [N] bool, min_iou [] the option's bound; -inf when
    not cropped). Each round draws an option; "no crop"
    ends the search with the full image; otherwise up to 5 windows with w, h ~ U(0.3, 1),
    aspect 0.5..2 and a random position are tried, and the first is taken whose IoU with every
    box exceeds the option's minimum and which contains at least one box centre. ``keep`` marks
    the boxes whose centre lies inside. With no boxes, never crops.
    """
    s_mode, s_wh, s_xy = _seeds(seed, 3)
    modes = tf.random.stateless_uniform([_ROUNDS], s_mode, 0, len(_MIN_IOU), dtype=tf.int32)
    wh = tf.random.stateless_uniform([_ROUNDS, _TRIES, 2], s_wh, 0.3, 1.0)
    xy = tf.random.stateless_uniform([_ROUNDS, _TRIES, 2], s_xy) * (1.0 - wh)
    windows = tf.concat([xy, xy + wh], axis=-1)  # [R, T, 4]

    aspect = wh[..., 0] / wh[..., 1]
    aspect_ok = (aspect >= 0.5) & (aspect <= 2.0)
    ious = tf.reshape(box_ops.pairwise_iou(tf.reshape(windows, [-1, 4]), boxes), [_ROUNDS, _TRIES, -1])
    min_iou = tf.gather(tf.constant(_MIN_IOU), modes)[:, None, None]
    iou_ok = tf.reduce_all(ious > min_iou, axis=-1)
    centres = 0.5 * (boxes[:, :2] + boxes[:, 2:])  # [N, 2]
    inside = tf.reduce_all(
        (centres[None, None] > windows[..., None, :2]) & (centres[None, None] < windows[..., None, 2:]), axis=-1
    )  # [R, T, N]
    valid = aspect_ok & iou_ok & tf.reduce_any(inside, axis=-1) & (modes[:, None] > 0)

    # First round that either drew "no crop" or found a valid window decides.
    round_done = tf.reduce_any(valid, axis=1) | tf.equal(modes, 0)
    has_boxes = tf.shape(boxes)[0] > 0
    first_round = tf.argmax(tf.cast(round_done, tf.int32), output_type=tf.int32)
    crop_it = has_boxes & tf.reduce_any(round_done) & (tf.gather(modes, first_round) > 0)
    first_try = tf.argmax(tf.cast(valid[first_round], tf.int32), output_type=tf.int32)
    full = tf.constant([0.0, 0.0, 1.0, 1.0])
    crop = tf.where(crop_it, windows[first_round, first_try], full)
    keep = tf.where(crop_it, inside[first_round, first_try], tf.ones_like(inside[0, 0]))
    bound = tf.where(crop_it, min_iou[first_round, 0, 0], float("-inf"))
    return crop, keep, bound


def apply_crop(image, boxes, labels, crop, keep):
    """Crop ``image`` [H, W, 3] to ``crop`` and map the kept boxes into it (clipped, renormalised)."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    height, width = shape[0], shape[1]
    # Pixel window by truncation, as the seed's int(left * wtot) etc.
    x0 = tf.cast(crop[0] * width, tf.int32)
    y0 = tf.cast(crop[1] * height, tf.int32)
    x1 = tf.maximum(tf.cast(crop[2] * width, tf.int32), x0 + 1)
    y1 = tf.maximum(tf.cast(crop[3] * height, tf.int32), y0 + 1)
    image = image[y0:y1, x0:x1]
    boxes = tf.boolean_mask(boxes, keep)
    labels = tf.boolean_mask(labels, keep)
    lo, hi = crop[:2], crop[2:]
    boxes = tf.concat([tf.maximum(boxes[:, :2], lo), tf.minimum(boxes[:, 2:], hi)], axis=-1)
    size = hi - lo
    boxes = (boxes - tf.concat([lo, lo], 0)) / tf.concat([size, size], 0)
    return image, tf.clip_by_value(boxes, 0.0, 1.0), labels


def random_crop(image, boxes, labels, seed):
    """SSD random crop of ``image`` with its ``boxes`` [N, 4] and ``labels`` [N]."""
    crop, keep, _ = choose_crop(boxes, seed)
    return apply_crop(image, boxes, labels, crop, keep)


def _grayscale(image):
    return tf.image.rgb_to_grayscale(image)  # ITU-R 601 weights, like torchvision


def color_jitter(image, seed):
    """torchvision ColorJitter(0.125, 0.5, 0.5, 0.05): the four adjustments in random order."""
    s_order, s_b, s_c, s_s, s_h = _seeds(seed, 5)
    b = tf.random.stateless_uniform([], s_b, 1 - BRIGHTNESS, 1 + BRIGHTNESS)
    c = tf.random.stateless_uniform([], s_c, 1 - CONTRAST, 1 + CONTRAST)
    s = tf.random.stateless_uniform([], s_s, 1 - SATURATION, 1 + SATURATION)
    h = tf.random.stateless_uniform([], s_h, -HUE, HUE)

    def brightness(x):
        return x * b

    def contrast(x):
        return (x - tf.reduce_mean(_grayscale(x))) * c + tf.reduce_mean(_grayscale(x))

    def saturation(x):
        gray = _grayscale(x)
        return (x - gray) * s + gray

    def hue(x):
        return tf.image.adjust_hue(x / 255.0, h) * 255.0

    ops = [brightness, contrast, saturation, hue]
    order = tf.argsort(tf.random.stateless_uniform([4], s_order))
    for i in range(4):
        image = tf.switch_case(order[i], [lambda f=f: tf.clip_by_value(f(image), 0.0, 255.0) for f in ops])
    return image


def flip_boxes(boxes):
    """Mirror normalised xyxy boxes left-right."""
    return tf.stack([1.0 - boxes[:, 2], boxes[:, 1], 1.0 - boxes[:, 0], boxes[:, 3]], axis=-1)


def random_flip(image, boxes, seed, probability=0.5):
    """Horizontal flip of image and boxes with ``probability``."""
    do = tf.random.stateless_uniform([], seed) < probability
    image = tf.cond(do, lambda: tf.reverse(image, axis=[1]), lambda: image)
    boxes = tf.cond(do, lambda: flip_boxes(boxes), lambda: boxes)
    return image, boxes

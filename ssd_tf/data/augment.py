"""Training augmentations in graph mode, as in the reference: SSD random crop, colour jitter, flip.

Every function is stateless: randomness comes from an explicit ``seed`` (int32/int64 [2]
tensor), so a pipeline with a seed repeats exactly. Images are float32 [H, W, 3] in 0..255;
boxes normalised xyxy.
"""

import tensorflow as tf

from ssd_tf.core import boxes as box_ops

# The reference's SSDCropping options: index 0 = no crop; then min IoU 0.1 .. 0.9; then any crop.
_MIN_IOU = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, float("-inf"))
_TRIES = 5  # crops tried per chosen option, as in the reference
_ROUNDS = 16  # option re-draws; the reference loops until one succeeds (P(16 failures) < 1e-2 worst case)
# The reference's ColorJitter amounts (torchvision semantics).
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
    crop, keep, bound = choose_crops(boxes[None], tf.shape(boxes)[:1], seed)
    return crop[0], keep[0], bound[0]


def choose_crops(boxes, num_boxes, seed):
    """:func:`choose_crop` for a batch: ``boxes`` [B, N, 4] of which the first ``num_boxes`` [B]
    of each row are real (the rest padding), all drawn from one ``seed``. Returns crop [B, 4],
    keep [B, N] (False for padding), min_iou [B]. Row 0 draws what ``choose_crop`` draws from
    ``seed``, the other rows draw further along the same streams; the batch shares the op
    overhead (0.35 ms per image one by one on a CPU)."""
    n = tf.shape(boxes)[0]
    s_mode, s_wh, s_xy = _seeds(seed, 3)
    modes = tf.random.stateless_uniform([n, _ROUNDS], s_mode, 0, len(_MIN_IOU), dtype=tf.int32)
    wh = tf.random.stateless_uniform([n, _ROUNDS, _TRIES, 2], s_wh, 0.3, 1.0)
    xy = tf.random.stateless_uniform([n, _ROUNDS, _TRIES, 2], s_xy) * (1.0 - wh)
    windows = tf.concat([xy, xy + wh], axis=-1)  # [B, R, T, 4]

    real = tf.range(tf.shape(boxes)[1])[None, :] < num_boxes[:, None]  # [B, N]
    aspect = wh[..., 0] / wh[..., 1]
    aspect_ok = (aspect >= 0.5) & (aspect <= 2.0)
    ious = box_ops.iou(windows[..., None, :], boxes[:, None, None])  # [B, R, T, N]
    min_iou = tf.gather(tf.constant(_MIN_IOU), modes)[..., None, None]  # [B, R, 1, 1]
    iou_ok = tf.reduce_all((ious > min_iou) | ~real[:, None, None], axis=-1)
    centres = 0.5 * (boxes[..., :2] + boxes[..., 2:])[:, None, None]  # [B, 1, 1, N, 2]
    inside = tf.reduce_all((centres > windows[..., None, :2]) & (centres < windows[..., None, 2:]), axis=-1)
    inside &= real[:, None, None]  # [B, R, T, N]
    valid = aspect_ok & iou_ok & tf.reduce_any(inside, axis=-1) & (modes[..., None] > 0)  # [B, R, T]

    # First round that either drew "no crop" or found a valid window decides.
    round_done = tf.reduce_any(valid, axis=-1) | tf.equal(modes, 0)  # [B, R]
    first_round = tf.argmax(tf.cast(round_done, tf.int32), axis=-1, output_type=tf.int32)  # [B]
    crop_it = (num_boxes > 0) & tf.reduce_any(round_done, -1) & (tf.gather(modes, first_round, batch_dims=1) > 0)
    chosen_valid = tf.gather(valid, first_round, batch_dims=1)  # [B, T]
    first_try = tf.argmax(tf.cast(chosen_valid, tf.int32), axis=-1, output_type=tf.int32)
    pick = lambda x: tf.gather(tf.gather(x, first_round, batch_dims=1), first_try, batch_dims=1)  # noqa: E731
    full = tf.constant([0.0, 0.0, 1.0, 1.0])
    crop = tf.where(crop_it[:, None], pick(windows), full)
    keep = tf.where(crop_it[:, None], pick(inside), real)
    bound = tf.where(crop_it, tf.gather(min_iou[:, :, 0, 0], first_round, batch_dims=1), float("-inf"))
    return crop, keep, bound


def crop_window_pixels(crop, height, width):
    """Pixel window (y0, x0, y1, x1) int32 of normalised ``crop`` in an image of ``height`` x
    ``width``: truncation, as the reference's int(left * wtot) etc.; at least one pixel."""
    height, width = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    x0 = tf.cast(crop[0] * width, tf.int32)
    y0 = tf.cast(crop[1] * height, tf.int32)
    x1 = tf.maximum(tf.cast(crop[2] * width, tf.int32), x0 + 1)
    y1 = tf.maximum(tf.cast(crop[3] * height, tf.int32), y0 + 1)
    return y0, x0, y1, x1


def boxes_in_crop(boxes, crop):
    """``boxes`` [..., 4] mapped into the window ``crop`` [..., 4] (broadcast): clipped to it,
    renormalised to its size."""
    lo, hi = crop[..., :2], crop[..., 2:]
    boxes = tf.concat([tf.maximum(boxes[..., :2], lo), tf.minimum(boxes[..., 2:], hi)], axis=-1)
    size = hi - lo
    boxes = (boxes - tf.concat([lo, lo], -1)) / tf.concat([size, size], -1)
    return tf.clip_by_value(boxes, 0.0, 1.0)


def crop_boxes(boxes, labels, crop, keep):
    """The kept boxes [N, 4] and labels mapped into ``crop`` (clipped, renormalised)."""
    return boxes_in_crop(tf.boolean_mask(boxes, keep), crop), tf.boolean_mask(labels, keep)


def apply_crop(image, boxes, labels, crop, keep):
    """Crop ``image`` [H, W, 3] to ``crop`` and map the kept boxes into it (clipped, renormalised)."""
    shape = tf.shape(image)
    y0, x0, y1, x1 = crop_window_pixels(crop, shape[0], shape[1])
    boxes, labels = crop_boxes(boxes, labels, crop, keep)
    return image[y0:y1, x0:x1], boxes, labels


_GRAY = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as PIL's convert("L") and torchvision


def _grayscale(image):
    # Channel by channel, not a reduction over the 3-wide last axis: XLA vectorises this.
    r, g, b = tf.unstack(image, axis=-1)
    return (_GRAY[0] * r + _GRAY[1] * g + _GRAY[2] * b)[..., None]


def adjust_brightness(image, factor):
    """PIL ImageEnhance.Brightness on float 0..255: blend with black."""
    return tf.clip_by_value(image * factor, 0.0, 255.0)


def adjust_contrast(image, factor):
    """PIL ImageEnhance.Contrast: blend with the mean grey level of the image."""
    # The grey level of every pixel as one product per pixel, then a plain mean: XLA runs this
    # faster than a mean over height and width with the 3-wide channel axis kept.
    flat = tf.reshape(image, tf.concat([tf.shape(image)[:-3], [-1, 3]], 0))
    mean = tf.reduce_mean(tf.linalg.matvec(flat, tf.constant(_GRAY, image.dtype)), axis=-1)
    mean = mean[..., None, None, None] if image.shape.rank == 4 else mean
    return tf.clip_by_value((image - mean) * factor + mean, 0.0, 255.0)


def adjust_saturation(image, factor):
    """PIL ImageEnhance.Color: blend with the image's own greyscale."""
    gray = _grayscale(image)
    return tf.clip_by_value((image - gray) * factor + gray, 0.0, 255.0)


def adjust_hue(image, delta):
    """Rotate hue by ``delta`` of a full turn (torchvision's HSV hue shift), on float [..., 3] in
    0..255. Equals ``tf.image.adjust_hue`` to float rounding.

    Written on channel planes (max, min and one piecewise-linear ramp per channel) instead of
    calling ``tf.image.adjust_hue``, with the pixels transposed to [3, pixels] and back: XLA
    then vectorises it (0.40 against 0.81 ms for a 300x300 image on one core). Value and
    chroma (max - min) are unchanged by a hue rotation.
    """
    r, g, b = tf.unstack(tf.transpose(tf.reshape(image, [-1, 3])))
    v = tf.maximum(tf.maximum(r, g), b)
    chroma = v - tf.minimum(tf.minimum(r, g), b)
    safe = tf.where(chroma > 0, chroma, 1.0)
    # Hue in sixths of a turn, 0..6; grey pixels (chroma 0) come out as v whatever their hue.
    hue = tf.where(r == v, (g - b) / safe, tf.where(g == v, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    hue = hue + 6.0 * tf.cast(delta, image.dtype)
    hue = hue - 6.0 * tf.floor(hue / 6.0)

    def channel(offset):  # HSV -> RGB: v - chroma * clamp(min(k, 4 - k), 0, 1), k = (offset + hue) mod 6
        k = offset + hue
        k = tf.where(k >= 6.0, k - 6.0, k)
        return v - chroma * tf.clip_by_value(tf.minimum(k, 4.0 - k), 0.0, 1.0)

    rgb = tf.transpose(tf.stack([channel(5.0), channel(3.0), channel(1.0)]))
    return tf.reshape(tf.clip_by_value(rgb, 0.0, 255.0), tf.shape(image))


def jitter_params(seed, shape=()):
    """Draw ColorJitter's factors and order from ``seed``: (brightness, contrast, saturation,
    hue, each of ``shape``; order ``shape`` + [4] int32: the indices of the four adjustments, in
    the order they apply). Element 0 of a batch ``shape`` draws what ``shape=()`` draws."""
    shape = list(shape)
    s_order, s_b, s_c, s_s, s_h = _seeds(seed, 5)
    b = tf.random.stateless_uniform(shape, s_b, 1 - BRIGHTNESS, 1 + BRIGHTNESS)
    c = tf.random.stateless_uniform(shape, s_c, 1 - CONTRAST, 1 + CONTRAST)
    s = tf.random.stateless_uniform(shape, s_s, 1 - SATURATION, 1 + SATURATION)
    h = tf.random.stateless_uniform(shape, s_h, -HUE, HUE)
    order = tf.cast(tf.argsort(tf.random.stateless_uniform(shape + [4], s_order), axis=-1), tf.int32)
    return b, c, s, h, order


def apply_jitter(image, brightness, contrast, saturation, hue, order):
    """The four adjustments in ``order`` (0 brightness, 1 contrast, 2 saturation, 3 hue), each
    clipped to 0..255, on float ``image`` [H, W, 3]."""
    ops = [lambda x: adjust_brightness(x, brightness), lambda x: adjust_contrast(x, contrast),
           lambda x: adjust_saturation(x, saturation), lambda x: adjust_hue(x, hue)]

    # A loop over one switch, not four unrolled switches: XLA then compiles each adjustment once
    # (0.3 s instead of 14 s at the first batch of every process; the same pixels, the same speed).
    def step(i, x):
        return i + 1, tf.switch_case(order[i], [lambda f=f: f(x) for f in ops])

    return tf.while_loop(lambda i, _: i < 4, step, (tf.constant(0), image))[1]


def color_jitter(image, seed):
    """torchvision ColorJitter(0.125, 0.5, 0.5, 0.05): the four adjustments in random order."""
    return apply_jitter(image, *jitter_params(seed))


def flip_boxes(boxes):
    """Mirror normalised xyxy boxes [..., 4] left-right."""
    return tf.stack([1.0 - boxes[..., 2], boxes[..., 1], 1.0 - boxes[..., 0], boxes[..., 3]], axis=-1)


def draw_flip(seed, probability=0.5, shape=()):
    """Whether to flip, drawn from ``seed``: bool of ``shape``, True with ``probability``."""
    return tf.random.stateless_uniform(list(shape), seed) < probability


def random_flip(image, boxes, seed, probability=0.5):
    """Horizontal flip of image and boxes with ``probability``."""
    do = draw_flip(seed, probability)
    image = tf.cond(do, lambda: tf.reverse(image, axis=[1]), lambda: image)
    boxes = tf.cond(do, lambda: flip_boxes(boxes), lambda: boxes)
    return image, boxes

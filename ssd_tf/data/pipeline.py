"""tf.data pipelines: DetectionSet -> batches for model.fit (train) or evaluation.

Training, per image (the seed's order): decode -> SSD random crop -> resize to 300 ->
colour jitter -> horizontal flip -> encode_y_true. Everything runs in graph mode.
"""

import sys

import tensorflow as tf

from ssd_tf import anchors as anchors_lib
from ssd_tf import encoding
from ssd_tf.data import augment

AUTOTUNE = tf.data.AUTOTUNE


def _decode(element, from_bytes):
    data = element["source"] if from_bytes else tf.io.read_file(element["source"])
    image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    return {**element, "image": image}


def _decode_or_flag(element, from_bytes):
    """A dataset of one element: decoded with ``ok`` True, or, when reading or decoding fails, the
    element with a 1x1 black stand-in image and ``ok`` False (ignore_errors alone would lose which
    one). The stand-in runs through the transforms harmlessly and is dropped after batching."""
    one = tf.data.Dataset.from_tensors(element)
    decoded = one.map(lambda e: {**_decode(e, from_bytes), "ok": tf.constant(True)}).ignore_errors()
    failed = one.map(lambda e: {**e, "image": tf.zeros([1, 1, 3], tf.uint8), "ok": tf.constant(False)})
    return decoded.concatenate(failed).take(1)


def _warn_unreadable(count, element, from_bytes, name):
    """scan step: count unreadable images in this pass and name each one on stderr."""
    what = tf.strings.format("{} image {}", (name, element["image_id"])) if from_bytes else element["source"]
    failed = tf.logical_not(element["ok"])
    count = count + tf.cast(failed, tf.int64)

    def warn():
        tf.print("WARNING ssd_tf.data: skipped unreadable image", what, "- unreadable images so far in this pass:",
                 count, output_stream=sys.stderr)
        return count

    return tf.cond(failed, warn, lambda: count), element


def _decoded(dataset, detection_set, parallel):
    """Decode each element's image, in order, flagging with ``ok`` False (and naming on stderr,
    with a running count) each image that cannot be read or decoded: a file changed on disk since
    parsing, or one a reader never fully checked. ``drop_failed`` removes them after batching, so
    the pipelines keep a known length (Keras' epoch length, progress bar) and never crash deep in
    TensorFlow, nor lose an image silently."""
    from_bytes = bool(detection_set.sources) and isinstance(detection_set.sources[0], bytes)
    decoded = dataset.interleave(lambda e: _decode_or_flag(e, from_bytes), cycle_length=parallel,
                                 num_parallel_calls=parallel, deterministic=True)
    # Exactly one output per input (decoded or flagged), so the length is known and this holds.
    decoded = decoded.apply(tf.data.experimental.assert_cardinality(len(detection_set)))
    return decoded.scan(tf.constant(0, tf.int64),
                        lambda count, e: _warn_unreadable(count, e, from_bytes, detection_set.name))


def drop_failed(*batch):
    """(..., ok [B]) batch -> the same batch without the rows whose image failed to decode."""
    *parts, ok = batch
    keep = lambda x: tf.cond(tf.reduce_all(ok), lambda: x, lambda: tf.boolean_mask(x, ok))  # noqa: E731
    return tuple(tf.nest.map_structure(keep, p) for p in parts)


def num_batches(num_images, batch_size, drop_remainder=False):
    """Batches in one pass over ``num_images`` (what the pipelines yield when no image fails)."""
    return num_images // batch_size if drop_remainder else -(-num_images // batch_size)


def resize_image(images, size=anchors_lib.SSD300.image_size):
    """uint8 or float [H, W, 3] or [B, H, W, 3] -> float32 [.., size, size, 3] in 0..255, bilinear.

    The one resize shared by training, evaluation, prediction and the exported SavedModel.
    Antialiased like the seed's PIL resize, so large photos do not alias when shrunk to 300.
    """
    return tf.image.resize(tf.cast(images, tf.float32), [size, size], method="bilinear", antialias=True)


def train_transform(element, seed, image_size=anchors_lib.SSD300.image_size, augment_images=True):
    """One decoded element -> (image float32 [300, 300, 3] 0..255, y_true [8732, 5])."""
    image = tf.cast(element["image"], tf.float32)
    boxes = tf.reshape(tf.cast(element["boxes"], tf.float32), [-1, 4])
    labels = tf.reshape(tf.cast(element["labels"], tf.int32), [-1])
    if augment_images:
        s_crop, s_jitter, s_flip = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
        image, boxes, labels = augment.random_crop(image, boxes, labels, s_crop)
        image = resize_image(image, image_size)
        image = augment.color_jitter(image, s_jitter)
        image, boxes = augment.random_flip(image, boxes, s_flip)
    else:
        image = resize_image(image, image_size)
    image = tf.ensure_shape(image, [image_size, image_size, 3])
    return image, encoding.encode_y_true(boxes, labels)


def train_dataset(detection_set, batch_size, seed=None, augment_images=True, shuffle=True,
                  drop_difficult=True, drop_remainder=False, parallel=AUTOTUNE, input_context=None):
    """Batches of (images [B, 300, 300, 3] float32, y_true [B, 8732, 5]) for ``model.fit``.

    Difficult and object-less images are dropped (and counted in ``detection_set.report``).
    With a ``seed`` the order and every augmentation repeat exactly, epoch by epoch; each epoch
    reshuffles and redraws augmentations.

    ``input_context`` (a ``tf.distribute.InputContext``, from
    ``strategy.distribute_datasets_from_function``): this input pipeline keeps only its share of
    the images, images ``i, i + n, i + 2n, ...`` for pipeline ``i`` of ``n``, before anything is
    read or decoded, and batches ``input_context.get_per_replica_batch_size(batch_size)``:
    ``batch_size`` stays the global batch.
    """
    data = detection_set.without_difficult() if drop_difficult else detection_set
    data = data.without_empty()
    if not len(data):
        raise ValueError(f"{detection_set.name}: no training image has objects")
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
        index, count = input_context.input_pipeline_id, input_context.num_input_pipelines
        if count > 1:
            data = data.subset(range(index, len(data), count))
            # Different augmentation draws on each worker; one pipeline keeps the plain seed.
            seed = None if seed is None else seed + 7919 * index
    ds = data.to_tf()
    if shuffle:
        ds = ds.shuffle(len(data), seed=seed, reshuffle_each_iteration=True)
    ds = _decoded(ds, data, parallel)
    # One stateless seed pair per element, different every epoch, fixed by ``seed``.
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip(ds, seeds).map(
        lambda e, s: (*train_transform(e, s, augment_images=augment_images), e["ok"]),
        num_parallel_calls=parallel, deterministic=seed is not None or None,
    )
    ds = ds.batch(batch_size, drop_remainder=drop_remainder).map(drop_failed)
    return ds.prefetch(AUTOTUNE)


def eval_transform(element, image_size=anchors_lib.SSD300.image_size):
    """Decoded element -> (image [300, 300, 3] float32, info dict: image_id, size (h, w), ok)."""
    image = tf.ensure_shape(resize_image(element["image"], image_size), [image_size, image_size, 3])
    return image, {"image_id": element["image_id"], "size": element["size"]}, element["ok"]


def eval_dataset(detection_set, batch_size, parallel=AUTOTUNE, resize=True):
    """Batches of (images [B, 300, 300, 3], {"image_id": [B], "size": [B, 2] (height, width)}),
    in data set order; resize only. ``resize=False`` yields the decoded uint8 images (batch 1).
    An unreadable image is left out of its batch (named on stderr), so a batch can be short, or
    empty."""
    ds = _decoded(detection_set.to_tf(), detection_set, parallel)
    if not resize:
        if batch_size != 1:
            raise ValueError("resize=False needs batch_size=1: images keep their own sizes")
        ds = ds.map(lambda e: (e["image"], {"image_id": e["image_id"], "size": e["size"]}, e["ok"]))
        return ds.batch(1).map(drop_failed)
    ds = ds.map(eval_transform, num_parallel_calls=parallel, deterministic=True)
    return ds.batch(batch_size).map(drop_failed).prefetch(AUTOTUNE)


def validation_dataset(detection_set, batch_size, parallel=AUTOTUNE):
    """(images, y_true) batches without augmentation, for ``model.fit(validation_data=...)``."""
    return train_dataset(detection_set, batch_size, augment_images=False, shuffle=False, parallel=parallel)

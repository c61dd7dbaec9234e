"""tf.data pipelines: DetectionSet -> batches for model.fit (train) or evaluation.

Training, per image (the seed's order): decode -> SSD random crop -> resize to 300 ->
colour jitter -> horizontal flip -> encode_y_true. Everything runs in graph mode.
"""

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


def _decoded(dataset, detection_set, parallel):
    from_bytes = bool(detection_set.sources) and isinstance(detection_set.sources[0], bytes)
    decoded = dataset.map(lambda e: _decode(e, from_bytes), num_parallel_calls=parallel)
    # Readers decode every image once up front, so a failure here means a file changed on disk
    # since parsing: it is logged by name, and the cardinality check then stops the epoch with a
    # count mismatch rather than training on silently fewer images. Declaring the count also
    # gives Keras a known epoch length (progress bar, no "ran out of data" warning).
    return decoded.ignore_errors(log_warning=True).apply(
        tf.data.experimental.assert_cardinality(len(detection_set)))


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
                  drop_difficult=True, drop_remainder=False, parallel=AUTOTUNE):
    """Batches of (images [B, 300, 300, 3] float32, y_true [B, 8732, 5]) for ``model.fit``.

    Difficult and object-less images are dropped (and counted in ``detection_set.report``).
    With a ``seed`` the order and every augmentation repeat exactly, epoch by epoch; each epoch
    reshuffles and redraws augmentations.
    """
    data = detection_set.without_difficult() if drop_difficult else detection_set
    data = data.without_empty()
    if not len(data):
        raise ValueError(f"{detection_set.name}: no training image has objects")
    ds = data.to_tf()
    if shuffle:
        ds = ds.shuffle(len(data), seed=seed, reshuffle_each_iteration=True)
    ds = _decoded(ds, data, parallel)
    # One stateless seed pair per element, different every epoch, fixed by ``seed``.
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip(ds, seeds).map(
        lambda e, s: train_transform(e, s, augment_images=augment_images),
        num_parallel_calls=parallel, deterministic=seed is not None or None,
    )
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(AUTOTUNE)


def eval_transform(element, image_size=anchors_lib.SSD300.image_size):
    """Decoded element -> (image [300, 300, 3] float32, info dict: image_id, size (h, w))."""
    image = tf.ensure_shape(resize_image(element["image"], image_size), [image_size, image_size, 3])
    return image, {"image_id": element["image_id"], "size": element["size"]}


def eval_dataset(detection_set, batch_size, parallel=AUTOTUNE, resize=True):
    """Batches of (images [B, 300, 300, 3], {"image_id": [B], "size": [B, 2] (height, width)}),
    in data set order; resize only. ``resize=False`` yields the decoded uint8 images (batch 1)."""
    ds = _decoded(detection_set.to_tf(), detection_set, parallel)
    if not resize:
        if batch_size != 1:
            raise ValueError("resize=False needs batch_size=1: images keep their own sizes")
        return ds.map(lambda e: (e["image"], {"image_id": e["image_id"], "size": e["size"]})).batch(1)
    ds = ds.map(eval_transform, num_parallel_calls=parallel, deterministic=True)
    return ds.batch(batch_size).prefetch(AUTOTUNE)


def validation_dataset(detection_set, batch_size, parallel=AUTOTUNE):
    """(images, y_true) batches without augmentation, for ``model.fit(validation_data=...)``."""
    return train_dataset(detection_set, batch_size, augment_images=False, shuffle=False, parallel=parallel)

"""tf.data pipelines: DetectionSet -> batches for model.fit (train) or evaluation.

Training, per image (the reference's order): SSD random crop (drawn first, so that a JPEG decodes only
the window) -> resize to 300 -> colour jitter -> horizontal flip -> encode_y_true. The random draws
are made per batch of 64 undecoded images (``_plan_crops``), the pixel work per image. Everything
runs in graph mode.
"""

import math
import os
import sys

import tensorflow as tf

from ssd_tf.core import anchors as anchors_lib
from ssd_tf.core import encoding
from ssd_tf.data import augment
from ssd_tf.data.failed_images import decoded_in_order, drop_failed
from ssd_tf.data.resize import resize_image
from ssd_tf.data.tfrecord import TFRecordSet, parse_example

AUTOTUNE = tf.data.AUTOTUNE
# The pipeline's functions use TensorFlow's own control flow (tf.cond, tf.while_loop), so tf.data
# traces them as written: AutoGraph's source rewrite of them and of every function they call cost
# about 3 s of each process's first pipeline (Xeon AMX), for nothing.
_plain = tf.autograph.experimental.do_not_convert


def _decode(element, from_bytes):
    data = element["source"] if from_bytes else tf.io.read_file(element["source"])
    image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    return {**element, "image": image}


_BATCH = 64  # elements numbered (and their augmentations drawn) together, before decoding


def _plan_crops(batch, seed):
    """Draw the augmentations of a batch of undecoded elements (boxes and labels ragged), all
    from one stateless ``seed`` [2] (its three streams: crops, jitter, flips). Crops first, so
    that a JPEG decodes only its window. Each element gets ``crop`` [4] (normalised window), its
    boxes and labels as they will be inside it and flipped, ``jitter`` [4] (brightness,
    contrast, saturation, hue), ``order`` [4] and ``flip``. Drawn one image at a time, the same
    ops cost 0.35 ms per image for the crop alone."""
    ragged = lambda x: x if isinstance(x, tf.RaggedTensor) else tf.RaggedTensor.from_tensor(x)  # noqa: E731
    boxes = ragged(tf.cast(batch["boxes"], tf.float32))
    num_boxes, boxes = boxes.row_lengths(), boxes.to_tensor()
    n = tf.shape(boxes)[0]
    s_crop, s_jitter, s_flip = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    crop, keep, _ = augment.choose_crops(boxes, tf.cast(num_boxes, tf.int32), s_crop)
    *factors, order = augment.jitter_params(s_jitter, [n])
    flip = augment.draw_flip(s_flip, shape=[n])
    boxes = augment.boxes_in_crop(boxes, crop[:, None, :])
    boxes = tf.where(flip[:, None, None], augment.flip_boxes(boxes), boxes)
    labels = ragged(tf.cast(batch["labels"], tf.int32)).to_tensor()
    batch = {k: v for k, v in batch.items() if k != "difficult"}  # not needed from here
    return {**batch, "crop": crop, "boxes": tf.ragged.boolean_mask(boxes, keep),
            "labels": tf.ragged.boolean_mask(labels, keep),
            "jitter": tf.stack(factors, -1), "order": order, "flip": flip}


def _decode_crop(element, from_bytes):
    """Decode only ``element["crop"]``: a JPEG's header gives its size and ``decode_and_crop_jpeg``
    skips the rest; other formats are decoded whole and sliced. The pixels equal decoding
    everything, then cropping, as the reference does."""
    data = element["source"] if from_bytes else tf.io.read_file(element["source"])
    crop = element["crop"]

    def jpeg():
        shape = tf.io.extract_jpeg_shape(data)
        y0, x0, y1, x1 = augment.crop_window_pixels(crop, shape[0], shape[1])
        return tf.io.decode_and_crop_jpeg(data, tf.stack([y0, x0, y1 - y0, x1 - x0]), channels=3)

    def other():
        image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
        shape = tf.shape(image)
        y0, x0, y1, x1 = augment.crop_window_pixels(crop, shape[0], shape[1])
        return image[y0:y1, x0:x1]

    image = tf.cond(tf.strings.substr(data, 0, 3) == b"\xff\xd8\xff", jpeg, other)
    image.set_shape([None, None, 3])
    return {**element, "image": image}


def _drop_difficult_objects(element):
    keep = tf.logical_not(element["difficult"])
    return {**element, "boxes": tf.boolean_mask(element["boxes"], keep),
            "labels": tf.boolean_mask(element["labels"], keep),
            "difficult": tf.boolean_mask(element["difficult"], keep)}


def _elements(source, training, shuffle, seed, input_context, parallel, drop_difficult=True):
    """Undecoded elements of a DetectionSet or a TFRecordSet, this input pipeline's share only,
    shuffled if asked, and for training without difficult objects and object-less images.
    Returns (dataset of element dicts, count or None, from_bytes)."""
    index, count = ((input_context.input_pipeline_id, input_context.num_input_pipelines)
                    if input_context is not None else (0, 1))
    if isinstance(source, TFRecordSet):
        element_shard = count > 1 and len(source.files) < count
        if count > 1 and not element_shard:
            source = source.shard(index, count)  # whole files per worker: nobody reads the others'
        files = tf.data.Dataset.from_tensor_slices(source.files)
        if shuffle:
            files = files.shuffle(len(source.files), seed=seed, reshuffle_each_iteration=True)
        # Shuffled: read several files at once, interleaved; else file after file, in order.
        ds = files.interleave(tf.data.TFRecordDataset, cycle_length=min(len(source.files), 8) if shuffle else 1,
                              num_parallel_calls=parallel, deterministic=True)
        if element_shard:  # fewer files than workers: every worker reads all, keeps its share
            ds = ds.shard(count, index)
        if shuffle:
            ds = ds.shuffle(min(len(source), 2048), seed=seed, reshuffle_each_iteration=True)
        ds = ds.map(_plain(parse_example), num_parallel_calls=parallel, deterministic=True)
        if source.label_ids is not None:  # other tools' records: category ids -> class indices
            table = tf.constant(source.label_table())
            ds = ds.map(_plain(lambda e: {**e, "labels": tf.gather(table, tf.clip_by_value(e["labels"], 0,
                                                                                            len(table) - 1))}))
        if training:
            if drop_difficult:
                ds = ds.map(_plain(_drop_difficult_objects))
            ds = ds.filter(_plain(lambda e: tf.size(e["labels"]) > 0))
        n = None if element_shard else int(sum(source.usable if training else source.images))
        if training and drop_difficult is False:
            n = None  # usable counts exclude difficult-only images
        return ds, n, True
    data = source
    if training:
        data = data.without_difficult() if drop_difficult else data
        data = data.without_empty()
        if not len(data):
            raise ValueError(f"{source.name}: no training image has objects")
    if count > 1:
        data = data.subset(range(index, len(data), count))
    ds = data.to_tf()
    if shuffle:
        ds = ds.shuffle(len(data), seed=seed, reshuffle_each_iteration=True)
    return ds, len(data), bool(data.sources) and isinstance(data.sources[0], bytes)


def usable_cores():
    """CPU cores this process may run on (its affinity: containers, taskset), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _options():
    options = tf.data.Options()
    # Fusing the small per-image maps and parallelising them measured about 5 % faster here.
    options.experimental_optimization.map_fusion = True
    options.experimental_optimization.map_parallelization = True
    # Parallelism across images, not inside ops, in a pool of its own (two threads per core, so
    # that a thread waiting on an ordered map or a sequential stage leaves its core to another):
    # measured 327 -> 370 images/s on 2 cores (``python -m benchmarks data``). Its own pool also
    # keeps the input pipeline off the threads that run the training step.
    options.threading.max_intra_op_parallelism = 1
    options.threading.private_threadpool_size = 2 * usable_cores()
    return options


def check_labels(source, num_classes):
    """Refuse, before training, labels outside 1..num_classes-1: ValueError naming the first image.
    A DetectionSet's labels are known; a TFRecordSet's are checked as they are read
    (``train_dataset(num_classes=...)``), in the input pipeline, where XLA can't drop the check."""
    if isinstance(source, TFRecordSet):
        return
    for i, labels in enumerate(source.labels):
        bad = [int(v) for v in labels if not 0 < int(v) < num_classes]
        if bad:
            raise ValueError(f"{source.describe(i)}: label {bad[0]} is outside 1..{num_classes - 1}, the classes "
                             f"of a model with {num_classes - 1} (+ background)")


def _label_check(name, num_classes):
    def check(element):
        labels = tf.cast(element["labels"], tf.int64)
        ok = tf.debugging.assert_less(
            labels, tf.constant(num_classes, tf.int64), summarize=8,
            message=f"{name}: a record holds a label >= {num_classes}, outside the {num_classes - 1} classes of "
                    "its classes.json (records of the TF Object Detection API label COCO by category id, 1-90)")
        with tf.control_dependencies([ok]):
            return {**element, "labels": tf.identity(element["labels"])}
    return check


def for_training(source):
    """(source, images training uses): a DetectionSet without difficult objects and object-less
    images (each reported once, here), or a TFRecordSet with the count its conversion recorded."""
    if isinstance(source, TFRecordSet):
        return source, int(sum(source.usable))
    usable = source.without_difficult().without_empty()
    return usable, len(usable)


def num_batches(num_images, batch_size, drop_remainder=False):
    """Batches in one pass over ``num_images`` (what the pipelines yield when no image fails)."""
    return num_images // batch_size if drop_remainder else -(-num_images // batch_size)


# Per-image pixel and matching work, compiled with XLA: fused, it costs well under half the
# op-by-op time on a CPU (measured in ``python -m benchmarks data``). The random draws stay
# outside, so a seed gives the same crops, factors and flips with or without XLA.
@tf.function(jit_compile=True, autograph=False)
def _augment_pixels(image, brightness, contrast, saturation, hue, order, flip):
    image = augment.apply_jitter(image, brightness, contrast, saturation, hue, order)
    return tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)


@tf.function(jit_compile=True, autograph=False)
def _encode_padded(boxes, labels, num_valid):
    return encoding.encode_y_true(boxes, labels, num_valid=num_valid)


def encode_y_true_fast(boxes, labels):
    """``encoding.encode_y_true`` compiled with XLA, ground truth padded to 8, 16, 32, ... rows so
    that a handful of compiled shapes serve every image."""
    n = tf.shape(boxes)[0]
    size = tf.cast(2.0 ** tf.math.ceil(tf.math.log(tf.cast(tf.maximum(n, 8), tf.float32)) / math.log(2.0)), tf.int32)
    boxes = tf.pad(boxes, [[0, size - n], [0, 0]])
    labels = tf.pad(labels, [[0, size - n]])
    return _encode_padded(boxes, labels, n)


def train_transform(element, image_size=anchors_lib.SSD300.image_size, augment_images=True):
    """One decoded element -> (image float32 [300, 300, 3] 0..255, y_true [8732, 5]).

    With ``augment_images`` the element carries its drawn augmentation (``_plan_crops``) and is
    already cropped (``_decode_crop``); its boxes are already flipped; jitter and flip of the
    pixels are left.
    """
    image = tf.cast(element["image"], tf.float32)
    boxes = tf.reshape(tf.cast(element["boxes"], tf.float32), [-1, 4])
    labels = tf.reshape(tf.cast(element["labels"], tf.int32), [-1])
    image = resize_image(image, image_size)
    if augment_images:  # boxes are already flipped (_plan_crops)
        image = _augment_pixels(image, *tf.unstack(element["jitter"]), element["order"], element["flip"])
    image = tf.ensure_shape(image, [image_size, image_size, 3])
    return image, encode_y_true_fast(boxes, labels)


def train_dataset(detection_set, batch_size, seed=None, augment_images=True, shuffle=True,
                  drop_difficult=True, drop_remainder=False, parallel=AUTOTUNE, input_context=None, num_classes=None,
                  skip_empty=False):
    """Batches of (images [B, 300, 300, 3] float32, y_true [B, 8732, 5]) for ``model.fit``.

    Difficult and object-less images are dropped (and counted in ``detection_set.report``).
    With a ``seed`` the order and every augmentation repeat exactly, epoch by epoch; each epoch
    reshuffles and redraws augmentations.

    ``input_context`` (a ``tf.distribute.InputContext``, from
    ``strategy.distribute_datasets_from_function``): this input pipeline keeps only its share of
    the images, images ``i, i + n, i + 2n, ...`` for pipeline ``i`` of ``n``, before anything is
    read or decoded, and batches ``input_context.get_per_replica_batch_size(batch_size)``:
    ``batch_size`` stays the global batch. A TFRecordSet is shared out by whole shard files
    when it has at least as many as there are pipelines.

    ``detection_set``: a DetectionSet (readers) or a TFRecordSet (``read_tfrecords``).
    ``num_classes``: fail, naming the set, on a record whose label is that or more.
    ``skip_empty``: skip a batch whose every image failed to decode, with a warning that counts
    them (the dataset's length is then unknown; the training loop repeats it endlessly).
    """
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
        if seed is not None and input_context.num_input_pipelines > 1:
            # Different shuffles and augmentation draws on each worker; one pipeline keeps the seed.
            seed += 7919 * input_context.input_pipeline_id
    ds, count, from_bytes = _elements(detection_set, True, shuffle, seed, input_context, parallel, drop_difficult)
    if num_classes is not None and isinstance(detection_set, TFRecordSet):
        ds = ds.map(_plain(_label_check(detection_set.name, num_classes)))
    decode_fn = plan = None
    if augment_images:  # the crop is drawn first, so that a JPEG decodes only its window
        def plan(batches):
            # One stateless seed pair per batch, different every epoch, fixed by ``seed``: the
            # first two of every 2 * _BATCH numbers of the stream (the pair its first element
            # would get, were each element given one).
            seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
            seeds = seeds.batch(2 * _BATCH, drop_remainder=True).map(_plain(lambda s: s[:2]))
            return tf.data.Dataset.zip(batches, seeds).map(_plain(_plan_crops), num_parallel_calls=parallel,
                                                             deterministic=True)
        decode_fn = lambda e: _decode_crop(e, from_bytes)  # noqa: E731
    decode_fn = decode_fn or (lambda e: _decode(e, from_bytes))
    ds = decoded_in_order(ds, count, from_bytes, detection_set.name, parallel, decode_fn, plan, _BATCH)
    ds = ds.map(_plain(lambda e: (*train_transform(e, augment_images=augment_images), e["ok"])),
                num_parallel_calls=parallel, deterministic=seed is not None or None)
    # drop_failed in parallel: a batch of 8 images costs it about 2 ms, off the sequential path.
    ds = ds.batch(batch_size, drop_remainder=drop_remainder).map(_plain(drop_failed), num_parallel_calls=parallel,
                                                                  deterministic=True)
    if skip_empty:
        ds = _skip_empty(ds, detection_set.name)
    return ds.prefetch(AUTOTUNE).with_options(_options())


def _skip_empty(ds, name):
    """Drop batches left empty (every image failed to decode: a step on them would train batch norm
    on nothing and look like divergence), each with a warning that counts them."""
    def count(skipped, batch):
        empty = tf.equal(tf.shape(batch[0])[0], 0)
        skipped = skipped + tf.cast(empty, tf.int64)

        def warn():
            tf.print(tf.strings.join(["WARNING ssd_tf.data: ", name, ": skipped a batch whose every image failed to "
                                      "decode (", tf.strings.as_string(skipped), " so far in this pass)"]),
                     output_stream=sys.stderr)
            return empty
        return skipped, (batch, tf.cond(empty, warn, lambda: empty))
    def keep(batch, empty):
        return tf.logical_not(empty)

    def unflag(batch, empty):
        return batch
    return ds.scan(tf.constant(0, tf.int64), _plain(count)).filter(_plain(keep)).map(_plain(unflag))


def eval_transform(element, image_size=anchors_lib.SSD300.image_size):
    """Decoded element -> (image [300, 300, 3] float32, info dict: image_id, size (h, w), ok)."""
    image = tf.ensure_shape(resize_image(element["image"], image_size), [image_size, image_size, 3])
    return image, {"image_id": element["image_id"], "size": element["size"]}, element["ok"]


def _share(shard):
    """(index, count) -> an InputContext for pipeline ``index`` of ``count``, one replica each."""
    if shard is None or shard[1] <= 1:
        return None
    return tf.distribute.InputContext(num_input_pipelines=shard[1], input_pipeline_id=shard[0], num_replicas_in_sync=1)


def eval_dataset(detection_set, batch_size, parallel=AUTOTUNE, resize=True, shard=None):
    """Batches of (images [B, 300, 300, 3], {"image_id": [B], "size": [B, 2] (height, width)}),
    in data set order; resize only. ``resize=False`` yields the decoded uint8 images (batch 1).
    An unreadable image is left out of its batch (named on stderr), so a batch can be short, or
    empty. ``shard=(index, count)``: share ``index`` of ``count`` only, as ``train_dataset``
    shares images out among input pipelines."""
    ds, count, from_bytes = _elements(detection_set, False, False, None, _share(shard), parallel)
    ds = decoded_in_order(ds, count, from_bytes, detection_set.name, parallel, lambda e: _decode(e, from_bytes))
    if not resize:
        if batch_size != 1:
            raise ValueError("resize=False needs batch_size=1: images keep their own sizes")
        ds = ds.map(_plain(lambda e: (e["image"], {"image_id": e["image_id"], "size": e["size"]}, e["ok"])))
        return ds.batch(1).map(_plain(drop_failed))
    ds = ds.map(_plain(eval_transform), num_parallel_calls=parallel, deterministic=True)
    return ds.batch(batch_size).map(_plain(drop_failed)).prefetch(AUTOTUNE).with_options(_options())


def validation_dataset(detection_set, batch_size, parallel=AUTOTUNE, shard=None):
    """(images, y_true) batches without augmentation, for ``model.fit(validation_data=...)``.
    ``shard=(index, count)``: share ``index`` of ``count`` only (see ``eval_dataset``)."""
    return train_dataset(detection_set, batch_size, augment_images=False, shuffle=False, parallel=parallel,
                         input_context=_share(shard))

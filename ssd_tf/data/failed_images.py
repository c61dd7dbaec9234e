"""Decoding that survives unreadable images: each element is numbered before decoding, so an
image that fails (``ignore_errors`` drops it) is named on stderr and counted, and a pass keeps its
length with stand-ins that ``drop_failed`` removes after batching."""

import sys

import tensorflow as tf

# tf.data traces these as written (TensorFlow control flow only), without AutoGraph's rewrite.
_plain = tf.autograph.experimental.do_not_convert

_RECENT = 4  # sources each element remembers of those before it, to name images that fail


def _blank(spec):
    """A zero/empty value for a tf.TensorSpec (unknown dimensions become 0)."""
    shape = [d if d is not None else 0 for d in spec.shape]
    return tf.fill(shape, "") if spec.dtype == tf.string else tf.zeros(shape, spec.dtype)


def _names(batch, from_bytes, name):
    """[B] names of a batch's images for warnings: file paths, or the set's name and image ids."""
    if from_bytes:
        return tf.strings.join([f"{name} image ", tf.strings.as_string(batch["image_id"])])
    return batch["source"]


def _number(state, batch, from_bytes, name, count):
    """scan step over batches, before decoding: number each element (``pos``; the end marker
    gets ``count``, so that images missing before it count as failed) and attach the names of
    the ``_RECENT`` elements before it (``recent``), to name images that fail. Per batch, not
    per element: a sequential step per element cost about 3 % of the training pipeline's
    images/s."""
    pos, recent = state
    names = tf.concat([recent, _names(batch, from_bytes, name)], 0)  # [_RECENT + B]
    b = tf.shape(names)[0] - _RECENT
    number = tf.where(batch["end"], tf.constant(-1 if count is None else count, tf.int64),
                      pos + tf.range(b, dtype=tf.int64))
    before = tf.gather(names, tf.range(b)[:, None] + tf.range(_RECENT)[None, :])  # [B, _RECENT]
    return (pos + tf.cast(b, tf.int64), names[-_RECENT:]), {**batch, "pos": number, "recent": before}


def _find_gaps(state, element):
    """scan step after decoding: positions missing since the last element are images that failed
    (ignore_errors dropped them); name them from ``recent`` and count them."""
    last, failures = state
    missing = element["pos"] - last - 1
    failures += missing

    def warn():
        k = tf.cast(tf.minimum(missing, _RECENT), tf.int32)
        names = tf.strings.reduce_join(element["recent"][_RECENT - k:], separator=", ")
        more = tf.where(missing > tf.cast(k, tf.int64),
                        tf.strings.format(" and {} more before them", missing - tf.cast(k, tf.int64)), "")
        tf.print(tf.strings.join(["WARNING ssd_tf.data: skipped unreadable image(s) ", names, more,
                                  " - unreadable images so far in this pass: ", tf.strings.as_string(failures)]),
                 output_stream=sys.stderr)
        return failures

    failures = tf.cond(missing > 0, warn, lambda: failures)
    return (element["pos"], failures), element


def decoded_in_order(dataset, count, from_bytes, name, parallel, decode_fn, plan=None, batch=64):
    """Decode each element's image, in order (``ok`` True). An image that cannot be read or
    decoded (a file changed on disk since parsing, or one a reader never fully checked) is
    skipped, named on stderr and counted, never a crash deep in TensorFlow, never lost silently.

    With a known ``count`` the result keeps it: stand-ins (``ok`` False, a 1x1 black image) make
    up for skipped images at the end of the pass, and ``drop_failed`` removes them after
    batching, so Keras knows the epoch length. ``decode_fn``: element -> element with "image".
    ``plan``: dataset -> dataset, on batches of ``batch`` undecoded elements (boxes and labels
    ragged), e.g. to draw augmentations."""
    ds = dataset.map(_plain(lambda e: {**e, "end": tf.constant(False)}))
    if count is not None:  # an end marker reveals images that fail at the very end of a pass
        end = tf.nest.map_structure(_blank, ds.element_spec)
        end.update(end=tf.constant(True))
        ds = ds.concatenate(tf.data.Dataset.from_tensors(end))
    # In batches: ``plan`` (augmentations drawn per batch), then one sequential step that numbers
    # the elements and remembers names.
    ds = ds.ragged_batch(batch)
    if plan is not None:
        ds = plan(ds)
    start = (tf.constant(0, tf.int64), tf.fill([_RECENT], ""))
    ds = ds.scan(start, _plain(lambda state, e: _number(state, e, from_bytes, name, count))).unbatch()
    ds = ds.map(_plain(lambda e: {k: tf.convert_to_tensor(v) for k, v in e.items()}))  # unbatched ragged: dense
    stand_in = lambda e: {**e, "image": tf.zeros([1, 1, 3], tf.uint8)}  # noqa: E731
    decode = lambda e: tf.cond(e["end"], lambda: stand_in(e), lambda: decode_fn(e))  # noqa: E731
    ds = ds.map(_plain(lambda e: {**decode(e), "ok": tf.logical_not(e["end"])}),
                num_parallel_calls=parallel, deterministic=True).ignore_errors()
    ds = ds.scan((tf.constant(-1, tf.int64), tf.constant(0, tf.int64)), _plain(_find_gaps))
    if count is not None:
        # The end marker stays, as a stand-in (ok False): with no failures ``take`` stops before it.
        blank = tf.nest.map_structure(_blank, ds.element_spec)
        fill = tf.data.Dataset.from_tensors({**stand_in(blank), "ok": tf.constant(False)}).repeat()
        ds = ds.concatenate(fill).take(count)
    return ds


def drop_failed(*batch):
    """(..., ok [B]) batch -> the same batch without the rows whose image failed to decode."""
    *parts, ok = batch
    keep = lambda x: tf.cond(tf.reduce_all(ok), lambda: x, lambda: tf.boolean_mask(x, ok))  # noqa: E731
    return tuple(tf.nest.map_structure(keep, p) for p in parts)

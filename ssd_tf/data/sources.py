"""Open a data set by kind: one entry point for training, evaluation and the CLIs."""

import pathlib

from ssd_tf.data.coco import read_coco
from ssd_tf.data.synthetic import builtin_split
from ssd_tf.data.tfrecord import read_tfrecords
from ssd_tf.data.voc import VOC_CLASSES, read_voc


def read_dataset(kind, data_dir=None, split=None, classes=None, synthetic_images=64, seed=0):
    """Read a DetectionSet.

    kind "voc": ``data_dir`` is a VOC20xx folder, ``split`` an ImageSets/Main name, ``classes`` the
    class names (default the 20 VOC classes). kind "coco": ``data_dir`` holds
    ``annotations/instances_<split>.json`` and the images in ``<split>/``. kind "synthetic": the
    built-in set's ``split`` ("train", the default, or "val") of a run with ``synthetic_images``
    training images and ``seed`` (``synthetic.builtin_split``). kind "tfrecord": ``data_dir`` is a
    folder written by ``scripts/convert.py``, ``split`` a split name or role ("train", "val").
    """
    if kind == "synthetic":
        return builtin_split(split or "train", synthetic_images, seed)
    if not data_dir:
        raise ValueError(f"data set {kind!r} needs a data folder (--data-dir)")
    if kind == "voc":
        return read_voc(data_dir, split, class_names=tuple(classes) if classes else VOC_CLASSES)
    if kind == "tfrecord":
        return read_tfrecords(data_dir, split or "train")
    if kind == "coco":
        root = pathlib.Path(data_dir)
        return read_coco(root / "annotations" / f"instances_{split}.json", root / split)
    raise ValueError(f"unknown data set kind {kind!r} (voc, coco, tfrecord or synthetic)")

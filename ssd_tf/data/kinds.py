"""Data set kinds, their default splits, ``--classes`` parsing, and ``read_dataset``: the one
definition of each, for training, evaluation, conversion and the command lines."""

import pathlib

KINDS = ("synthetic", "voc", "coco", "yolo", "tfrecord")  # what read_dataset reads
CONVERTIBLE = ("voc", "coco", "yolo", "synthetic")  # what scripts/convert.py converts

# (train, val) split of each kind; for tfrecord they are roles, looked up in the folder's splits.json.
DEFAULT_SPLITS = {"synthetic": ("train", "val"), "voc": ("train", "val"), "coco": ("train2017", "val2017"),
                  "yolo": ("train", "val"), "tfrecord": ("train", "val")}


def default_split(kind, role):
    """The default split name of ``kind`` for ``role`` ("train" or "val")."""
    return DEFAULT_SPLITS[kind][("train", "val").index(role)]


def parse_classes(text):
    """``--classes`` "cat, dog" -> ("cat", "dog"); None or "" -> None. Empty names are an error."""
    if not text:
        return None
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise ValueError(f"classes={text!r}: an empty class name (comma-separated names, e.g. cat,dog)")
    return names


def read_dataset(kind, data_dir=None, split=None, classes=None, synthetic_images=64, seed=0):
    """Read a DetectionSet.

    kind "voc": ``data_dir`` is a VOC20xx folder, ``split`` an ImageSets/Main name, ``classes`` the
    class names (default the 20 VOC classes). kind "coco": ``data_dir`` holds
    ``annotations/instances_<split>.json`` and the images in ``<split>/``. kind "yolo": ``data_dir``
    is the folder holding ``data.yaml`` (or the yaml), ``split`` a key of it. kind "synthetic": the
    built-in set's ``split`` ("train", the default, or "val") of a run with ``synthetic_images``
    training images and ``seed`` (``synthetic.builtin_split``). kind "tfrecord": ``data_dir`` is a
    folder written by ``scripts/convert.py``, ``split`` a split name or role ("train", "val").
    """
    # The readers load TensorFlow: imported here, so that the kinds above are free of it.
    from ssd_tf.data.coco import read_coco
    from ssd_tf.data.synthetic import builtin_split
    from ssd_tf.data.tfrecord import read_tfrecords
    from ssd_tf.data.voc import VOC_CLASSES, read_voc
    from ssd_tf.data.yolo import read_yolo

    if kind == "synthetic":
        return builtin_split(split or "train", synthetic_images, seed)
    if not data_dir:
        raise ValueError(f"data set {kind!r} needs a data folder (data_dir=)")
    if kind == "voc":
        return read_voc(data_dir, split, class_names=tuple(classes) if classes else VOC_CLASSES)
    if kind == "yolo":
        return read_yolo(data_dir, split or "train", classes)
    if kind == "tfrecord":
        return read_tfrecords(data_dir, split or "train")
    if kind == "coco":
        from ssd_tf.data.layout_checks import check_layout

        check_layout(kind, data_dir, [split])  # the layout named, not a bare "No such file"
        root = pathlib.Path(data_dir)
        return read_coco(root / "annotations" / f"instances_{split}.json", root / split)
    raise ValueError(f"unknown data set kind {kind!r} ({', '.join(KINDS)})")

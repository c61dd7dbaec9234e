"""Is a data folder laid out as its kind says? Answered from the file system alone, without
TensorFlow, so that a command line refuses a wrong folder at once and before writing anything.

The readers check again as they read (for Python callers); these checks only look for what every
reader needs: VOC's ``Annotations/``, ``JPEGImages/`` and split file; COCO's instances file and
image folder; YOLO's ``data.yaml`` with its names and split; converted TFRecords' shards.
"""

import pathlib


def _voc(root, split):
    missing = [name for name in ("Annotations", "JPEGImages") if not (root / name).is_dir()]
    if missing:
        inner = sorted(p.name for p in root.glob("VOC20*") if (p / "Annotations").is_dir())
        hint = (f"; did you mean {root / inner[0]}?" if inner else
                " (a VOC folder holds Annotations/, JPEGImages/ and ImageSets/Main/<split>.txt)")
        raise FileNotFoundError(f"{root}: no {' or '.join(m + '/' for m in missing)} folder{hint}")
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        found = sorted(p.stem for p in (root / "ImageSets" / "Main").glob("*.txt") if "_" not in p.stem)
        raise FileNotFoundError(f"{split_file} does not exist: no split {split!r} (this folder has "
                                f"{', '.join(found) or 'no split files'})")


def _coco(root, split):
    instances = root / "annotations" / f"instances_{split}.json"
    if not instances.is_file():
        found = sorted(p.stem.removeprefix("instances_") for p in (root / "annotations").glob("instances_*.json"))
        raise FileNotFoundError(
            f"{instances} does not exist: a COCO folder holds annotations/instances_<split>.json and the images in "
            f"<split>/ ({'its splits: ' + ', '.join(found) if found else 'no instances files here'}; name one "
            "as the split)")
    if not (root / split).is_dir():
        raise FileNotFoundError(f"{root / split} does not exist: the images of split {split!r} go there")


def _yolo(root, split):
    from ssd_tf.data import yolo  # PyYAML, no TensorFlow

    path = yolo.find_yaml(root)
    base, _, config = yolo.read_yaml(path)
    yolo.split_images(base, yolo.split_entry(config, split, path), f"{path}: {split}")


def _tfrecord(root, split):
    if not any(root.glob("*.tfrecord*")):
        raise FileNotFoundError(f"{root}: no .tfrecord files here (write them with scripts/convert.py)")


CHECKS = {"voc": _voc, "coco": _coco, "yolo": _yolo, "tfrecord": _tfrecord}


def check_layout(kind, data_dir, splits):
    """Raise FileNotFoundError or ValueError, naming the path and what is missing, unless
    ``data_dir`` is a ``kind`` data set with ``splits`` (names; empty ones are skipped).
    The built-in set needs no folder; a folder given with it is an error, as it would be ignored."""
    if kind != "synthetic" and kind not in CHECKS:
        raise ValueError(f"unknown data set kind {kind!r}")
    if kind == "synthetic":
        if data_dir:
            raise ValueError(f"data_dir={data_dir} is not read with the built-in set (dataset='synthetic', the "
                             "default): name its kind, e.g. dataset='voc'")
        return
    if not data_dir:
        raise ValueError(f"dataset='{kind}' needs data_dir= (the data set's folder)")
    root = pathlib.Path(data_dir)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist")
    if kind != "yolo" and not root.is_dir():
        raise ValueError(f"{root} is a file, not a folder")
    for split in splits:
        if split:
            CHECKS[kind](root, split)

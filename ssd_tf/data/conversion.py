"""Convert a data set (VOC, COCO, YOLO, the built-in set) to TFRecord shards, COCO or YOLO layout:
the work of scripts/convert.py."""

import json
import pathlib

from ssd_tf.core.classes import CLASSES_FILE, write_classes
from ssd_tf.data.kinds import CONVERTIBLE, DEFAULT_SPLITS, read_dataset
from ssd_tf.paths import refuse_existing

TARGETS = ("tfrecord", "coco", "yolo")


def convert(kind, data_dir, output, splits=None, classes=None, images_per_shard=1024, progress=True,
            synthetic_images=64, seed=0, to="tfrecord", images="copy"):
    """Convert a data set's splits into a new folder ``output``.

    ``kind``: voc, coco, yolo or synthetic. ``splits``: split names, default the data set's train
    and val splits (voc: train, val; coco: train2017, val2017); the first is the "train" role, the
    second "val" (and, for YOLO, a third "test"). ``to``: tfrecord (shards, ``splits.json``), coco
    (``annotations/instances_<split>.json``, ``<split>/``) or yolo (``data.yaml``, ``images/``,
    ``labels/``). ``images``: "copy" or "symlink" the image files (coco, yolo). An existing,
    non-empty ``output`` is refused. Returns {split: {"images", "objects", "skipped", ...}}.
    """
    from ssd_tf.data import writers  # PIL and the COCO reader: after the argument checks

    if kind not in CONVERTIBLE:
        raise ValueError(f"can convert {', '.join(CONVERTIBLE)} data sets, not {kind!r}")
    if to not in TARGETS:
        raise ValueError(f"to={to!r}: one of {', '.join(TARGETS)}")
    if images not in writers.IMAGE_MODES:
        raise ValueError(f"images={images!r}: one of {', '.join(writers.IMAGE_MODES)}")
    splits = list(splits or DEFAULT_SPLITS[kind])
    if to == "yolo":
        writers.yolo_roles(splits)  # before any reading: more than three splits is refused
    output = pathlib.Path(output)
    refuse_existing(output, "choose a new output folder")
    metas, class_names = {}, None
    for i, split in enumerate(splits):
        dataset = read_dataset(kind, data_dir, split, classes, synthetic_images=synthetic_images, seed=seed)
        if i == 0:
            class_names = dataset.class_names
            output.mkdir(parents=True, exist_ok=True)
            write_classes(output / CLASSES_FILE, dataset.class_names, dataset.category_ids)
        metas[split] = _write(to, dataset, output, split, images, images_per_shard, progress)
    if to == "tfrecord":
        from ssd_tf.data.tfrecord import SPLITS_FILE

        roles = dict(zip(("train", "val"), splits))
        (output / SPLITS_FILE).write_text(json.dumps(roles, indent=1) + "\n")
    elif to == "yolo":
        writers.write_yolo_yaml(output, splits, class_names)
    return metas


def _write(to, dataset, output, split, images, images_per_shard, progress):
    from ssd_tf.data import writers
    from ssd_tf.data.tfrecord import write_split

    if to == "tfrecord":
        return write_split(dataset, output, split, images_per_shard, dataset.annotation_file, progress)
    meta = {"split": split, "images": len(dataset), "objects": dataset.num_objects, "source": dataset.name,
            "skipped": dict(dataset.report.counts), "skipped_messages": dataset.report.messages}
    if to == "coco":
        meta["instances"] = str(writers.write_coco_split(dataset, output, split, images, progress))
    else:
        meta["difficult_as_boxes"] = writers.write_yolo_split(dataset, output, split, images, progress)
    if meta["skipped_messages"]:
        (output / f"{split}-skipped.txt").write_text("".join(m + "\n" for m in meta["skipped_messages"]))
    return meta

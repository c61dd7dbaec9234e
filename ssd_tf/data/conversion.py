"""Convert a data set (VOC, COCO, the built-in set) to TFRecord shards: the work of scripts/convert.py."""

import json
import pathlib

from ssd_tf.core.classes import CLASSES_FILE, write_classes
from ssd_tf.data.kinds import CONVERTIBLE, DEFAULT_SPLITS, read_dataset
from ssd_tf.data.tfrecord import SPLITS_FILE, write_split


def convert(kind, data_dir, output, splits=None, classes=None, images_per_shard=1024, progress=True,
            synthetic_images=64, seed=0):
    """Convert a data set's splits to TFRecords under ``output``.

    ``kind``: voc, coco or synthetic. ``splits``: split names, default the data set's train and
    val splits (voc: train, val; coco: train2017, val2017); the first is the "train" role, the
    second "val" (``splits.json``). Returns {split: metadata}.
    """
    if kind not in CONVERTIBLE:
        raise ValueError(f"can convert {', '.join(CONVERTIBLE)} data sets, not {kind!r}")
    splits = list(splits or DEFAULT_SPLITS[kind])
    output = pathlib.Path(output)
    output.mkdir(parents=True, exist_ok=True)
    metas = {}
    for i, split in enumerate(splits):
        dataset = read_dataset(kind, data_dir, split, classes, synthetic_images=synthetic_images, seed=seed)
        if i == 0:
            write_classes(output / CLASSES_FILE, dataset.class_names, dataset.category_ids)
        metas[split] = write_split(dataset, output, split, images_per_shard, dataset.annotation_file, progress)
    roles = dict(zip(("train", "val"), splits))
    (output / SPLITS_FILE).write_text(json.dumps(roles, indent=1) + "\n")
    return metas

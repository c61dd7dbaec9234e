"""Sharded TFRecords with the TF Object Detection API's feature keys.

A converted folder (``scripts/convert.py``) holds, per split:
``<split>-00000-of-000NN.tfrecord`` shards, ``<split>.json`` (image and object counts per shard,
what conversion skipped) and ``<split>-instances.json`` (COCO ground truth: a COCO source's own
instances file, so evaluating records is still the official metric; VOC's conversion otherwise);
and once: ``classes.json`` (class names 0..C-1, category ids) and ``splits.json`` (which split
is "train" and which "val").

Boxes in records are normalised ``[xmin, ymin, xmax, ymax]`` like everywhere here; labels are the
contiguous classes 1..C-1. Records written by the Object Detection API's dataset tools train here
(put a ``classes.json`` beside them); ours train there.
"""

import dataclasses
import io
import json
import logging
import math
import pathlib
import re
import shutil

import numpy as np
import tensorflow as tf
from PIL import Image

from ssd_tf.core.classes import CLASSES_FILE, read_classes
from ssd_tf.data.coco import coco_ground_truth
from ssd_tf.data.detection_set import SkipReport
from ssd_tf.progress import Progress

log = logging.getLogger("ssd_tf.data.tfrecord")

FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/format": tf.io.FixedLenFeature([], tf.string, default_value="jpeg"),
    "image/height": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    "image/width": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    "image/source_id": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "image/object/bbox/xmin": tf.io.RaggedFeature(tf.float32),
    "image/object/bbox/ymin": tf.io.RaggedFeature(tf.float32),
    "image/object/bbox/xmax": tf.io.RaggedFeature(tf.float32),
    "image/object/bbox/ymax": tf.io.RaggedFeature(tf.float32),
    "image/object/class/label": tf.io.RaggedFeature(tf.int64),
    "image/object/difficult": tf.io.RaggedFeature(tf.int64),
    "image/object/is_crowd": tf.io.RaggedFeature(tf.int64),
}
SPLITS_FILE = "splits.json"


# ---------------------------------------------------------------- writing

def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def encode_example(encoded, fmt, height, width, image_id, filename, boxes, labels, difficult, class_names):
    """One image -> tf.train.Example bytes (OD API keys). ``boxes`` [n, 4] normalised xyxy."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    feature = {
        "image/encoded": _bytes([encoded]),
        "image/format": _bytes([fmt.encode()]),
        "image/height": _ints([height]),
        "image/width": _ints([width]),
        "image/source_id": _bytes([str(image_id).encode()]),
        "image/filename": _bytes([filename.encode()]),
        "image/object/bbox/xmin": _floats(boxes[:, 0]),
        "image/object/bbox/ymin": _floats(boxes[:, 1]),
        "image/object/bbox/xmax": _floats(boxes[:, 2]),
        "image/object/bbox/ymax": _floats(boxes[:, 3]),
        "image/object/class/label": _ints(labels),
        "image/object/class/text": _bytes([class_names[int(c)].encode() for c in labels]),
        "image/object/difficult": _ints(difficult),
        "image/object/is_crowd": _ints(np.zeros(len(labels))),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _validated(source, where):
    """(encoded bytes, format) of a fully decodable image, or ValueError naming it."""
    try:
        encoded = source if isinstance(source, bytes) else pathlib.Path(source).read_bytes()
        with Image.open(io.BytesIO(encoded)) as im:
            fmt = im.format
            im.load()  # one full decode, here, so training never meets a corrupt image
    except Exception as err:
        raise ValueError(f"{where}: unreadable image ({type(err).__name__}: {err})") from None
    return encoded, {"MPO": "jpeg"}.get(fmt, fmt.lower())


def write_split(detection_set, output, split, images_per_shard=1024, instances=None, progress=True):
    """Write one DetectionSet as ``output/<split>-NNNNN-of-MMMMM.tfrecord`` shards plus
    ``<split>.json`` and ``<split>-instances.json``. Every image is fully decoded once here;
    unreadable ones are skipped, counted and listed (with what the reader skipped) in
    ``<split>.json``. ``instances``: a COCO instances file to copy as the ground truth (default:
    converted from the set). Returns the split's metadata dict."""
    output = pathlib.Path(output)
    output.mkdir(parents=True, exist_ok=True)
    report = SkipReport()
    report.counts.update(detection_set.report.counts)
    report.messages.extend(detection_set.report.messages)
    n = len(detection_set)
    num_shards = max(1, math.ceil(n / images_per_shard))
    shards, writer, kept = [], None, []
    bar = Progress(n, f"writing {split}") if progress else None
    for i in range(n):
        if writer is None or shards[-1]["images"] >= images_per_shard:
            if writer:
                writer.close()
            name = f"{split}-{len(shards):05d}-of-{num_shards:05d}.tfrecord"
            writer = tf.io.TFRecordWriter(str(output / name))
            shards.append({"file": name, "images": 0, "usable": 0, "objects": 0})
        where = detection_set.describe(i)
        try:
            encoded, fmt = _validated(detection_set.sources[i], where)
        except ValueError as err:
            report.skip("unreadable images", str(err))
            continue
        height, width = detection_set.sizes[i]
        boxes, labels, difficult = detection_set.boxes[i], detection_set.labels[i], detection_set.difficult[i]
        filename = where.rsplit("/", 1)[-1]
        writer.write(encode_example(encoded, fmt, height, width, detection_set.image_ids[i], filename, boxes,
                                    labels, difficult, detection_set.class_names))
        shards[-1]["images"] += 1
        shards[-1]["usable"] += int(np.any(~np.asarray(difficult, bool)))
        shards[-1]["objects"] += len(labels)
        kept.append(i)
        if bar:
            bar.update()
    if writer:
        writer.close()
    if bar:
        bar.close()
    gt_path = output / f"{split}-instances.json"
    if instances:
        shutil.copyfile(instances, gt_path)
    else:
        gt_path.write_text(json.dumps(coco_ground_truth(detection_set.subset(kept))))
    meta = {"split": split, "images": sum(s["images"] for s in shards), "usable": sum(s["usable"] for s in shards),
            "objects": sum(s["objects"] for s in shards), "shards": shards, "source": detection_set.name,
            "skipped": dict(report.counts), "skipped_messages": report.messages}
    (output / f"{split}.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


# ---------------------------------------------------------------- reading

@dataclasses.dataclass
class TFRecordSet:
    """One split of a converted folder: what the pipelines need, without reading any image.

    ``files``: shard paths; ``images`` / ``usable`` per shard (usable: images with at least one
    non-difficult object, the ones training uses). ``annotation_file``: the COCO ground truth.
    """

    def label_table(self):
        """int32 [max id + 1]: class index of each category id, -1 for ids no class has."""
        table = np.full(max(self.label_ids) + 1, -1, np.int32)
        for index, category_id in enumerate(self.label_ids):
            table[category_id] = index
        return table

    files: list
    images: list
    usable: list
    class_names: tuple
    category_ids: tuple
    name: str
    annotation_file: str | None = None
    report: SkipReport = dataclasses.field(default_factory=SkipReport)
    image_ids: None = None  # evaluation covers every image of the ground-truth file
    # Records of other tools (the OD API's) label objects by category id: the pipelines map each
    # to its class index through these ids. None: labels are class indices already (ours).
    label_ids: tuple | None = None

    def __len__(self):
        return int(sum(self.images))

    @property
    def num_classes(self):
        return len(self.class_names)

    def shard(self, index, count):
        """The files of input pipeline ``index`` of ``count`` (files i, i + count, ...)."""
        pick = lambda xs: xs[index::count]  # noqa: E731
        return dataclasses.replace(self, files=pick(self.files), images=pick(self.images), usable=pick(self.usable))


LABEL_MAP_FILE = "label_map.pbtxt"


def read_label_map(path):
    """The TF Object Detection API's ``label_map.pbtxt`` -> (class_names, category_ids), with
    background first: ``item { id: N name: "..." display_name: "..." }`` (display_name preferred)."""
    text = pathlib.Path(path).read_text()
    names, ids = ["background"], [0]
    for number, item in enumerate(re.findall(r"item\s*\{(.*?)\}", text, re.S), start=1):
        found = re.search(r"\bid\s*:\s*(\d+)", item)
        name = (re.search(r"display_name\s*:\s*[\"'](.*?)[\"']", item)
                or re.search(r"\bname\s*:\s*[\"'](.*?)[\"']", item))
        if not found:
            raise ValueError(f"{path}: item {number} has no id")
        names.append(name.group(1) if name else f"class_{found.group(1)}")
        ids.append(int(found.group(1)))
    if len(ids) < 2:
        raise ValueError(f"{path}: no item {{ id: ... name: ... }} in it")
    if len(set(ids)) != len(ids) or 0 in ids[1:]:
        raise ValueError(f"{path}: ids must be distinct and above 0 (0 is background)")
    order = sorted(range(1, len(ids)), key=lambda i: ids[i])
    return ("background", *(names[i] for i in order)), (0, *(ids[i] for i in order))


def read_tfrecords(folder, split="train"):
    """Open ``split`` of a converted folder. ``split`` is a split name (e.g. ``train2017``) or a
    role, "train" or "val", looked up in ``splits.json``. Shards without a ``<split>.json`` (made
    by other tools) are found by name (``<split>*.tfrecord*``); then counts are read once, and
    their labels are category ids: of ``classes.json``, or of the OD API's ``label_map.pbtxt``.
    A label that names no class is refused then, naming the file and the record."""
    folder = pathlib.Path(folder)
    class_names, category_ids = read_classes(folder)
    classes_source = folder / CLASSES_FILE
    if class_names is None and (folder / LABEL_MAP_FILE).is_file():
        classes_source = folder / LABEL_MAP_FILE
        class_names, category_ids = read_label_map(classes_source)
    if class_names is None:
        raise FileNotFoundError(f"{folder}: no classes.json (class names 0..C-1) or {LABEL_MAP_FILE} beside the "
                                "records")
    roles = json.loads((folder / SPLITS_FILE).read_text()) if (folder / SPLITS_FILE).is_file() else {}
    split = roles.get(split, split)
    meta_path = folder / f"{split}.json"
    report = SkipReport()
    label_ids = None
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        files = [str(folder / s["file"]) for s in meta["shards"]]
        images, usable = [s["images"] for s in meta["shards"]], [s["usable"] for s in meta["shards"]]
        report.counts.update(meta.get("skipped", {}))
        report.messages.extend(meta.get("skipped_messages", []))
    else:
        files = sorted(str(p) for p in folder.glob(f"{split}*.tfrecord*"))
        if not files:
            raise FileNotFoundError(f"{folder}: no {split}.json and no {split}*.tfrecord shards")
        label_ids = tuple(int(i) for i in category_ids)
        images, usable = _count(files, set(label_ids[1:]), classes_source)
    for f in files:
        if not pathlib.Path(f).is_file():
            raise FileNotFoundError(f"{f}: shard listed in {meta_path} is missing")
    gt = folder / f"{split}-instances.json"
    return TFRecordSet(files, images, usable, tuple(class_names), tuple(category_ids), f"{folder}/{split}",
                       str(gt) if gt.is_file() else None, report, label_ids=label_ids)


def _count(files, valid_labels, classes_source):
    """(images, usable) per file; ValueError at the first label that is not in ``valid_labels``."""
    source_id = {"image/source_id": tf.io.FixedLenFeature([], tf.string, "")}
    images, usable = [], []
    for f in files:
        ds = tf.data.TFRecordDataset(f).map(
            lambda r: (parse_example(r), tf.io.parse_single_example(r, source_id)["image/source_id"]))
        flags = []
        for e, name in ds:
            bad = [int(v) for v in e["labels"].numpy() if int(v) not in valid_labels]
            if bad:
                ids = sorted(valid_labels)
                raise ValueError(f"{f}: record {name.numpy().decode(errors='replace')}: label {bad[0]} is not a class "
                                 f"id of {classes_source} (ids {', '.join(map(str, ids[:8]))}"
                                 f"{', ...' if len(ids) > 8 else ''})")
            flags.append(bool(tf.reduce_any(~e["difficult"])))
        images.append(len(flags))
        usable.append(sum(flags))
    return images, usable


def parse_example(serialized):
    """Example bytes -> the pipeline's element dict: source (encoded image), boxes [n, 4], labels
    [n], difficult [n] (crowd objects count as difficult: kept out of training), image_id, size."""
    f = tf.io.parse_single_example(serialized, FEATURES)  # RaggedFeatures: 1-D tensors here
    dense = lambda key, dtype: tf.cast(f[key], dtype)  # noqa: E731
    labels = dense("image/object/class/label", tf.int32)
    n = tf.shape(labels)[0]
    keys = [f"image/object/bbox/{k}" for k in ("xmin", "ymin", "xmax", "ymax")]
    checks = [tf.debugging.Assert(tf.equal(tf.size(f[key]), n), [
        f"TFRecord: {key} and image/object/class/label have different lengths in the record of image/source_id",
        f["image/source_id"]]) for key in keys]
    with tf.control_dependencies(checks):
        boxes = tf.stack([dense(key, tf.float32) for key in keys], -1)
    flag = lambda key: tf.cond(  # noqa: E731
        tf.equal(tf.size(f[key]), n), lambda: dense(key, tf.bool), lambda: tf.zeros([n], tf.bool))
    image_id = _numeric_id(f["image/source_id"])
    return {
        "source": f["image/encoded"], "boxes": tf.reshape(boxes, [-1, 4]), "labels": labels,
        "difficult": flag("image/object/difficult") | flag("image/object/is_crowd"),
        "image_id": image_id,
        "size": tf.cast(tf.stack([f["image/height"], f["image/width"]]), tf.int32),
    }


def _numeric_id(source_id):
    # Our records carry numeric ids (COCO's, or the reader's running index); other tools' may carry
    # file names: those get a stable hash.
    numeric = tf.strings.regex_full_match(source_id, r"[0-9]{1,18}")
    return tf.cond(numeric, lambda: tf.strings.to_number(source_id, tf.int64),
                   lambda: tf.strings.to_hash_bucket_fast(source_id, 2 ** 62))

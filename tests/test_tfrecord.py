"""TFRecord shards: conversion, round trip against the readers, training and evaluation from them."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT, shared_data
from ssd_tf import data
from ssd_tf.evaluation import coco_metric as evaluation
from ssd_tf.data import conversion, tfrecord
from helpers import coco_case


@pytest.fixture(scope="module")
def voc_records(tmp_path_factory):
    root = shared_data("voc2012_sample", "VOC2012")
    out = tmp_path_factory.mktemp("records")
    conversion.convert("voc", root, out, splits=["trainval", "val"], images_per_shard=30, progress=False)
    return root, out


def _parsed(records):
    ds = tf.data.TFRecordDataset(records.files).map(tfrecord.parse_example)
    return {int(e["image_id"]): e for e in ds}


def test_records_round_trip_boxes_labels_and_images(voc_records):
    root, out = voc_records
    reader = data.read_voc(root, "trainval")
    records = data.read_tfrecords(out, "train")  # the "train" role is trainval here
    assert len(records.files) == 4 and len(records) == len(reader) == 100
    assert records.class_names == reader.class_names and records.category_ids == reader.category_ids
    parsed = _parsed(records)
    assert sorted(parsed) == sorted(reader.image_ids)
    for i, image_id in enumerate(reader.image_ids):
        e = parsed[image_id]
        np.testing.assert_allclose(e["boxes"].numpy(), reader.boxes[i], atol=1e-7)
        assert e["labels"].numpy().tolist() == reader.labels[i].tolist()
        assert e["difficult"].numpy().tolist() == reader.difficult[i].tolist()
        assert tuple(e["size"].numpy()) == tuple(reader.sizes[i])
    # Decoded images are the same pixels, in the same order.
    for (a, ia), (b, ib) in zip(data.eval_dataset(reader, 25), data.eval_dataset(records, 25)):
        assert ia["image_id"].numpy().tolist() == ib["image_id"].numpy().tolist()
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # Training batches (no augmentation, no shuffle) equal: difficult objects and images left
    # without objects are dropped the same way, and the recorded count says how many remain.
    usable, n = data.for_training(reader)
    assert n == sum(records.usable) == len(usable)
    ours = list(data.train_dataset(records, 16, augment_images=False, shuffle=False))
    theirs = list(data.train_dataset(reader, 16, augment_images=False, shuffle=False))
    assert len(ours) == len(theirs) == data.num_batches(n, 16)
    for (xa, ya), (xb, yb) in zip(ours, theirs):
        np.testing.assert_array_equal(xa.numpy(), xb.numpy())
        np.testing.assert_allclose(ya.numpy(), yb.numpy(), atol=1e-6)


@pytest.mark.slow
def test_records_shard_by_file_per_worker_and_shuffle_with_a_seed(voc_records):
    _, out = voc_records
    records = data.read_tfrecords(out, "train")
    seen = []
    for index in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=index, num_replicas_in_sync=2)
        ids = [int(i) for _, info in data.eval_dataset(records.shard(index, 2), 50) for i in info["image_id"]]
        assert int(data.train_dataset(records, 8, seed=0, input_context=ctx).cardinality()) > 0
        seen.append(set(ids))
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 100
    a = [y.numpy() for _, y in data.train_dataset(records, 8, seed=3).take(2)]
    b = [y.numpy() for _, y in data.train_dataset(records, 8, seed=3).take(2)]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_object_detection_api_style_records_train_here(tmp_path):
    """Records as the OD API's dataset tools write them: file names as source ids, no metadata."""
    from PIL import Image
    import io

    writer = tf.io.TFRecordWriter(str(tmp_path / "train-00000-of-00001.tfrecord"))
    for k in range(3):
        buffer = io.BytesIO()
        Image.fromarray(np.full((60, 80, 3), 40 * k, np.uint8)).save(buffer, format="JPEG")
        feature = {
            "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[buffer.getvalue()])),
            "image/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"jpeg"])),
            "image/height": tf.train.Feature(int64_list=tf.train.Int64List(value=[60])),
            "image/width": tf.train.Feature(int64_list=tf.train.Int64List(value=[80])),
            "image/filename": tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"2008_00{k}.jpg".encode()])),
            "image/source_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"2008_00{k}.jpg".encode()])),
            "image/object/bbox/xmin": tf.train.Feature(float_list=tf.train.FloatList(value=[0.1])),
            "image/object/bbox/ymin": tf.train.Feature(float_list=tf.train.FloatList(value=[0.2])),
            "image/object/bbox/xmax": tf.train.Feature(float_list=tf.train.FloatList(value=[0.6])),
            "image/object/bbox/ymax": tf.train.Feature(float_list=tf.train.FloatList(value=[0.7])),
            "image/object/class/text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"cat"])),
            "image/object/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[1])),
        }
        writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    writer.close()
    with pytest.raises(FileNotFoundError, match="classes.json"):
        data.read_tfrecords(tmp_path, "train")
    (tmp_path / "classes.json").write_text(json.dumps({"class_names": ["background", "cat"], "category_ids": [0, 1]}))
    records = data.read_tfrecords(tmp_path, "train")
    assert len(records) == 3 and sum(records.usable) == 3
    images, y_true = next(iter(data.train_dataset(records, 3, seed=0)))
    assert images.shape == (3, 300, 300, 3) and np.all((y_true[..., 4].numpy() > 0).sum(axis=1) >= 1)
    ids = [e["image_id"].numpy() for e in tf.data.TFRecordDataset(records.files).map(tfrecord.parse_example)]
    assert len(set(ids)) == 3  # file-name ids get distinct numbers


def test_coco_records_evaluate_to_the_official_metric(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    path, images_dir, results = coco_case(tmp_path, np.random.default_rng(0))
    (tmp_path / "COCO" / "annotations").mkdir(parents=True)
    path.rename(tmp_path / "COCO" / "annotations" / "instances_val.json")
    images_dir.rename(tmp_path / "COCO" / "val")
    proc = subprocess.run([sys.executable, "scripts/convert.py", "--dataset", "coco", "--splits", "val",
                           "--data-dir", str(tmp_path / "COCO"), "--output", str(tmp_path / "records")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "val: 8 images" in proc.stdout
    records = data.read_dataset("tfrecord", tmp_path / "records", "val")
    ours = evaluation.evaluate_detections(records, results)
    gt = COCO(str(tmp_path / "COCO" / "annotations" / "instances_val.json"))
    official = COCOeval(gt, gt.loadRes(results), iouType="bbox")
    official.evaluate()
    official.accumulate()
    official.summarize()
    np.testing.assert_allclose(list(ours["stats"].values()), official.stats, atol=1e-6)

    # An answer that owes nothing to the copied file: detections made from what the records carry
    # (ids, boxes, labels), at score 1. Every category's AP is then the share of COCO's 101 recall
    # thresholds at or below the recall reached, whatever the IoU threshold; crowd regions ignored.
    annotations = json.loads((tmp_path / "COCO" / "annotations" / "instances_val.json").read_text())
    objects = {}  # category id -> non-crowd objects in the original file
    for ann in annotations["annotations"]:
        objects[ann["category_id"]] = objects.get(ann["category_id"], 0) + (not ann["iscrowd"])
    found = {cat: 0 for cat in objects}
    results = []
    for image_id, e in sorted(_parsed(records).items()):
        height, width = e["size"].numpy()
        for box, label in zip(e["boxes"].numpy(), e["labels"].numpy()):
            cat = records.category_ids[label]
            if cat == 1 and image_id <= 2:  # leave some cats undetected
                continue
            x0, y0, x1, y1 = box * [width, height, width, height]
            results.append({"image_id": image_id, "category_id": int(cat), "score": 1.0,
                            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]})
            found[cat] += 1
    recall_thresholds = np.linspace(0, 1, 101)
    expected = np.mean([np.mean(recall_thresholds <= found[c] / objects[c]) for c in objects])
    assert found[1] < objects[1] and expected < 0.99  # the case has a part to miss
    report = evaluation.evaluate_detections(records, results)
    for name in ("AP", "AP50", "AP75"):
        assert report["stats"][name] == pytest.approx(expected, abs=1e-6), name


def test_conversion_skips_and_lists_corrupt_images(tmp_path):
    from PIL import Image

    root = tmp_path / "VOC"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    names = ["good", "truncated"]
    for name in names:
        Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
        (root / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename><object><name>cat</name><bndbox><xmin>5</xmin>"
            "<ymin>5</ymin><xmax>30</xmax><ymax>30</ymax></bndbox></object></annotation>")
    raw = (root / "JPEGImages" / "truncated.jpg").read_bytes()
    (root / "JPEGImages" / "truncated.jpg").write_bytes(raw[: len(raw) // 2])
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(names) + "\n")
    metas = conversion.convert("voc", root, tmp_path / "out", splits=["train"], progress=False)
    assert metas["train"]["images"] == 1 and metas["train"]["skipped"] == {"unreadable images": 1}
    assert "truncated.jpg" in metas["train"]["skipped_messages"][0]
    records = data.read_tfrecords(tmp_path / "out", "train")
    assert len(records) == 1 and records.report.counts["unreadable images"] == 1


def test_a_record_with_mismatched_object_fields_is_named_not_a_deep_tf_error():
    def feature(values, kind):
        return tf.train.Feature(**{kind: {"float_list": tf.train.FloatList, "int64_list": tf.train.Int64List,
                                          "bytes_list": tf.train.BytesList}[kind](value=values)})

    good = {"image/encoded": feature([b"x"], "bytes_list"), "image/source_id": feature([b"2008_000123"], "bytes_list"),
            **{f"image/object/bbox/{k}": feature([0.1, 0.2], "float_list") for k in ("xmin", "ymin")},
            **{f"image/object/bbox/{k}": feature([0.5, 0.6], "float_list") for k in ("xmax", "ymax")},
            "image/object/class/label": feature([1, 2], "int64_list"),
            "image/object/difficult": feature([0, 1], "int64_list")}
    parsed = tfrecord.parse_example(tf.train.Example(features=tf.train.Features(feature=good)).SerializeToString())
    np.testing.assert_allclose(parsed["boxes"].numpy(), [[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.6, 0.6]])
    assert parsed["labels"].numpy().tolist() == [1, 2] and parsed["difficult"].numpy().tolist() == [False, True]
    bad = {**good, "image/object/bbox/ymax": feature([0.5], "float_list")}
    serialized = tf.train.Example(features=tf.train.Features(feature=bad)).SerializeToString()
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image/object/bbox/ymax and image/object/class/label "
                       r"have different lengths.*2008_000123"):
        list(tf.data.Dataset.from_tensors(serialized).map(tfrecord.parse_example))

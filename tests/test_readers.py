import json

import numpy as np
import pytest
from PIL import Image

from conftest import shared_data
from ssd_tf import data

XML = """<annotation><filename>{name}.jpg</filename><size><width>{w}</width><height>{h}</height></size>
{objects}</annotation>"""
OBJ = ("<object><name>{cls}</name><difficult>{d}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
       "<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")


def _write_voc(root, items, classes=("cat", "dog")):
    """items: name -> (image writer or None, list of (cls, x0, y0, x1, y1, difficult)) or raw XML str."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name, (writer, objects) in items.items():
        if writer is not None:
            writer(root / "JPEGImages" / f"{name}.jpg")
        if isinstance(objects, str):
            (root / "Annotations" / f"{name}.xml").write_text(objects)
        else:
            objs = "".join(OBJ.format(cls=c, x0=a, y0=b, x1=x, y1=y, d=int(d)) for c, a, b, x, y, d in objects)
            (root / "Annotations" / f"{name}.xml").write_text(XML.format(name=name, w=60, h=40, objects=objs))
    (root / "ImageSets/Main/train.txt").write_text("\n".join(items) + "\n")
    return data.read_voc(root, "train", class_names=classes)


def _jpeg(mode="RGB", fmt="JPEG"):
    def write(path):
        arr = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
        Image.fromarray(arr).convert(mode).save(path, format=fmt)
    return write


def _truncated(path):
    _jpeg()(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


GOOD = [("cat", 5, 5, 30, 30, 0)]


def test_voc2012_sample():
    root = shared_data("voc2012_sample", "VOC2012")
    s = data.read_voc(root, "trainval")
    assert len(s) == 100 and s.num_objects == 273 and s.num_classes == 21
    assert sum(int(d.sum()) for d in s.difficult) == 38
    assert s.report.total == 0
    for boxes, labels in zip(s.boxes, s.labels):
        assert boxes.min() >= 0 and boxes.max() <= 1 and np.all(boxes[:, 2:] > boxes[:, :2])
        assert labels.min() >= 1 and labels.max() <= 20
    assert s.without_difficult().num_objects == 273 - 38


def test_raccoon_needs_its_class_list():
    root = shared_data("raccoon", "VOC2007")
    s = data.read_voc(root, "trainval", class_names=("raccoon",))
    assert len(s) == 200 and s.num_objects == 217 and s.class_names == ("background", "raccoon")
    with pytest.raises(ValueError, match="classes="):
        data.read_voc(root, "val")  # VOC's 20 classes by default: no raccoon among them


def test_coco_reader_matches_voc_boxes():
    root = shared_data("voc2012_sample")
    voc = data.read_voc(root / "VOC2012", "trainval")
    coco = data.read_coco(root / "coco" / "instances.json", root / "VOC2012" / "JPEGImages")
    assert len(coco) == 100 and coco.num_objects == 273
    # Category ids map to contiguous labels and back.
    assert coco.category_ids[1:] == tuple(sorted(coco.category_ids[1:]))
    def by_file(s):
        return {
            src.rsplit("/", 1)[-1]: sorted((s.class_names[lab], *np.round(b, 5)) for b, lab in zip(bs, ls))
            for src, bs, ls in zip(s.sources, s.boxes, s.labels)
        }
    assert by_file(voc) == by_file(coco)


def test_coco_crowd_ignored_and_broken_files(tmp_path):
    _jpeg()(tmp_path / "a.jpg")
    ann = {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 60, "height": 40}],
        "categories": [{"id": 90, "name": "z"}, {"id": 3, "name": "a"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 90, "bbox": [1, 2, 10, 20], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 3, "bbox": [0, 0, 60, 40], "iscrowd": 1},
            {"id": 3, "image_id": 7, "category_id": 3, "bbox": [5, 5, 0, 10], "iscrowd": 0},
        ],
    }
    (tmp_path / "ok.json").write_text(json.dumps(ann))
    s = data.read_coco(tmp_path / "ok.json", tmp_path)
    assert s.image_ids == [7] and s.labels[0].tolist() == [2]  # id 90 sorts after id 3
    assert s.category_ids == (0, 3, 90)
    np.testing.assert_allclose(s.boxes[0], [[1 / 60, 2 / 40, 11 / 60, 22 / 40]], rtol=1e-6)
    assert s.report.counts["invalid boxes"] == 1  # zero-width box, counted

    (tmp_path / "broken.json").write_text('{"images": [')
    with pytest.raises(ValueError, match=r"broken.json: broken JSON at line 1"):
        data.read_coco(tmp_path / "broken.json", tmp_path)
    del ann["annotations"][0]["bbox"]
    (tmp_path / "nofield.json").write_text(json.dumps(ann))
    with pytest.raises(ValueError, match=r"nofield.json: annotations\[0\].*'bbox'"):
        data.read_coco(tmp_path / "nofield.json", tmp_path)


def test_bad_voc_inputs_are_skipped_counted_and_named(tmp_path, capfd):
    s = _write_voc(tmp_path, {
        "good": (_jpeg(), GOOD),
        "png": (_jpeg(fmt="PNG"), GOOD),  # PNG bytes behind a .jpg name: fine
        "gray": (_jpeg("L"), GOOD),
        "cmyk": (_jpeg("CMYK"), GOOD),
        "truncated": (_truncated, GOOD),
        "missing": (None, GOOD),
        "brokenxml": (_jpeg(), "<annotation><object>"),
        "inverted": (_jpeg(), [("cat", 30, 5, 10, 30, 0), ("dog", 1, 1, 20, 20, 0)]),
        "outside": (_jpeg(), [("cat", 70, 5, 90, 30, 0), ("dog", -5, -5, 20, 45, 0)]),
        "empty": (_jpeg(), []),
        "unknown": (_jpeg(), [("horse", 1, 1, 20, 20, 0), ("cat", 1, 1, 20, 20, 1)]),
    })
    names = [src.rsplit("/", 1)[-1] for src in s.sources]
    # Readers check headers only (fast start-up): a truncated JPEG passes here, and the pipeline
    # skips and names it when it fails to decode.
    assert names == ["good.jpg", "png.jpg", "gray.jpg", "cmyk.jpg", "truncated.jpg", "inverted.jpg", "outside.jpg",
                     "empty.jpg", "unknown.jpg"]
    assert s.report.counts == {
        "unreadable images": 1, "broken annotations": 1, "invalid boxes": 2, "objects of unknown class": 1,
    }
    text = "\n".join(s.report.messages)
    for name in ("missing.jpg", "brokenxml.xml", "inverted.jpg", "outside.jpg", "unknown.xml"):
        assert name in text
    outside = s.boxes[names.index("outside.jpg")]
    np.testing.assert_allclose(outside, [[0, 0, 20 / 60, 1]], rtol=1e-6)  # clipped, not dropped
    assert s.difficult[names.index("unknown.jpg")].tolist() == [True]

    # Training: empty images and difficult-only images are skipped and counted; the truncated
    # image is left out of its batch and named.
    from ssd_tf.data import train_dataset
    capfd.readouterr()
    batches = list(train_dataset(s, 16, seed=0))
    assert batches[0][0].shape[0] == 6
    err = capfd.readouterr().err
    assert "skipped unreadable image" in err and str(tmp_path / "JPEGImages" / "truncated.jpg") in err
    assert s.report.counts["images without objects"] == 2  # "empty", and "unknown" once difficult is dropped
    assert "empty.jpg: no objects" in "\n".join(s.report.messages)
    # Declared lengths count what the pipeline really yields (Keras relies on them).
    from ssd_tf.data import validation_dataset
    val = validation_dataset(s, 4)
    assert int(val.cardinality()) == len(list(val)) == 2  # 7 usable images, one unreadable
    assert "truncated.jpg" in capfd.readouterr().err


def test_missing_split_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="train.txt"):
        data.read_voc(tmp_path, "train")


def test_synthetic_set_is_deterministic():
    a, b, c = data.make_synthetic(6, seed=3), data.make_synthetic(6, seed=3), data.make_synthetic(6, seed=4)
    assert a.sources == b.sources and a.sources != c.sources
    assert a.num_classes == 4 and a.num_objects >= 6
    for boxes, labels in zip(a.boxes, a.labels):
        assert boxes.min() >= 0 and boxes.max() <= 1 and np.all(boxes[:, 2:] > boxes[:, :2])
        assert set(labels.tolist()) <= {1, 2, 3}


def test_read_dataset_coco_folder_layout(tmp_path):
    root = shared_data("voc2012_sample")
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val.json").write_bytes((root / "coco" / "instances.json").read_bytes())
    (tmp_path / "val").symlink_to(root / "VOC2012" / "JPEGImages")
    s = data.read_dataset("coco", tmp_path, "val")
    assert len(s) == 100 and s.num_objects == 273 and s.num_classes == 21
    with pytest.raises(ValueError, match=r"data_dir="):
        data.read_dataset("coco", None, "val")


def test_voc_can_drop_difficult_objects_when_reading():
    root = shared_data("voc2012_sample", "VOC2012")
    s = data.read_voc(root, "trainval", keep_difficult=False)
    assert len(s) == 100 and s.num_objects == 273 - 38 and not any(d.any() for d in s.difficult)

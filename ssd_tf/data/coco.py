"""COCO reader: instances JSON + image folder -> DetectionSet (category ids -> 1..C-1)."""

import json
import pathlib

import numpy as np

from ssd_tf.data.detection_set import SkipReport, assemble


def load_json(path):
    """json.load with an error that names the file and the place it breaks."""
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: broken JSON at line {err.lineno} column {err.colno}: {err.msg}") from None


def _field(record, key, where):
    if key not in record:
        raise ValueError(f"{where}: missing field {key!r}")
    return record[key]


def read_coco(annotations, image_dir):
    """Read a COCO instances file.

    Contiguous labels follow the order of category ids: the smallest id becomes 1. Crowd
    annotations (``iscrowd: 1``) are left out of training; evaluation scores against the file
    itself (``annotation_file``), where they are regions whose detections are ignored.
    Broken JSON or missing required fields raise ValueError naming the file and field; bad boxes
    and unreadable images are skipped with a warning and counted in ``.report``.
    """
    annotations = pathlib.Path(annotations)
    data = load_json(annotations)
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{annotations}: missing or non-list field {key!r}")
    categories = sorted(data["categories"], key=lambda c: _field(c, "id", f"{annotations}: category"))
    cat_to_label = {c["id"]: i + 1 for i, c in enumerate(categories)}
    report = SkipReport(held=True)  # logged by assemble, once the whole set is read

    images = {}
    for i, img in enumerate(data["images"]):
        where = f"{annotations}: images[{i}]"
        images[_field(img, "id", where)] = img
        _field(img, "file_name", where)
    per_image = {image_id: [] for image_id in images}
    for i, ann in enumerate(data["annotations"]):
        where = f"{annotations}: annotations[{i}] (id {ann.get('id')})"
        image_id = _field(ann, "image_id", where)
        if ann.get("iscrowd", 0):
            continue
        if image_id not in images:
            report.skip("annotations of unknown images", f"{where}: image_id {image_id} not in images")
            continue
        cat = _field(ann, "category_id", where)
        if cat not in cat_to_label:
            report.skip("annotations of unknown categories", f"{where}: category_id {cat} not in categories")
            continue
        bbox = _field(ann, "bbox", where)
        if not (isinstance(bbox, list) and len(bbox) == 4):
            report.skip("invalid boxes", f"{where}: bbox must be [x, y, w, h], got {bbox!r}")
            continue
        x, y, w, h = (float(v) for v in bbox)
        per_image[image_id].append(([x, y, x + w, y + h], cat_to_label[cat]))

    entries = []
    for image_id, img in images.items():
        anns = per_image[image_id]
        entries.append((str(pathlib.Path(image_dir) / img["file_name"]), image_id,
                        np.array([a[0] for a in anns], np.float64).reshape(-1, 4), [a[1] for a in anns],
                        np.zeros(len(anns), bool)))
    return assemble(
        entries, report,
        class_names=("background",) + tuple(c.get("name", str(c["id"])) for c in categories),
        category_ids=(0,) + tuple(c["id"] for c in categories),
        name=str(annotations),
        annotation_file=str(annotations),
    )


def coco_ground_truth(detection_set):
    """DetectionSet -> COCO instances dict (bbox in pixels, [x, y, w, h])."""
    images, annotations = [], []
    for i in range(len(detection_set)):
        height, width = (int(v) for v in detection_set.sizes[i])
        image_id = int(detection_set.image_ids[i])
        images.append({"id": image_id, "width": width, "height": height, "file_name": detection_set.describe(i)})
        boxes_pixels = detection_set.boxes[i] * np.array([width, height, width, height], np.float64)
        for box, label, difficult in zip(boxes_pixels, detection_set.labels[i], detection_set.difficult[i]):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id,
                "category_id": int(detection_set.category_ids[int(label)]),
                "bbox": [float(box[0]), float(box[1]), w, h], "area": w * h, "iscrowd": int(bool(difficult)),
            })
    categories = [{"id": int(cid), "name": name}
                  for cid, name in zip(detection_set.category_ids[1:], detection_set.class_names[1:])]
    return {"images": images, "annotations": annotations, "categories": categories}

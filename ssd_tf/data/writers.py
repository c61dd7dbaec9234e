"""Write a DetectionSet in COCO or Ultralytics YOLO layout, images copied or symlinked.

COCO: ``annotations/instances_<split>.json`` and the images in ``<split>/`` (the layout
``read_coco`` and pycocotools read). YOLO: ``data.yaml``, ``images/<split>/`` and
``labels/<split>/<stem>.txt`` (the layout ``read_yolo`` and Ultralytics read).
"""

import io
import json
import os
import pathlib
import shutil

import numpy as np
from PIL import Image

from ssd_tf.data.coco import coco_ground_truth, load_json
from ssd_tf.progress import Progress

IMAGE_MODES = ("copy", "symlink")
YOLO_ROLES = ("train", "val", "test")  # data.yaml's split keys, given to the splits in order


def _file_names(detection_set):
    """A unique file name per image: its own base name, numbered where two would collide
    (the built-in set's images, held as bytes, are named by id with their format's suffix)."""
    names, seen = [], set()
    for i, source in enumerate(detection_set.sources):
        if isinstance(source, str):
            name = os.path.basename(source)
        else:
            fmt = Image.open(io.BytesIO(source)).format.lower()
            name = f"{detection_set.image_ids[i]:06d}.{'jpg' if fmt == 'jpeg' else fmt}"
        stem = os.path.splitext(name)[0]
        if stem in seen:  # YOLO pairs an image with <stem>.txt: stems must differ, not only names
            name = f"{i:06d}_{name}"
            stem = os.path.splitext(name)[0]
        seen.add(stem)
        names.append(name)
    return names


def place_image(source, target, images="copy"):
    """Put an image file (or encoded bytes) at ``target``: a copy, or a symlink to the absolute source."""
    if images not in IMAGE_MODES:
        raise ValueError(f"images={images!r}: one of {', '.join(IMAGE_MODES)}")
    if not isinstance(source, str):
        pathlib.Path(target).write_bytes(source)
    elif images == "symlink":
        os.symlink(os.path.abspath(source), target)
    else:
        shutil.copyfile(source, target)


def _place_all(detection_set, folder, images, progress):
    folder.mkdir(parents=True, exist_ok=True)
    names = _file_names(detection_set)
    bar = Progress(len(names), f"writing {folder}") if progress else None
    for source, name in zip(detection_set.sources, names):
        place_image(source, folder / name, images)
        if bar:
            bar.update()
    if bar:
        bar.close()
    return names


def write_coco_split(detection_set, output, split, images="copy", progress=True):
    """Write ``output/annotations/instances_<split>.json`` and the images in ``output/<split>/``.

    A set read from a COCO file keeps that file's annotations (crowd regions and segmentations
    included) for the images it kept; other sets are converted as evaluation converts them
    (``coco_ground_truth``: VOC ``difficult`` objects become ``iscrowd: 1``). Image ids start at 1.
    Returns the instances file's path.
    """
    output = pathlib.Path(output)
    names = _place_all(detection_set, output / split, images, progress)
    if detection_set.annotation_file:
        source = load_json(detection_set.annotation_file)
        kept = {int(i): name for i, name in zip(detection_set.image_ids, names)}
        truth = dict(source, images=[dict(im, file_name=kept[im["id"]]) for im in source["images"]
                                     if im["id"] in kept],
                     annotations=[a for a in source["annotations"] if a["image_id"] in kept])
    else:
        truth = coco_ground_truth(detection_set)
        new_id = {int(old): i + 1 for i, old in enumerate(detection_set.image_ids)}
        for image, name in zip(truth["images"], names):
            image.update(id=new_id[image["id"]], file_name=name)
        for ann in truth["annotations"]:
            ann["image_id"] = new_id[ann["image_id"]]
    path = output / "annotations" / f"instances_{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(truth))
    return path


def yolo_lines(boxes, labels):
    """Label file text: ``class cx cy w h`` per box (YOLO class = our label - 1), 8 decimals
    (1e-8 of the side: well under 0.01 px for any image)."""
    lines = []
    for (x0, y0, x1, y1), label in zip(np.asarray(boxes, np.float64), labels):
        lines.append(f"{int(label) - 1} {(x0 + x1) / 2:.8f} {(y0 + y1) / 2:.8f} {x1 - x0:.8f} {y1 - y0:.8f}\n")
    return "".join(lines)


def write_yolo_split(detection_set, output, split, images="copy", progress=True):
    """Write ``output/images/<split>/`` and ``output/labels/<split>/*.txt`` (an empty file for an
    image without boxes). YOLO has no ``difficult`` flag: such objects are written as ordinary
    boxes. Returns the number of difficult objects so written."""
    output = pathlib.Path(output)
    names = _place_all(detection_set, output / "images" / split, images, progress)
    labels_dir = output / "labels" / split
    labels_dir.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (labels_dir / (os.path.splitext(name)[0] + ".txt")).write_text(
            yolo_lines(detection_set.boxes[i], detection_set.labels[i]))
    return int(sum(np.sum(d) for d in detection_set.difficult))


def yolo_roles(splits):
    """{data.yaml key: split}: the splits in YOLO's train, val, test order; ValueError for more than three."""
    if len(splits) > len(YOLO_ROLES):
        raise ValueError(f"splits={','.join(splits)}: a YOLO data.yaml has at most {len(YOLO_ROLES)} "
                         f"({', '.join(YOLO_ROLES)})")
    return dict(zip(YOLO_ROLES, splits))


def write_yolo_yaml(output, splits, class_names):
    """``output/data.yaml``: the splits in YOLO's train, val, test order, and ``names`` as an
    {id: name} dict. No ``path:`` key, so Ultralytics takes the yaml's own folder as the root."""
    import yaml

    config = {role: f"images/{split}" for role, split in yolo_roles(splits).items()}
    config["nc"] = len(class_names) - 1
    config["names"] = {i: name for i, name in enumerate(class_names[1:])}
    path = pathlib.Path(output) / "data.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path

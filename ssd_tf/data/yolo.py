"""Ultralytics YOLO layout reader: data.yaml + images/<split>/ + labels/<split>/*.txt -> DetectionSet.

The layout Roboflow, Label Studio and CVAT export::

    data.yaml            names: [cat, dog] (or {0: cat, 1: dog}); train: images/train; val: images/val
    images/train/a.jpg
    labels/train/a.txt   one "class cx cy w h" line per box, normalised to [0, 1]

A label file's path is its image's with the last ``images`` folder replaced by ``labels`` and the
suffix by ``.txt``, as Ultralytics finds it. YOLO class ``k`` becomes label ``k + 1`` (0 is
background here). Segmentation lines (``class x1 y1 x2 y2 ...``, three points or more) are read as
their polygon's bounding box, as Ultralytics does when it trains a detector on them.
"""

import os
import pathlib

import numpy as np

from ssd_tf.data.images import IMAGE_SUFFIXES

YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml")
# Labelling tools round coordinates and some write 1.0000001: a corner this far outside [0, 1]
# (normalised) is clipped; further out the box is skipped as broken.
TOLERANCE = 0.01


def find_yaml(data_dir):
    """The data set's yaml: ``data_dir`` itself if it is a file, else its data.yaml (or data.yml)."""
    path = pathlib.Path(data_dir)
    if path.is_file():
        return path
    if not path.exists():
        raise FileNotFoundError(f"{path}: does not exist (give the folder holding data.yaml, or the yaml file)")
    for name in YAML_NAMES:
        if (path / name).is_file():
            return path / name
    raise FileNotFoundError(f"{path}: no data.yaml here (a YOLO data set's folder holds data.yaml naming its "
                            "classes and splits)")


def read_yaml(path):
    """-> (root folder, class names tuple, the yaml dict). ``names`` may be a list or a {id: name} dict."""
    import yaml  # PyYAML: data.yaml files use YAML's flow lists, dicts, quoting and comments

    try:
        config = yaml.safe_load(pathlib.Path(path).read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: broken YAML ({' '.join(str(err).split())})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a mapping with names: and train:/val: entries")
    names = config.get("names")
    if isinstance(names, dict):
        try:
            ids = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: names: keys must be class ids 0, 1, ...") from None
        if ids != list(range(len(ids))):
            raise ValueError(f"{path}: names: ids must be 0..{len(ids) - 1} without gaps, got {ids}")
        names = [names[k] if k in names else names[str(k)] for k in ids]
    if not isinstance(names, list) or not names:
        raise ValueError(f"{path}: missing names: (a list of class names, or a dict of id: name)")
    names = tuple(str(n) for n in names)
    if "nc" in config and config["nc"] != len(names):
        raise ValueError(f"{path}: nc: {config['nc']} but names: lists {len(names)} classes")
    root = path.parent
    if config.get("path"):
        given = pathlib.Path(str(config["path"]))
        # Ultralytics resolves a relative path: against its datasets folder; the yaml's folder is
        # where an exported data set sits, so look there first.
        root = given if given.is_absolute() else next(
            (p for p in (path.parent / given, pathlib.Path.cwd() / given) if p.is_dir()), path.parent / given)
    return root, names, config


def split_entry(config, split, yaml_path):
    """The yaml's ``split`` entry; ValueError naming the file and the entries it has when it is missing."""
    if not config.get(split):
        present = [k for k in ("train", "val", "test") if config.get(k)]
        raise ValueError(f"{yaml_path}: no {split}: entry (split={split!r}; it has {', '.join(present) or 'none'})")
    return config[split]


def split_images(root, entry, where):
    """Image paths of a split entry: a folder (searched recursively), a .txt list of image paths
    (``./x`` relative to the list's folder, other relative paths to ``root``), or a list of those."""
    if isinstance(entry, list):
        return [p for e in entry for p in split_images(root, e, where)]
    path = pathlib.Path(str(entry))
    path = path if path.is_absolute() else root / path
    if path.is_dir():
        return sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if path.is_file() and path.suffix == ".txt":
        images = []
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            p = pathlib.Path(line)
            if not p.is_absolute():
                p = path.parent / line[2:] if line.startswith("./") else root / p
            images.append(str(p))
        return images
    raise FileNotFoundError(f"{where}: {path} does not exist (an image folder or a .txt list of images)")


def label_path(image_path):
    """Ultralytics' rule: the last /images/ in the path becomes /labels/, the suffix .txt."""
    images, labels = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    head, sep, tail = str(image_path).rpartition(images)
    path = head + labels + tail if sep else str(image_path)
    return str(pathlib.Path(path).with_suffix(".txt"))


def parse_label_file(path, num_classes, report):
    """-> (boxes [n, 4] normalised xyxy, yolo class ids [n]). Bad lines are skipped into ``report``."""
    boxes, ids = [], []
    try:
        lines = pathlib.Path(path).read_text().splitlines()
    except FileNotFoundError:
        return np.zeros((0, 4)), np.zeros(0, np.int64)  # an image without a label file has no boxes
    except (OSError, UnicodeDecodeError) as err:
        report.skip("unreadable label files", f"{path}: unreadable ({err})")
        return np.zeros((0, 4)), np.zeros(0, np.int64)
    for n, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}: line {n}"
        try:
            values = [float(v) for v in fields]
        except ValueError:
            report.skip("malformed label lines", f"{where}: not numbers: {line.strip()!r}")
            continue
        if len(values) == 5:
            _, cx, cy, w, h = values
            box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        elif len(values) >= 7 and len(values) % 2 == 1:  # a segmentation polygon
            xs, ys = values[1::2], values[2::2]
            box = [min(xs), min(ys), max(xs), max(ys)]
        else:
            report.skip("malformed label lines", f"{where}: {len(values)} numbers (expected class cx cy w h, "
                                                 "or class and polygon points)")
            continue
        cls = values[0]
        if cls != int(cls) or not 0 <= cls < num_classes:
            report.skip("class ids out of range", f"{where}: class {fields[0]} not in 0..{num_classes - 1}")
            continue
        if not all(np.isfinite(box)) or min(box) < -TOLERANCE or max(box) > 1 + TOLERANCE:
            report.skip("coordinates outside [0, 1]", f"{where}: box {[round(v, 4) for v in box]} (xyxy) "
                                                      "is not normalised to [0, 1]")
            continue
        box = list(np.clip(box, 0.0, 1.0))
        if box[2] <= box[0] or box[3] <= box[1]:
            report.skip("zero-area boxes", f"{where}: box has no area")
            continue
        boxes.append(box)
        ids.append(int(cls))
    return np.array(boxes, np.float64).reshape(-1, 4), np.array(ids, np.int64)


def read_yolo(data_dir, split="train", class_names=None):
    """Read one split of an Ultralytics YOLO data set.

    Args:
      data_dir: the folder holding ``data.yaml``, or the yaml file.
      split: a key of the yaml (``train``, ``val``, ``test``).
      class_names: if given, must equal the yaml's ``names`` (a check, for callers that pass them).
    Returns a DetectionSet; images are numbered in path order. Malformed lines, class ids out of
    range, coordinates outside [0, 1] and zero-area boxes are skipped with a warning and counted.
    """
    from ssd_tf.data.detection_set import SkipReport, assemble  # TensorFlow: the yaml helpers above load none

    yaml_path = find_yaml(data_dir)
    root, names, config = read_yaml(yaml_path)
    if class_names and tuple(class_names) != names:
        raise ValueError(f"classes={','.join(class_names)} differ from {yaml_path}'s names: {','.join(names)}")
    images = split_images(root, split_entry(config, split, yaml_path), f"{yaml_path}: {split}")
    report = SkipReport(held=True)  # logged by assemble, once the whole set is read
    entries = []
    for path in images:
        boxes, ids = parse_label_file(label_path(path), len(names), report)
        entries.append((path, len(entries), boxes, ids + 1, np.zeros(len(ids), bool)))
    return assemble(entries, report, ("background",) + names, range(len(names) + 1), f"{yaml_path} ({split})",
                    normalised=True)

"""Pascal VOC reader: VOCdevkit/VOC20xx + split name -> DetectionSet."""

import collections
import pathlib
import xml.etree.ElementTree as ET

import numpy as np

from ssd_tf.data.detection_set import SkipReport, assemble

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)


def _text(node, tag, where):
    child = node.find(tag)
    if child is None or child.text is None:
        raise ValueError(f"{where}: missing <{tag}>")
    return child.text.strip()


def _parse_xml(path, class_index, report, unknown):
    """-> (filename, boxes_pixels [n, 4], labels [n], difficult [n]); objects of unknown class skipped."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as err:
        raise ValueError(f"{path}: broken XML ({err})") from None
    filename = root.findtext("filename", default="").strip()
    boxes, labels, difficult = [], [], []
    for i, obj in enumerate(root.findall("object")):
        where = f"{path}: object {i}"
        name = _text(obj, "name", where)
        if name not in class_index:
            unknown[name] += 1
            report.skip("objects of unknown class", f"{where}: class {name!r} not in the class list")
            continue
        bnd = obj.find("bndbox")
        if bnd is None:
            raise ValueError(f"{where}: missing <bndbox>")
        try:
            box = [float(_text(bnd, tag, where)) for tag in ("xmin", "ymin", "xmax", "ymax")]
        except ValueError as err:
            raise ValueError(f"{where}: bad <bndbox> ({err})") from None
        boxes.append(box)
        labels.append(class_index[name])
        difficult.append(obj.findtext("difficult", default="0").strip() == "1")
    return filename, np.array(boxes, np.float64).reshape(-1, 4), np.array(labels, np.int32), np.array(difficult, bool)


def read_voc(root, split="trainval", class_names=VOC_CLASSES, keep_difficult=True):
    """Read a Pascal VOC folder (the one holding Annotations/, JPEGImages/, ImageSets/Main/).

    Args:
      root: e.g. ``VOCdevkit/VOC2012``.
      split: name of ``ImageSets/Main/<split>.txt``.
      class_names: object class names, in label order 1..C-1.
      keep_difficult: keep ``difficult`` objects, flagged in ``difficult`` (evaluation ignores them,
        training drops them); False drops them here.
    Returns a DetectionSet. Broken XML, unreadable images and invalid boxes are skipped with a
    warning naming the file and counted in ``.report``; a missing split file raises.

    Boxes are VOC's pixel corners divided by the image size (no 1-pixel shift), so they equal the
    data sets' COCO conversions (x = xmin, w = xmax - xmin).
    """
    root = pathlib.Path(root)
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        raise FileNotFoundError(f"{split_file}: split file not found (is {root} a VOC20xx folder?)")
    ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
    class_index = {name: i + 1 for i, name in enumerate(class_names)}
    report = SkipReport(held=True)  # logged by assemble, once the whole set is read
    unknown = collections.Counter()  # class names of the objects skipped as unknown

    entries = []
    for image_id in ids:
        xml = root / "Annotations" / f"{image_id}.xml"
        try:
            filename, boxes, labels, difficult = _parse_xml(xml, class_index, report, unknown)
        except ValueError as err:
            report.skip("broken annotations", str(err))
            continue
        image = root / "JPEGImages" / (filename or f"{image_id}.jpg")
        if filename and not image.exists() and (root / "JPEGImages" / f"{image_id}.jpg").exists():
            image = root / "JPEGImages" / f"{image_id}.jpg"  # XML <filename> is often stale
        # VOC ids are strings ("2008_000123"): number the images instead.
        entries.append((str(image), len(entries), boxes, labels, difficult))

    if entries and report.counts["objects of unknown class"] and not any(len(e[3]) for e in entries):
        found = [name for name, _ in unknown.most_common(10)]
        raise ValueError(
            f"{root}: no object has a class in the class list ({', '.join(class_names[:5])}"
            f"{', ...' if len(class_names) > 5 else ''}); its objects' classes are {', '.join(found[:10])}: "
            "pass them as classes= (comma-separated)"
        )
    if not entries and report.total and report.counts["broken annotations"] == report.total:
        first = report.messages[0]
        raise ValueError(f"{root}: none of the {report.total} annotation files of split {split!r} could be read "
                         f"(first: {first})")
    dataset = assemble(entries, report, ("background",) + tuple(class_names), range(len(class_names) + 1),
                       str(root))
    return dataset if keep_difficult else dataset.without_difficult()

"""DetectionSet: a parsed data set held in memory, and the report of what parsing skipped.

Readers (voc, coco, synthetic) parse annotations once into a DetectionSet; the pipeline turns it
into a tf.data.Dataset. Boxes are normalised xyxy (see ssd_tf.core.boxes).
"""

import collections
import dataclasses
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf

from ssd_tf.data.images import check_image

log = logging.getLogger("ssd_tf.data")



class SkipReport:
    """Counts and remembers what a reader skipped, so nothing is lost silently.

    Every message is kept (for ``skipped.txt``); only the first ``LOGGED`` are logged, then one
    line with the count, so a thousand bad files can't bury the cause. ``held``: log nothing until
    ``release()`` (readers hold their messages until they have read everything, so that a set
    they then refuse as a whole gives one error, not a flood before it).
    """

    LOGGED = 5

    def __init__(self, held=False):
        self.counts = collections.Counter()
        self.messages = []
        self.held = held
        self._logged = 0

    def skip(self, reason, message):
        self.counts[reason] += 1
        self.messages.append(message)
        if not self.held:
            self._log(message)

    def _log(self, message):
        if self._logged < self.LOGGED:
            log.warning("skipped: %s", message)
        elif self._logged == self.LOGGED:
            log.warning("skipped more: only the first %d are shown here; each is counted and listed (a run's "
                        "skipped.txt)", self.LOGGED)
        self._logged += 1

    def release(self):
        """Log what was held (the first few), and log further skips as they come."""
        if self.held:
            self.held = False
            for message in self.messages:
                self._log(message)
        return self

    @property
    def total(self):
        return sum(self.counts.values())

    def summary(self):
        if not self.counts:
            return "nothing skipped"
        return "skipped " + ", ".join(f"{n} {reason}" for reason, n in sorted(self.counts.items()))


@dataclasses.dataclass
class DetectionSet:
    """Images and their ground truth, parsed once.

    Attributes:
      sources: per image, a file path, or encoded image bytes (built-in set).
      boxes: per image, float32 [n, 4] normalised xyxy.
      labels: per image, int32 [n] contiguous classes 1..C-1.
      difficult: per image, bool [n] (VOC ``difficult``; kept out of training by default).
      image_ids: per image, int id (COCO id, or a running index).
      sizes: per image, (height, width) in pixels of the original image.
      class_names: names of classes 0..C-1; index 0 is "background".
      category_ids: data set category id of each contiguous class 1..C-1 (index 0: unused 0).
      report: what parsing skipped.
      annotation_file: the COCO instances file the set was read from (None for VOC and the
        built-in set); evaluation scores against it, as the official COCO metric does.
    """

    sources: list
    boxes: list
    labels: list
    difficult: list
    image_ids: list
    sizes: list
    class_names: tuple
    category_ids: tuple
    report: SkipReport = dataclasses.field(default_factory=SkipReport)
    name: str = "dataset"
    annotation_file: str | None = None

    def __len__(self):
        return len(self.sources)

    @property
    def num_classes(self):
        """Classes including background."""
        return len(self.class_names)

    @property
    def num_objects(self):
        return int(sum(len(labels) for labels in self.labels))

    def without_difficult(self):
        """Copy with difficult objects removed (for training)."""
        keep = [~d for d in self.difficult]
        return dataclasses.replace(
            self,
            boxes=[b[k] for b, k in zip(self.boxes, keep)],
            labels=[labels[k] for labels, k in zip(self.labels, keep)],
            difficult=[d[k] for d, k in zip(self.difficult, keep)],
        )

    def without_empty(self):
        """Copy without images that have no objects (training can't learn from them); each one
        dropped is reported."""
        for i in range(len(self)):
            if not len(self.labels[i]):
                self.report.skip("images without objects", f"{self.describe(i)}: no objects")
        return self.subset([i for i, labels in enumerate(self.labels) if len(labels)])

    def subset(self, indices):
        pick = lambda xs: [xs[i] for i in indices]  # noqa: E731
        return dataclasses.replace(
            self, sources=pick(self.sources), boxes=pick(self.boxes), labels=pick(self.labels),
            difficult=pick(self.difficult), image_ids=pick(self.image_ids), sizes=pick(self.sizes),
        )

    def describe(self, index):
        src = self.sources[index]
        return src if isinstance(src, str) else f"{self.name} image {self.image_ids[index]}"

    def to_tf(self):
        """tf.data.Dataset of dicts: source (string), boxes [n, 4], labels [n], difficult [n],
        image_id (int64), size (int32 [2] = height, width)."""
        lengths = [len(labels) for labels in self.labels]

        def ragged(parts, dtype, width=None):
            values = np.concatenate(parts) if parts else np.zeros((0,) + ((width,) if width else ()))
            return tf.RaggedTensor.from_row_lengths(tf.constant(values, dtype), tf.constant(lengths, tf.int64))

        return tf.data.Dataset.from_tensor_slices(
            {
                "source": tf.constant(self.sources, tf.string),
                "boxes": ragged([b.reshape(-1, 4) for b in self.boxes], tf.float32, 4),
                "labels": ragged(self.labels, tf.int32),
                "difficult": ragged(self.difficult, tf.bool),
                "image_id": tf.constant(self.image_ids, tf.int64),
                "size": tf.constant(np.array(self.sizes, np.int32).reshape(-1, 2)),
            }
        )


def check_images(paths, workers=4):
    """check_image (header only) over many paths in threads.

    Returns a list of (height, width) or the ValueError for each path.
    """
    def one(p):
        try:
            return check_image(p)
        except ValueError as err:
            return err

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, paths))


def clean_boxes_pixels(boxes_pixels, height, width, where, report):
    """Validate pixel xyxy boxes against the image; return (normalised boxes, keep mask).

    Boxes slightly outside the image (annotation tools' off-by-one) are clipped; boxes with no
    area inside the image, or with max <= min, are dropped with a counted warning naming ``where``.
    """
    boxes_pixels = np.asarray(boxes_pixels, np.float64).reshape(-1, 4)
    keep = np.ones(len(boxes_pixels), bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes_pixels):
        if not np.all(np.isfinite([x0, y0, x1, y1])):
            reason, text = "invalid boxes", f"non-finite box {[x0, y0, x1, y1]}"
        elif x1 <= x0 or y1 <= y0:
            reason, text = "invalid boxes", f"box {[x0, y0, x1, y1]} has max <= min"
        elif x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            reason, text = "invalid boxes", f"box {[x0, y0, x1, y1]} lies outside the {width}x{height} image"
        else:
            continue
        keep[i] = False
        report.skip(reason, f"{where}: object {i}: {text}")
    scale = np.array([width, height, width, height], np.float64)
    normalised = np.clip(boxes_pixels / scale, 0.0, 1.0).astype(np.float32)
    return normalised, keep


def assemble(entries, report, class_names, category_ids, name, annotation_file=None, normalised=False):
    """Turn parsed annotations into a DetectionSet: every image's header checked, boxes cleaned.

    ``entries``: (image path, image id, boxes_pixels [n, 4], labels [n], difficult [n]) per image.
    With ``normalised``, the boxes are normalised xyxy instead of pixels (YOLO labels).
    Unreadable images and invalid boxes are skipped into ``report``.
    """
    entries = list(entries)
    out = dict(sources=[], boxes=[], labels=[], difficult=[], image_ids=[], sizes=[])
    for (path, image_id, boxes, labels, difficult), size in zip(entries, check_images([e[0] for e in entries])):
        if isinstance(size, ValueError):
            report.skip("unreadable images", str(size))
            continue
        if normalised:
            boxes = np.asarray(boxes, np.float64).reshape(-1, 4) * np.array([size[1], size[0]] * 2, np.float64)
        norm, keep = clean_boxes_pixels(boxes, size[0], size[1], path, report)
        out["sources"].append(path)
        out["boxes"].append(norm[keep])
        out["labels"].append(np.asarray(labels, np.int32)[keep])
        out["difficult"].append(np.asarray(difficult, bool)[keep])
        out["image_ids"].append(int(image_id))
        out["sizes"].append(size)
    return DetectionSet(**out, class_names=tuple(class_names), category_ids=tuple(category_ids),
                        report=report.release(), name=name, annotation_file=annotation_file)

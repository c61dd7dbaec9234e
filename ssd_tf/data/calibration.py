"""Images for int8 calibration, read from a training set and resized as the model sees them."""

import logging
import pathlib

import numpy as np

from ssd_tf.data import pipeline
from ssd_tf.data.images import IMAGE_SUFFIXES, load_image
from ssd_tf.data.resize import to_uint8_input
from ssd_tf.data.synthetic import builtin_split
from ssd_tf.data.tfrecord import read_tfrecords
from ssd_tf.progress import track

log = logging.getLogger(__name__)


def calibration_images(source, count=300, seed=0):
    """Up to ``count`` uint8 [300, 300, 3] images for int8 calibration, resized as the model sees
    them: from a VOC20xx folder (its train split's images, else trainval's), a folder of this
    project's TFRecords (its train split), any other folder of images (searched recursively), or
    "synthetic" (the built-in training set); a random ``count`` of them, seeded.

    ValueError before any conversion when the source is missing or holds no readable image;
    unreadable images are skipped with a warning.
    """
    if str(source) == "synthetic":
        detection_set = builtin_split("train", max(count, 4), seed)
        batches = pipeline.eval_dataset(detection_set, 1, resize=False).take(count)
        return [to_uint8_input(image[0]) for image, _ in batches]
    folder = pathlib.Path(source)
    if not folder.is_dir():
        raise ValueError(f"calibration_data={folder}: no such folder (give a folder of training images, "
                         "a TFRecord folder, or 'synthetic')")
    voc_split = next((folder / "ImageSets" / "Main" / f"{name}.txt" for name in ("train", "trainval")
                      if (folder / "ImageSets" / "Main" / f"{name}.txt").is_file()), None)
    if voc_split is not None and (folder / "JPEGImages").is_dir():  # a VOC folder: its training images
        ids = [line.split()[0] for line in voc_split.read_text().splitlines() if line.strip()]
        files = [folder / "JPEGImages" / f"{i}.jpg" for i in ids]
        images = _readable(files, count, seed)
    elif list(folder.glob("*.tfrecord*")):
        detection_set = read_tfrecords(folder, "train")
        batches = pipeline.eval_dataset(detection_set, 1, resize=False).take(count)
        images = [to_uint8_input(image[0]) for image, _ in batches if len(image)]
    else:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        images = _readable(files, count, seed)
    if not images:
        raise ValueError(f"calibration_data={folder}: no readable images there")
    return images


def _readable(files, count, seed):
    """Model-input images of a random ``count`` of ``files`` (seeded); unreadable ones skipped with a warning."""
    files = [files[i] for i in sorted(np.random.default_rng(seed).permutation(len(files))[:count])]
    images = []
    for path in track(files, len(files), "calibration images"):
        try:
            images.append(to_uint8_input(load_image(path)))
        except (ValueError, FileNotFoundError) as err:
            log.warning("calibration: skipped %s", err)
    if len(images) < len(files):
        log.warning("calibration: %d of %d images unreadable, skipped", len(files) - len(images), len(files))
    return images

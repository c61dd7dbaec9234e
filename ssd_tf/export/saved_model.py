"""Export a SavedModel for TF Serving (saved_models/<name>/<version>/).

SavedModel signatures:
``serving_default``: ``image_bytes`` tf.string [B] (declared any-rank so a wrong rank gets a clear
error; encoded JPEG/PNG/GIF/BMP/WebP; TF Serving's REST API takes them as ``{"b64": ...}``).
``serve_images``: ``images`` uint8 [B, H, W, 3], any size.
Both resize to 300x300 inside, run the model and per-class NMS, and return
``detection_boxes`` [B, K, 4] normalised xyxy, ``detection_scores`` [B, K],
``detection_classes`` [B, K] int32 (1..C-1; 0 in padding), ``num_detections`` [B] int32.
``assets.extra/`` holds ``classes.json`` and TF Serving's warm-up requests.

Built as a ``tf.Module`` saved with ``tf.saved_model.save``: variables are stored once
(``keras.export.ExportArchive`` and ``model.export`` store them twice). A model trained in float16
or bfloat16 is exported in float32 unless ``dtype`` says otherwise: CPUs serve float16 slowly.

Nothing is overwritten: an existing version folder is an error.
"""

import logging
import pathlib
import shutil
import tempfile

import tensorflow as tf

from ssd_tf.core.classes import CLASSES_FILE, write_classes
from ssd_tf.export.prepare import model_classes
from ssd_tf.paths import refuse_existing
from ssd_tf.export.serving_warmup import write_warmup
from ssd_tf.inference.serving import ServingModule

log = logging.getLogger(__name__)


def export_saved_model(model, export_dir, class_names=None, category_ids=None, model_name="", **thresholds):
    """Write a SavedModel with both signatures, classes.json and warm-up requests to ``export_dir``.

    FileExistsError when ``export_dir`` exists and is not empty. Written through a staging folder
    beside it, so a failed export leaves nothing behind. Class names default to generic ones.
    """
    export_dir = pathlib.Path(export_dir)
    refuse_existing(export_dir, "choose another version, or leave the version out to write the next one")
    export_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{export_dir.name}-", dir=export_dir.parent))
    try:
        module = ServingModule(model, **thresholds)
        tf.saved_model.save(module, str(staging), signatures={
            "serving_default": module.serve_bytes.get_concrete_function(),
            "serve_images": module.serve_images.get_concrete_function(),
        })
        (staging / "assets.extra").mkdir(exist_ok=True)
        write_classes(staging / "assets.extra" / CLASSES_FILE, *model_classes(model, class_names, category_ids))
        write_warmup(staging, model_name)
        if export_dir.exists():
            export_dir.rmdir()  # empty, checked above
        staging.rename(export_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return export_dir


def next_version(model_root):
    """1 + the highest integer version folder under ``model_root`` (1 when none)."""
    root = pathlib.Path(model_root)
    versions = [int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit()] if root.exists() else []
    return max(versions, default=0) + 1

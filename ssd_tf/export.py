"""Export for TF Serving: saved_models/<name>/<version>/ with two signatures.

``serving_default``: ``image_bytes`` tf.string [B] (declared any-rank so a wrong rank gets a clear error;
encoded JPEG/PNG/GIF/BMP/WebP; TF Serving's
REST API takes them as ``{"b64": ...}``). ``serve_images``: ``images`` uint8 [B, H, W, 3], any size.
Both resize to 300x300 inside, run the model and per-class NMS, and return
``detection_boxes`` [B, K, 4] normalised xyxy, ``detection_scores`` [B, K],
``detection_classes`` [B, K] int32 (1..C-1; 0 in padding), ``num_detections`` [B] int32.

Built as a ``tf.Module`` saved with ``tf.saved_model.save``: variables are stored once
(``keras.export.ExportArchive`` and ``model.export`` store them twice).
"""

import pathlib
import shutil

import tensorflow as tf

from ssd_tf import artifacts
from ssd_tf.serving import ServingModule


def export_saved_model(model, export_dir, class_names=None, category_ids=None, **thresholds):
    """Write a SavedModel with both signatures to ``export_dir`` (replaced if it exists).

    ``class_names`` / ``category_ids`` go to ``assets.extra/classes.json`` for clients.
    """
    export_dir = pathlib.Path(export_dir)
    if export_dir.exists():
        shutil.rmtree(export_dir)
    module = ServingModule(model, **thresholds)
    tf.saved_model.save(module, str(export_dir), signatures={
        "serving_default": module.serve_bytes.get_concrete_function(),
        "serve_images": module.serve_images.get_concrete_function(),
    })
    if class_names is not None:
        (export_dir / "assets.extra").mkdir(exist_ok=True)
        artifacts.write_classes(export_dir / "assets.extra" / artifacts.CLASSES_FILE, class_names, category_ids)
    return export_dir


def next_version(model_root):
    """1 + the highest integer version folder under ``model_root`` (1 when none)."""
    root = pathlib.Path(model_root)
    versions = [int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit()] if root.exists() else []
    return max(versions, default=0) + 1


def export_from_artifact(source, output_root="saved_models", name="ssd300", version=None, num_classes=None,
                         **thresholds):
    """Export a run folder / .keras / .weights.h5 to ``output_root/name/version``. Returns the path."""
    model = artifacts.load_keras_model(source, num_classes)
    class_names, category_ids = artifacts.classes_beside(source)
    version = version or next_version(pathlib.Path(output_root) / name)
    return export_saved_model(model, pathlib.Path(output_root) / name / str(version), class_names, category_ids,
                              **thresholds)


"""``scripts/export.py``'s glue: a model path in, a SavedModel version folder out."""

import pathlib

from ssd_tf.export.prepare import float32_model
from ssd_tf.export.saved_model import export_saved_model, next_version
from ssd_tf.inference import loading


def export_saved_model_from(source, output_root="saved_models", name="ssd300", version=None, num_classes=None,
                            dtype="float32", **thresholds):
    """Export a run folder / .keras / .weights.h5 to ``output_root/name/version`` (default: the
    next version). Returns the path; FileExistsError when that version exists."""
    model = loading.load_keras_model(source, num_classes)
    if dtype == "float32":
        model = float32_model(model)
    class_names, category_ids = loading.classes_beside(source)
    version = version or next_version(pathlib.Path(output_root) / name)
    return export_saved_model(model, pathlib.Path(output_root) / name / str(version), class_names, category_ids,
                              model_name=name, **thresholds)

"""``scripts/export.py``'s glue: a model path in, a SavedModel version folder out."""

import pathlib

from ssd_tf.export.prepare import float32_model
from ssd_tf.export.saved_model import export_saved_model, next_version
from ssd_tf.inference import loading


def export_saved_model_from(source, output="saved_models/ssd300", version=None, num_classes=None,
                            precision="float32", model_name="ssd300", **thresholds):
    """Export a run folder / .keras / .weights.h5 to ``output/version`` (default: the next version;
    ``output`` is TF Serving's model base path). ``precision`` "float32" serves a mixed-precision
    model in float32, "model" keeps its own compute dtype. Returns the path; FileExistsError when
    that version exists."""
    model = loading.load_keras_model(source, num_classes)
    if precision == "float32":
        model = float32_model(model)
    class_names, category_ids = loading.classes_beside(source)
    version = version or next_version(pathlib.Path(output))
    return export_saved_model(model, pathlib.Path(output) / str(version), class_names, category_ids,
                              model_name=model_name, **thresholds)

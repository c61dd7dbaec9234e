"""Load what training and export leave behind (``ssd_tf.Detector`` runs it on images).

A model can be given as: a run folder (``final.keras``, else its last checkpoint), a ``.keras``
file, a ``.weights.h5`` file, or an exported SavedModel folder (``saved_models/<name>/<version>``).
Class names travel in ``classes.json`` beside the model (run folder, or a SavedModel's
``assets.extra/``).
"""

import json
import pathlib

import keras
import tensorflow as tf

from ssd_tf.core.classes import CLASSES_FILE, read_classes, write_classes  # noqa: F401 (re-exported)
from ssd_tf.modeling import BACKBONE_LAYOUTS, LEGACY_LAYOUT
from ssd_tf.modeling.ssd300 import build_ssd300
from ssd_tf.inference.model_files import KERAS_FORMS, check_model_path


def classes_beside(path):
    """(class_names, category_ids) from the classes.json of a model path (run folder or a file's
    folder), or (None, None)."""
    path = pathlib.Path(path)
    return read_classes(path if path.is_dir() else path.parent)


def layouts_to_try(path):
    """Backbone layouts for a weights-only checkpoint, likeliest first: its run folder's config.json
    says which (the folder, or up to two levels above a file; runs from before layouts existed
    have none there, and were keras.applications' layout). Without a config.json, NVIDIA's
    default first; the caller tries the other when the weights don't fit."""
    path = pathlib.Path(path)
    first = BACKBONE_LAYOUTS[0]
    for folder in ([path] if path.is_dir() else []) + list(path.parents)[:2]:
        config = folder / "config.json"
        if config.is_file():
            try:
                saved = json.loads(config.read_text())
                first = saved.get("backbone_layout", LEGACY_LAYOUT) or BACKBONE_LAYOUTS[0]
            except (ValueError, OSError, AttributeError):  # unreadable or not a run's: try both, default first
                pass
            break
    first = first if first in BACKBONE_LAYOUTS else BACKBONE_LAYOUTS[0]
    return [first] + [layout for layout in BACKBONE_LAYOUTS if layout != first]


def _load_weights_only(path, num_classes, load):
    """``load(model)`` into an SSD300 of each layout in turn; the first error if none fits."""
    first_error = None
    for layout in layouts_to_try(path):
        model = build_ssd300(num_classes, backbone_layout=layout)
        try:
            load(model)
            return model
        except ValueError as err:
            first_error = first_error or err
    raise first_error


def first_line(err):
    """The first line of an exception's message (its type name when empty), for errors that name a file."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:500]


def restore_checkpoint(prefix, model=None, checkpoint=None):
    """Restore the tf.train checkpoint ``prefix`` into ``model`` (or into ``checkpoint``).

    Raises ValueError naming the checkpoint when any variable of the model finds no value there
    or a shape differs: never returns a model left with random weights.
    """
    checkpoint = checkpoint or tf.train.Checkpoint(model=model)
    try:
        status = checkpoint.restore(prefix)
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as err:
        raise ValueError(f"{prefix}: checkpoint does not fit the model: {first_line(err)}") from None
    status.expect_partial()  # values the model does not hold (e.g. another optimizer's) are fine
    return checkpoint


def _check_ssd(model, path):
    shape = tuple(model.output_shape) if hasattr(model, "output_shape") else ()
    if len(shape) != 3 or shape[1] != 8732 or (shape[2] or 0) < 6:
        raise ValueError(f"{path}: not an SSD300 model (output shape {shape}, expected (None, 8732, 4 + classes))")
    return model


def _load(path, what, fn):
    """Run a Keras loader; any failure becomes a ValueError that names the file."""
    try:
        return fn()
    except (ValueError, OSError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: {what}: {first_line(err)}") from None


def load_weights_file(model, path):
    """``model.load_weights(path)`` (a .weights.h5 file), raising ValueError naming the file and what
    does not match: a file of another model, another class count, or a partial file."""
    num_classes = model.output_shape[-1] - 4
    _load(path, f"weights do not fit an SSD300 with {num_classes} classes", lambda: model.load_weights(path))
    return model


def load_keras_model(path, num_classes=None):
    """A Keras SSD300 from a run folder, a .keras file or a .weights.h5 file.

    Weights-only checkpoints need ``num_classes``; by default it comes from classes.json beside them.
    Raises ValueError naming the file when it does not load completely into an SSD300 (another
    model, another class count, a partial file): never returns random weights.
    """
    path = pathlib.Path(path)
    check_model_path(path, KERAS_FORMS)
    if num_classes is None:
        names, _ = classes_beside(path)
        num_classes = len(names) if names else None
    if path.is_dir():
        if (path / "final.keras").is_file():
            return load_keras_model(path / "final.keras")
        backup = path / "checkpoints" / "latest.weights.h5"
        if backup.is_file():
            return load_keras_model(backup, num_classes)
        latest = tf.train.latest_checkpoint(str(path / "checkpoints"))
        if latest and num_classes:  # a multi-worker run's tf.train checkpoint
            return _load_weights_only(path, num_classes, lambda model: restore_checkpoint(latest, model))
        raise FileNotFoundError(f"{path}: no final.keras, or no checkpoint with a classes.json, in this folder")
    if path.name.endswith(".weights.h5"):
        if not num_classes:
            raise ValueError(f"{path}: a weights file needs num_classes (or a classes.json beside it)")
        return _load_weights_only(path, num_classes, lambda model: load_weights_file(model, path))
    # check_model_path has left one form: a .keras file.
    return _check_ssd(_load(path, "not a loadable .keras model", lambda: keras.models.load_model(path)), path)


def load_model(path, num_classes=None):
    """A Keras SSD300 from a run folder, a ``.keras`` file or a ``.weights.h5`` file: ``ssd_tf.load_model``.

    The same as ``load_keras_model``. For SavedModels, ``.tflite`` and ``.onnx`` files, ``ssd_tf.Detector.load``.
    """
    return load_keras_model(path, num_classes)


def is_saved_model(path):
    return (pathlib.Path(path) / "saved_model.pb").is_file()

"""What the command lines in ``scripts/`` share: one-line user errors (exit status 2) that name
their flags, and the glue that turns a model path and a data set into a report or an export.

Importing this package loads no TensorFlow; its names load on first use.
"""

from ssd_tf.lazy import exports

_EXPORTS = {
    "fail": "errors", "user_errors": "errors", "as_flags": "errors",
    "evaluate_model_from": "evaluate",
    "export_saved_model_from": "export",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = exports(__name__, _EXPORTS)

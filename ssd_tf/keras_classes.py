"""Keras' loading convention: after ``import ssd_tf``, ``keras.saving.load_model(path)`` opens any
``.keras`` file this project writes, while ``import ssd_tf`` itself still loads no TensorFlow (so
the scripts' ``--help`` and argument checks answer at once).

A ``.keras`` file names its custom classes (``ssd_tf>TorchvisionPreprocess``, ``ssd_tf>SSDLoss``,
...), and Keras looks them up in its registry, which the modules defining them fill as they are
imported. ``import ssd_tf`` imports those modules at once when Keras is already loaded; otherwise
it waits for Keras: a finder on ``sys.meta_path`` lets the ``keras`` module load as usual, then
imports them, and removes itself. Registering needs Keras, and Keras needs TensorFlow, so this is
the earliest moment that costs nothing extra.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# Every module that defines a Keras-serializable class (tests/test_keras_convention.py checks
# that the list is complete).
MODULES = ("ssd_tf.modeling.backbone", "ssd_tf.modeling.losses", "ssd_tf.modeling.lr_schedules",
           "ssd_tf.modeling.optimizers")


def register():
    """Import the modules whose classes a ``.keras`` file of ours may name (loads TensorFlow)."""
    for name in MODULES:
        importlib.import_module(name)


def _register_quietly():
    try:
        register()
    except Exception as err:  # never break the user's `import keras`; load_model will then name the class
        warnings.warn(f"ssd_tf could not register its Keras classes: {type(err).__name__}: {err}", stacklevel=2)


class _AfterKeras(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when ``keras`` is about to load, it wraps that module's loading so
    that ``register`` runs right after, then leaves ``sys.meta_path``.

    It stays on ``sys.meta_path`` until Keras actually executes: TensorFlow probes for Keras with
    ``importlib.util.find_spec("keras")`` and imports it later through a new spec, so every spec
    handed out is wrapped, and the first one to execute registers.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        for finder in sys.meta_path:  # the real finders, this one skipped
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module  # this loader serves this one module: wrap it alone

        def exec_then_register(module):
            _remove()
            exec_module(module)
            _register_quietly()

        spec.loader.exec_module = exec_then_register
        return spec


_FINDER = _AfterKeras()


def _remove():
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


def register_when_keras_loads():
    """Register now if Keras is loaded; otherwise as soon as it is."""
    if "keras" in sys.modules:
        _register_quietly()
    elif _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)

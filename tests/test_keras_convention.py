"""Keras' loading convention: ``import ssd_tf`` is enough for ``keras.saving.load_model`` to open a
.keras file the project writes, in a fresh process, whichever of the two is imported first; and
``import ssd_tf`` alone still loads no TensorFlow."""

import ast
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

PACKAGE = ROOT / "ssd_tf"


def _run(code, *args):
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A .keras file as a run writes final.keras (compiled: SSDLoss, TorchSGD, WarmupSchedule, the
    layout's preprocessing layer), and the outputs it gives on one input."""
    import keras

    from ssd_tf.modeling.ssd300 import build_ssd300
    from ssd_tf.training.config import TrainConfig
    from ssd_tf.training.run import build_optimizer, compile_model

    keras.utils.set_random_seed(0)
    model = build_ssd300(num_classes=3)
    compile_model(model, build_optimizer(TrainConfig().resolved(), steps_per_epoch=4))
    folder = tmp_path_factory.mktemp("keras_convention")
    model.save(folder / "final.keras")
    x = np.random.default_rng(0).uniform(0, 255, (1, 300, 300, 3)).astype(np.float32)
    np.save(folder / "x.npy", x)
    return folder, float(np.asarray(model(x, training=False)).sum())


LOAD = """if True:
    import sys
    import numpy as np
    {first}
    {second}
    model = keras.saving.load_model(sys.argv[1])
    assert type(model.loss).__name__ == "SSDLoss", model.loss
    assert type(model.optimizer).__name__ == "TorchSGD", model.optimizer
    print(float(np.asarray(model(np.load(sys.argv[2]), training=False)).sum()))
"""


ORDERS = {"ssd_tf first": ("import ssd_tf", "import keras"), "keras first": ("import keras", "import ssd_tf"),
          # TensorFlow probes for Keras (find_spec) before it imports it: the hook must survive the probe.
          "ssd_tf, then tensorflow": ("import ssd_tf", "import tensorflow; import keras")}


@pytest.mark.slow  # fresh processes that each load TensorFlow
@pytest.mark.parametrize("order", ORDERS)
def test_import_ssd_tf_is_enough_for_keras_load_model(saved, order):
    folder, expected = saved
    lines = ORDERS[order]
    got = _run(LOAD.format(first=lines[0], second=lines[1]), folder / "final.keras", folder / "x.npy")
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_import_ssd_tf_loads_no_tensorflow_and_top_level_load_model_is_there():
    code = ("import sys, ssd_tf; assert 'load_model' in ssd_tf.__all__; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'torch') if m in sys.modules))")
    assert _run(code) == "[]"


def test_every_keras_serializable_class_is_registered_by_import_ssd_tf():
    """keras_classes.MODULES names every module with a register_keras_serializable class, so a
    class added elsewhere can't be left out of the .keras files' lookup."""
    from ssd_tf import keras_classes

    defining = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any("register_keras_serializable" in ast.unparse(d)
                                                      for d in node.decorator_list):
                defining.add(".".join(path.relative_to(ROOT).with_suffix("").parts))
    assert defining and defining == set(keras_classes.MODULES), defining

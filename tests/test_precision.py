"""Mixed precision and XLA: float16 with loss scaling, bfloat16, and the XLA-compiled step."""


import keras
import numpy as np
import pytest
import tensorflow as tf

import ssd_tf
from ssd_tf import data
from ssd_tf.training import loop
from ssd_tf.training import run as training
from helpers import tiny_config, tiny_ssd


def test_mixed_float16_wiring():
    # float16 has no fast CPU kernels (a step takes minutes here), so only its set-up is checked.
    try:
        training.set_precision("float16")
        model = ssd_tf.build_ssd300(num_classes=4)
        training.compile_model(model, keras.optimizers.SGD(1e-3))
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert model.get_layer("conv1_conv").compute_dtype == "float16"
        assert model.get_layer("conv1_conv").variable_dtype == "float32"
        assert model.output.dtype == "float32"
    finally:
        training.set_precision(None)


@pytest.mark.slow
def test_mixed_bfloat16_training_step_runs():
    images, y_true = next(iter(data.train_dataset(data.make_synthetic(2), 2, seed=0)))
    keras.utils.set_random_seed(0)
    reference = ssd_tf.build_ssd300(num_classes=4)  # float32, the same weights
    float32_loss = float(np.mean(ssd_tf.SSDLoss()(y_true, reference(images, training=True))))
    try:
        training.set_precision("bfloat16")
        model = ssd_tf.build_ssd300(num_classes=4)
        model.set_weights(reference.get_weights())
        training.compile_model(model, keras.optimizers.SGD(1e-3))
        assert model.get_layer("extra1_2_conv").compute_dtype == "bfloat16"
        before = model.get_layer("conf0_conv").get_weights()[0].copy()
        loss = model.train_on_batch(images, y_true)[0]
        assert model.output.dtype == "float32"
        # bfloat16 keeps 8 bits of mantissa (0.4 % a value) through some 60 layers, errors partly
        # averaging out over the 8732 boxes' loss: the step's loss is the float32 loss to within 1 %
        # (measured 0.004 % on an AMX Xeon, 0.05 % on an AVX2 EPYC), not just finite.
        assert loss == pytest.approx(float32_loss, rel=0.01)
        assert not np.array_equal(before, model.get_layer("conf0_conv").get_weights()[0])
    finally:
        training.set_precision(None)


@pytest.mark.slow
def test_xla_training_step_trains_as_the_plain_one(tmp_path, caplog):
    caplog.set_level("INFO")
    assert loop.resolve_jit_compile("auto", tf.distribute.get_strategy()) is False  # Keras' choice on a CPU
    assert loop.resolve_jit_compile("on", tf.distribute.get_strategy()) is True
    runs, initial = {}, []

    def model_fn(num_classes):
        model = tiny_ssd(num_classes)
        initial[:] = model.get_weights()
        return model
    for jit in ("off", "on"):
        keras.utils.set_random_seed(0)
        runs[jit] = training.train(tiny_config(tmp_path / jit, jit_compile=jit), model_fn=model_fn)
    assert "training step: XLA on" in caplog.text and "training step: XLA off" in caplog.text
    plain, xla = runs["off"]["history"]["loss"], runs["on"]["history"]["loss"]
    # The same seeded data and initial weights: XLA's fused kernels only round differently.
    np.testing.assert_allclose(xla, plain, rtol=1e-4)
    trained = runs["on"]["model"].get_weights()
    assert max(float(np.abs(a - b).max()) for a, b in zip(trained, initial)) > 1e-3  # the steps trained
    for a, b in zip(trained, runs["off"]["model"].get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    # XLA drops tf.debugging asserts, so a label outside the model's classes is refused before training.
    with pytest.raises(ValueError, match=r"image \d+: label 3 is outside 1\.\.2, the classes of a model with 2"):
        training.train(tiny_config(tmp_path / "few", jit_compile="on"), model_fn=lambda n: tiny_ssd(n - 1))


@pytest.mark.slow
def test_float16_steps_scale_the_loss_and_keep_weights_finite(tmp_path):
    training.set_precision("float16")
    try:
        keras.utils.set_random_seed(0)
        model = tiny_ssd(4)
        assert model.layers[1].compute_dtype == "float16"
        # A loss scale so large that float16 gradients overflow: each such step is skipped and
        # halves the scale, until steps go through and train.
        optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(1e-2), initial_scale=2.0 ** 40)
        initial = [w.copy() for w in model.get_weights()]
        settings = loop.LoopSettings(epochs=1, steps_per_epoch=24, global_batch=2, checkpoint_dir=tmp_path / "ckpt",
                                     loss_scaling=True, verbose=0)
        synthetic = data.make_synthetic(4, seed=0)
        history = loop.fit(model, optimizer, tf.distribute.get_strategy(),
                           lambda ctx: data.train_dataset(synthetic, 2, seed=0, input_context=ctx).repeat(), settings)
        scale = float(keras.ops.convert_to_numpy(optimizer.dynamic_scale))
        assert scale < 2.0 ** 30, scale  # overflows were met and the scale came down
        assert np.isfinite(history["loss"][0])
        weights = model.get_weights()
        assert all(np.all(np.isfinite(w)) for w in weights)
        assert max(float(np.abs(a - b).max()) for a, b in zip(weights, initial)) > 1e-4  # steps went through
        # Through train(): --mixed-precision float16 trains with loss scaling.
        result = training.train(tiny_config(tmp_path / "run", mixed_precision="float16"), model_fn=tiny_ssd)
        assert isinstance(result["model"].optimizer, keras.optimizers.LossScaleOptimizer)
        assert all(np.all(np.isfinite(w)) for w in result["model"].get_weights())
    finally:
        training.set_precision(None)

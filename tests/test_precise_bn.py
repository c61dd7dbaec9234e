"""PreciseBatchNorm: moving statistics replaced by the average of a few batches' statistics."""

import keras
import numpy as np
import tensorflow as tf

from ssd_tf.training import callbacks


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(5, 1, name="conv")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn")(x)
    return keras.Model(inputs, x)


def test_moving_statistics_become_the_average_of_the_batches_statistics():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0 * k, 1.0 + k, (6, 4, 4, 3)).astype(np.float32) for k in range(3)]
    dataset = tf.data.Dataset.from_tensor_slices((np.concatenate(batches), np.zeros(18))).batch(6)
    model = _model()
    callback = callbacks.PreciseBatchNorm(dataset, batches=3)
    callback.set_model(model)
    callback.on_epoch_end(0)
    # By hand: each batch's per-channel mean and (biased) variance of the conv output, averaged.
    conv = keras.Model(model.input, model.get_layer("conv").output)
    outs = [conv(b).numpy().reshape(-1, 5) for b in batches]
    bn = model.get_layer("bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([o.mean(0) for o in outs], 0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean([o.var(0) for o in outs], 0), rtol=1e-4)
    assert bn.momentum == 0.9  # restored
    # Inference on one of those batches now normalises with them, not with the initial 0 and 1.
    out = model(batches[1], training=False).numpy().reshape(-1, 5)
    assert np.abs(out.mean(0)).max() < 1.5 and np.abs(out.mean(0)).max() < 0.2 * np.abs(outs[1].mean(0)).max()


def test_runs_once_per_epoch_before_validation():
    dataset = tf.data.Dataset.from_tensor_slices((np.ones((4, 4, 4, 3), np.float32), np.zeros(4))).batch(2)
    model = _model()
    callback = callbacks.PreciseBatchNorm(dataset, batches=1)
    callback.set_model(model)
    calls = []
    callback.recalibrate = lambda: calls.append(callback._epoch)
    callback.on_epoch_begin(0)
    callback.on_test_begin()  # validation inside fit: recalibrate first
    callback.on_epoch_end(0)  # already done this epoch
    callback.on_epoch_begin(1)
    callback.on_epoch_end(1)  # no validation this epoch: at its end
    callback.on_train_end()
    callback.on_test_begin()  # a later evaluate() outside fit: leave the statistics alone
    assert calls == [0, 1]


def test_inside_fit_runs_before_each_validation_and_after_the_last_epoch_only():
    dataset = tf.data.Dataset.from_tensor_slices((np.ones((4, 4, 4, 3), np.float32), np.zeros(4))).batch(2)
    callback = callbacks.PreciseBatchNorm(dataset, batches=1)
    callback.set_model(_model())
    callback.set_params({"epochs": 4, "steps": 1, "verbose": 0})  # as model.fit sets them
    calls = []
    callback.recalibrate = lambda: calls.append(callback._epoch)
    for epoch in range(4):
        callback.on_epoch_begin(epoch)
        if epoch == 1:
            callback.on_test_begin()  # validation after epoch 2 only
        callback.on_epoch_end(epoch)
    callback.on_train_end()
    assert calls == [1, 3]  # epochs 1 and 3 (0-based) go without: nothing reads the statistics

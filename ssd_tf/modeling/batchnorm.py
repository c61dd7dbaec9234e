"""Batch-norm moving statistics under any strategy: averaged across replicas, and "precise BN".

Under MirroredStrategy and MultiWorkerMirroredStrategy each replica updates its own copy of the
moving mean and variance from its own batches. ``sync_moving_statistics`` averages the copies;
``PreciseBN`` replaces them with statistics gathered over every replica's batches.
"""

import logging

import keras
import numpy as np
import tensorflow as tf

log = logging.getLogger("ssd_tf.modeling.batchnorm")


def batch_norm_layers(model):
    """The model's trainable BatchNormalization layers (frozen ones keep their statistics)."""
    return [layer for layer in model._flatten_layers()
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]


def _assign(strategy, model, layers, values):
    """Set every replica's moving statistics to ``values`` ([(mean, variance)] per layer)."""
    flat = [tf.constant(v, tf.float32) for pair in values for v in pair]

    @tf.function
    def run(flat):
        def replica_fn(*flat):
            for i, layer in enumerate(layers):
                layer.moving_mean.assign(flat[2 * i])
                layer.moving_variance.assign(flat[2 * i + 1])
        strategy.run(replica_fn, args=tuple(flat))

    run(flat)


def sync_moving_statistics(strategy, model):
    """Average every float non-trainable variable (the BN moving statistics) over all replicas.

    Their update is linear, so the average is the moving average of the all-replica batch
    statistics, and every replica and worker is left with the same model. A collective."""
    if strategy.num_replicas_in_sync == 1:
        return

    @tf.function
    def run():
        def replica_fn():
            context = tf.distribute.get_replica_context()
            # BN statistics; leave any integer counters alone. One all-reduce for all of them.
            variables = [var for var in model.non_trainable_variables if "float" in str(var.dtype)]
            means = context.all_reduce(tf.distribute.ReduceOp.MEAN, [tf.identity(var.value) for var in variables])
            for var, mean in zip(variables, means):
                var.assign(mean)
        strategy.run(replica_fn)

    run()


class PreciseBN:
    """Precise BN (Wu and Johnson, 2021): set every batch norm's moving mean and variance to their
    average over ``batches`` batches of ``dataset`` ((images, y_true), unaugmented training images).

    ``dataset``: a tf.data.Dataset of global batches (one device), or a distributed dataset of the
    ``strategy``. Each forward pass runs in training mode with momentum 0 and, over several
    replicas, with synchronised BN, so that every layer normalises with (and leaves as its moving
    statistics) the whole global batch's mean and (biased, as Keras' BN uses) variance, as one
    device does. Per layer and batch, the replicas' means, variances and squared means are then
    averaged in float64 (a collective), which gives the global batch's statistics from any
    per-replica ones. The batches' values are then averaged, and set on every replica and worker.
    A non-finite result (diverged weights) leaves the statistics as they were, with a warning.
    Call it on every worker (it runs collectives), with the replicas' statistics in sync.
    """

    def __init__(self, model, dataset, batches, strategy=None):
        self.model = model
        self.dataset = dataset
        self.batches = batches
        self.strategy = strategy or tf.distribute.get_strategy()
        self.layers = batch_norm_layers(model)
        self._forward = None

    def _trace(self):
        layers, model, strategy = self.layers, self.model, self.strategy

        def replica_fn(images):
            model(images, training=True)
            context = tf.distribute.get_replica_context()
            stats = []
            for layer in layers:
                mean = tf.cast(layer.moving_mean.value, tf.float64)
                stats += [mean, tf.cast(layer.moving_variance.value, tf.float64), mean * mean]
            return context.all_reduce(tf.distribute.ReduceOp.MEAN, stats)

        @tf.function
        def forward(iterator):
            images, _ = next(iterator)
            return strategy.run(replica_fn, args=(images,))
        return forward

    def __call__(self):
        if not self.layers or self.batches <= 0:
            return
        momenta = [layer.momentum for layer in self.layers]
        synced = [layer.synchronized for layer in self.layers]
        before = [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in self.layers]
        sums, count = None, 0
        try:
            for layer in self.layers:  # each forward pass leaves exactly its batch's statistics
                layer.momentum = 0.0
                # Every layer normalises with the whole global batch's statistics, as on one device,
                # so the layers after it see what one device's would.
                layer.synchronized = self.strategy.num_replicas_in_sync > 1 or layer.synchronized
            if self._forward is None:  # traced once, with momentum 0
                self._forward = self._trace()
            iterator = iter(self.dataset)
            for _ in range(self.batches):
                try:
                    out = self._forward(iterator)
                except (StopIteration, tf.errors.OutOfRangeError):
                    break
                stats = [v.numpy() for v in self.strategy.experimental_local_results(out)[0]]
                # Replicas' shares -> the global batch: var = E[var_r] + E[mean_r^2] - E[mean_r]^2.
                batch = [(stats[3 * i], stats[3 * i + 1] + stats[3 * i + 2] - stats[3 * i] ** 2)
                         for i in range(len(self.layers))]
                sums = batch if sums is None else [(m + a, v + b) for (m, v), (a, b) in zip(sums, batch)]
                count += 1
        finally:
            for layer, momentum, sync in zip(self.layers, momenta, synced):
                layer.momentum, layer.synchronized = momentum, sync
        new = before if not count else [(m / count, v / count) for m, v in sums]
        if not all(np.all(np.isfinite(m)) and np.all(np.isfinite(v)) for m, v in new):
            # Diverged weights: keep the statistics as they were; the loss check stops the run.
            log.warning("precise BN: non-finite statistics, left unchanged")
            new = before
        _assign(self.strategy, self.model, self.layers, new)

"""Learning-rate schedule: linear warmup, then step or cosine decay."""

import math

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="ssd_tf")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to ``base_lr`` over ``warmup_steps``, then decay.

    ``decay="step"``: multiply by ``gamma`` at each of ``boundaries`` (steps).
    ``decay="cosine"``: half a cosine from ``base_lr`` at the end of warmup to 0 at ``total_steps``.
    """

    def __init__(self, base_lr, total_steps, warmup_steps=0, decay="step", boundaries=(), gamma=0.1):
        if decay not in ("step", "cosine"):
            raise ValueError(f"decay must be 'step' or 'cosine', got {decay!r}")
        self.base_lr = float(base_lr)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.decay = decay
        self.boundaries = tuple(int(b) for b in boundaries)
        self.gamma = float(gamma)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        if self.decay == "cosine":
            span = max(self.total_steps - self.warmup_steps, 1)
            progress = tf.clip_by_value((step - self.warmup_steps) / span, 0.0, 1.0)
            lr = self.base_lr * 0.5 * (1.0 + tf.cos(math.pi * progress))
        else:
            passed = tf.add_n([tf.cast(step >= b, tf.float32) for b in self.boundaries] or [tf.zeros([])])
            lr = self.base_lr * tf.pow(self.gamma, passed)
        if self.warmup_steps > 0:
            lr = tf.where(step < self.warmup_steps, self.base_lr * (step + 1.0) / self.warmup_steps, lr)
        return lr

    def get_config(self):
        return {
            "base_lr": self.base_lr, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
            "decay": self.decay, "boundaries": list(self.boundaries), "gamma": self.gamma,
        }

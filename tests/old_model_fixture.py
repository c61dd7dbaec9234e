"""Deterministic weights for the old-file test (tests/data/ssd300-keras-layout-41914b7.json)."""

import numpy as np

SLOTS = list(range(0, 8732, 97))


def deterministic_weights(model):
    """Set every variable from its position and shape alone, the same in any version of the code."""
    for i, variable in enumerate(model.weights):
        rng = np.random.default_rng(i)
        shape = tuple(variable.shape)
        name = variable.path.rsplit("/", 1)[-1]
        if name in ("gamma", "moving_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        elif name == "kernel":
            value = rng.normal(0, (1.0 / np.prod(shape[:-1])) ** 0.5, shape)
        else:
            value = rng.normal(0, 0.1, shape)
        variable.assign(value.astype("float32"))

"""SGD as NVIDIA's SSD300 recipe trains it: PyTorch's momentum and coupled L2 on kernels only.

Keras' own ``SGD(weight_decay=...)`` decays decoupled (``w -= lr * wd * w``, outside momentum),
which with momentum 0.9 decays about 10x less than PyTorch's SGD, and it decays batch-norm
parameters and biases too. NVIDIA's main.py gives those ``weight_decay=0``.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="ssd_tf")
class TorchSGD(keras.optimizers.Optimizer):
    """``torch.optim.SGD(momentum, weight_decay)`` on kernels, plain momentum SGD elsewhere.

    Per step, for each variable ``w`` with gradient ``g`` at learning rate ``lr``::

        g = g + weight_decay * w      # only for kernels (variables named "kernel")
        buf = momentum * buf + g      # PyTorch's form: lr is applied outside the buffer,
        w = w - lr * buf              # so a changing lr (warmup, steps) acts as in PyTorch

    Biases, batch-norm gamma/beta and other non-kernel variables get no L2.
    """

    def __init__(self, learning_rate=0.01, momentum=0.9, weight_decay=5e-4, name="torch_sgd", **kwargs):
        kwargs.pop("weight_decay_decoupled", None)
        # The base class' weight_decay is decoupled: keep it off and apply ours inside the step.
        kwargs["weight_decay"] = None
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0 <= float(momentum) <= 1:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        if float(weight_decay) < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.momentum = float(momentum)
        self.l2 = float(weight_decay)

    @staticmethod
    def decays(variable):
        """True for the variables that get L2: convolution and dense kernels."""
        # A Keras variable is named "kernel"; the tf.Variable under it "<layer>/kernel:0".
        return variable.name.split(":")[0].rsplit("/", 1)[-1] == "kernel"

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = self.add_optimizer_variables(variables, "momentum") if self.momentum else []

    def update_step(self, gradient, variable, learning_rate):
        # Written as subtractions of products, not additions: TF's oneDNN remapper fuses Mul+AddV2
        # into one kernel whose rounding differed between two workers holding the same values (a
        # 1-ulp drift that left multi-worker replicas unequal). a - b * (-c) is exactly a + b * c.
        dtype = variable.dtype
        learning_rate = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        if self.l2 and self.decays(variable):
            gradient = ops.subtract(gradient, ops.multiply(variable, ops.cast(-self.l2, dtype)))
        if self.momentum:
            buf = self.momentums[self._get_variable_index(variable)]
            gradient = ops.subtract(gradient, ops.multiply(buf, ops.cast(-self.momentum, dtype)))
            self.assign(buf, gradient)
        self.assign_sub(variable, ops.multiply(gradient, learning_rate))

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "weight_decay": self.l2})
        return config

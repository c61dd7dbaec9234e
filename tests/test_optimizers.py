import keras
import numpy as np
import pytest

import ssd_tf
from ssd_tf.training import run as training
from ssd_tf.training.config import TrainConfig
from ssd_tf.modeling.optimizers import TorchSGD

torch = pytest.importorskip("torch", reason="torch (dev extra) runs the PyTorch SGD reference")


def _torch_sgd_steps(initial, lrs, momentum, weight_decay):
    """What torch.optim.SGD does to ``initial`` over steps with a zero loss gradient."""
    param = torch.nn.Parameter(torch.tensor(initial, dtype=torch.float32))
    opt = torch.optim.SGD([param], lr=lrs[0], momentum=momentum, weight_decay=weight_decay)
    for lr in lrs:
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad()
        param.grad = torch.zeros_like(param)
        opt.step()
    return param.detach().numpy()


@pytest.mark.slow
def test_weight_decay_is_coupled_l2_on_kernels_only_as_pytorch_sgd():
    keras.utils.set_random_seed(0)
    model = ssd_tf.build_ssd300(num_classes=3)
    # A short run: warmup of 2 steps, so the lr changes at every step below.
    config = TrainConfig(dataset="synthetic", epochs=1, batch_size=32, warmup_steps=2).resolved()
    optimizer = training.build_optimizer(config, steps_per_epoch=8)
    training.compile_model(model, optimizer)
    initial = {v.path: v.numpy().copy() for v in model.trainable_variables}
    # Zero loss gradients (as all-background targets give): each step is weight decay alone. Applied
    # as the training step applies them, by the compiled optimizer.
    zeros = [keras.ops.zeros_like(v) for v in model.trainable_variables]
    steps = 3
    for _ in range(steps):
        model.optimizer.apply(zeros, model.trainable_variables)
    schedule = keras.optimizers.schedules.deserialize(optimizer.get_config()["learning_rate"])
    lrs = [float(schedule(i)) for i in range(steps)]
    assert lrs[0] != lrs[1]  # warmup: the lr changes, which Keras' momentum form would treat differently

    decayed = 0
    for v in model.trainable_variables:
        before, after = initial[v.path], v.numpy()
        if v.name == "kernel":
            expected = _torch_sgd_steps(before, lrs, momentum=0.9, weight_decay=5e-4)
            np.testing.assert_allclose(after, expected, rtol=1e-6, atol=1e-9, err_msg=v.path)
            assert not np.array_equal(after, before)
            decayed += 1
        else:  # biases, batch-norm gamma and beta
            np.testing.assert_array_equal(after, before, err_msg=v.path)
    assert decayed > 60  # every convolution kernel of backbone, extra blocks and heads
    assert {v.name for v in model.trainable_variables} == {"kernel", "bias", "gamma", "beta"}


def test_torch_sgd_with_gradients_matches_pytorch_and_round_trips():
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=(3, 4)).astype(np.float32)
    grads = rng.normal(size=(4, 3, 4)).astype(np.float32)
    lrs = [0.1, 0.2, 0.05, 0.05]
    opt = TorchSGD(learning_rate=0.1, momentum=0.9, weight_decay=0.01)
    kernel = keras.Variable(w0, name="kernel")
    bias = keras.Variable(w0[0], name="bias")
    opt.build([kernel, bias])
    for lr, g in zip(lrs, grads):
        opt.learning_rate = lr
        opt.apply_gradients([(g, kernel), (g[0], bias)])
    p = torch.nn.Parameter(torch.tensor(w0))
    b = torch.nn.Parameter(torch.tensor(w0[0]))
    ref = torch.optim.SGD([{"params": [p]}, {"params": [b], "weight_decay": 0.0}], lr=0.1, momentum=0.9,
                          weight_decay=0.01)
    for lr, g in zip(lrs, grads):
        for group in ref.param_groups:
            group["lr"] = lr
        p.grad, b.grad = torch.tensor(g), torch.tensor(g[0])
        ref.step()
    np.testing.assert_allclose(kernel.numpy(), p.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bias.numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6)
    again = TorchSGD.from_config(opt.get_config())
    assert (again.momentum, again.l2) == (0.9, 0.01)

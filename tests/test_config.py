"""The training run's configuration and what it builds from it: defaults and checks, the learning-rate
schedule, the optimizer's scaling."""

import json

import keras
import numpy as np
import pytest

from ssd_tf.training import run as training
from ssd_tf.training.config import TrainConfig
from ssd_tf.modeling.lr_schedules import WarmupSchedule


def test_schedule_warmup_step_and_cosine():
    step = WarmupSchedule(0.1, total_steps=100, warmup_steps=10, decay="step", boundaries=(60, 80))
    lrs = [float(step(i)) for i in (0, 4, 9, 10, 59, 60, 80, 99)]
    np.testing.assert_allclose(lrs, [0.01, 0.05, 0.1, 0.1, 0.1, 0.01, 0.001, 0.001], rtol=1e-5)
    cosine = WarmupSchedule(0.1, total_steps=100, warmup_steps=0, decay="cosine")
    np.testing.assert_allclose([float(cosine(i)) for i in (0, 50, 100)], [0.1, 0.05, 0.0], atol=1e-6)
    again = WarmupSchedule.from_config(step.get_config())
    assert float(again(65)) == pytest.approx(0.01)


def test_config_defaults_and_validation(tmp_path):
    c = TrainConfig(dataset="coco", data_dir="x", batch_size=64).resolved()
    assert (c.epochs, c.warmup_steps, c.train_split) == (65, 300, "train2017")
    # Code and CLI resolve per-data-set defaults in one place: real data starts from ImageNet.
    assert c.backbone_weights == "imagenet" and TrainConfig().resolved().backbone_weights == "none"
    assert c.scaled_lr == pytest.approx(2.6e-3 * 2)  # NVIDIA: lr scales with batch / 32
    assert (c.schedule, c.precise_bn) == ("step", 8)
    # The built-in set trains from random weights in minutes: its own settings (README).
    s = TrainConfig().resolved()
    assert (s.epochs, s.lr, s.warmup_steps, s.schedule, s.precise_bn) == (7, 0.04, 8, "cosine", 2)
    # NVIDIA's network by default; a run folder saved before layouts existed resumes as keras'.
    assert s.backbone_layout == "torchvision" and TrainConfig(init_from="run").resolved().backbone_layout is None
    assert TrainConfig(dataset="voc", data_dir="x", init_from="run").resolved().backbone_weights == "none"
    old = tmp_path / "config.json"
    old.write_text(json.dumps({k: v for k, v in json.loads(json.dumps(vars(TrainConfig()))).items()
                               if k not in ("backbone_layout", "init_from")}))
    assert TrainConfig.load(old).backbone_layout == "keras"
    with pytest.raises(ValueError, match="data_dir="):
        TrainConfig(dataset="voc").resolved()
    with pytest.raises(ValueError, match="strategy"):
        TrainConfig(strategy="tpu").resolved()


def test_optimizer_scales_lr_and_caps_warmup_for_short_runs():
    config = TrainConfig(dataset="coco", data_dir="x", batch_size=64, epochs=2).resolved()
    def schedule_of(optimizer):
        return keras.optimizers.schedules.deserialize(optimizer.get_config()["learning_rate"])

    schedule = schedule_of(training.build_optimizer(config, steps_per_epoch=50))
    assert isinstance(schedule, WarmupSchedule)
    assert schedule.base_lr == pytest.approx(2.6e-3 * 2) and schedule.warmup_steps == 25  # 100 steps / 4
    assert schedule.boundaries == (67, 83)
    assert schedule_of(training.build_optimizer(config, steps_per_epoch=5000)).warmup_steps == 300

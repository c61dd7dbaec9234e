"""--init-from: start a run from a trained detector's weights, onto another class count."""

import json

import keras
import numpy as np
import pytest

import ssd_tf
from conftest import shared_data
from ssd_tf import data
from ssd_tf.inference import loading
from ssd_tf.training import finetune
from ssd_tf.training import run as training
from ssd_tf.training.config import TrainConfig


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A 'trained' 4-class model folder (final.keras + classes.json), as a run or an import leaves it."""
    folder = tmp_path_factory.mktemp("source")
    keras.utils.set_random_seed(5)
    model = ssd_tf.build_ssd300(num_classes=4)
    model.save(folder / "final.keras")
    loading.write_classes(folder / "classes.json", ("background", "a", "b", "c"))
    return folder, {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


class _WeightsAtStart(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = {layer.name: layer.get_weights() for layer in self.model.layers if layer.weights}


@pytest.mark.slow
def test_init_from_onto_two_classes_copies_all_but_the_class_heads_and_trains(source, tmp_path):
    folder, trained = source
    start = _WeightsAtStart()
    config = TrainConfig(dataset="voc", data_dir=str(shared_data("raccoon", "VOC2007")), classes=("raccoon",),
                         val_split="", init_from=str(folder), epochs=1, steps_per_epoch=1, batch_size=2,
                         precise_bn=0, eval_every=0, output=str(tmp_path / "run"), seed=0)
    result = training.train(config, callbacks=[start])
    model = result["model"]
    assert model.output_shape == (None, 8732, 6)
    copied = [name for name in start.weights if not name.startswith("conf")]
    assert any(n.startswith("conv1") for n in copied) and any(n.startswith("extra5") for n in copied)
    assert any(n.startswith("loc5") for n in copied)
    for name in copied:  # backbone, extra blocks and box heads: bit-exact
        for ours, theirs in zip(start.weights[name], trained[name]):
            np.testing.assert_array_equal(ours, theirs, err_msg=name)
    heads = [f"conf{level}_conv" for level in range(6)]
    for name in heads:  # re-initialised: 2 classes, not the source's 4, and fresh values
        kernel = start.weights[name][0]
        assert kernel.shape[-1] == trained[name][0].shape[-1] // 4 * 2
        assert np.abs(kernel).max() > 0 and np.all(start.weights[name][1] == 0)  # Glorot kernel, zero bias
    # The run says what it did, and keeps the source's layout.
    record = json.loads((tmp_path / "run" / "init_from.json").read_text())
    assert record["initialised"] == heads and record["copied"] == copied and record["source"] == str(folder)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["init_from"] == str(folder) and saved["backbone_layout"] == "torchvision"

    # The fine-tuned model learns the new classes: the loss falls, and stays finite, over a few steps on
    # one batch (this is also the suite's check that SSDLoss, compile_model and the optimizer train).
    # Measured: the last two steps' mean is 0.16 of the first two's, 0.11 over 8 steps of 4 images.
    raccoon = data.read_voc(shared_data("raccoon", "VOC2007"), "train", class_names=("raccoon",)).subset(range(2))
    batch = next(iter(data.train_dataset(raccoon, 2, seed=0, augment_images=False)))
    training.compile_model(model, keras.optimizers.SGD(5e-3, momentum=0.9))
    losses = [float(model.train_on_batch(*batch)[0]) for _ in range(6)]
    print("fine-tuning losses", losses)
    assert all(np.isfinite(losses)) and np.mean(losses[-2:]) < 0.7 * np.mean(losses[:2]), losses


def test_init_from_another_backbone_layout_is_refused(source, tmp_path):
    folder, _ = source
    model = ssd_tf.build_ssd300(num_classes=2, backbone_layout="keras")
    with pytest.raises(ValueError, match=r"backbone layout is 'torchvision', this run's is 'keras'.*"
                                         r"backbone_layout='torchvision'"):
        finetune.init_from(model, folder)
    config = TrainConfig(dataset="synthetic", synthetic_images=4, batch_size=2, init_from=str(folder),
                         backbone_layout="keras", output=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="its backbone layout is 'torchvision', and backbone_layout='keras' asks"):
        training.train(config)

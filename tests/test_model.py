import keras
import numpy as np
import pytest
from PIL import Image

import ssd_tf
from conftest import shared_data
from ssd_tf.modeling import backbone


def _images(batch=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (batch, 300, 300, 3)).astype(np.float32)


def test_output_shape_and_feature_maps(ssd21):
    assert ssd21.output_shape == (None, 8732, 25)
    assert ssd21.get_layer("conv4_block6_out").output.shape[1:] == (38, 38, 1024)
    sizes = [ssd21.get_layer(f"extra{k}_2_relu").output.shape[1:] for k in range(1, 6)]
    assert sizes == [(19, 19, 512), (10, 10, 512), (5, 5, 256), (3, 3, 256), (1, 1, 256)]
    out = ssd21.predict(_images(2), verbose=0)
    assert out.shape == (2, 8732, 25) and out.dtype == np.float32 and np.all(np.isfinite(out))


def test_num_classes_sets_the_class_score_width_and_must_be_at_least_two():
    model = ssd_tf.build_ssd300(num_classes=3)
    assert model.output_shape == (None, 8732, 7)
    with pytest.raises(ValueError, match="num_classes"):
        ssd_tf.build_ssd300(num_classes=1)


def test_config_round_trip(ssd21):
    clone = keras.Model.from_config(ssd21.get_config())
    assert [layer.name for layer in clone.layers] == [layer.name for layer in ssd21.layers]
    clone.set_weights(ssd21.get_weights())
    x = _images(1, seed=1)
    np.testing.assert_allclose(clone(x, training=False), ssd21(x, training=False), rtol=1e-5, atol=1e-5)


def test_keras_save_load_gives_equal_outputs(ssd21, tmp_path):
    path = tmp_path / "ssd.keras"
    ssd21.save(path)
    loaded = keras.models.load_model(path)
    x = _images(1, seed=2)
    np.testing.assert_allclose(loaded(x, training=False), ssd21(x, training=False), rtol=1e-5, atol=1e-5)


def test_normalisation_is_inside_the_model_and_follows_the_layout(ssd21):
    rgb = np.array([[[[10.0, 20.0, 30.0]]]], np.float32)
    # The default, NVIDIA's: torchvision's ImageNet normalisation of RGB / 255.
    assert backbone.layout_of(ssd21) == "torchvision"
    expected = [(v / 255 - m) / s for v, m, s in zip((10, 20, 30), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
    np.testing.assert_allclose(ssd21.get_layer("preprocess")(rgb)[0, 0, 0], expected, rtol=1e-5)
    # keras.applications' layout: caffe BGR minus channel means.
    caffe = backbone.preprocess_layer("keras")
    np.testing.assert_allclose(caffe(rgb), [[[[30 - 103.939, 20 - 116.779, 10 - 123.68]]]], rtol=1e-6)


def test_layouts_differ_where_resnet_v1_and_v1_5_differ(ssd21):
    keras_layout = ssd_tf.build_ssd300(num_classes=21, backbone_layout="keras")
    assert backbone.layout_of(keras_layout) == "keras"
    # v1.5 (torchvision, NVIDIA): conv3's stride on the 3x3 conv, no conv biases, epsilon 1e-5.
    assert ssd21.get_layer("conv3_block1_1_conv").strides == (1, 1)
    assert ssd21.get_layer("conv3_block1_2_conv").strides == (2, 2)
    assert not ssd21.get_layer("conv2_block1_1_conv").use_bias and ssd21.get_layer("conv1_bn").epsilon == 1e-5
    # v1 (keras.applications): the stride on the first 1x1 conv, conv biases, epsilon 1.001e-5.
    assert keras_layout.get_layer("conv3_block1_1_conv").strides == (2, 2)
    assert keras_layout.get_layer("conv3_block1_2_conv").strides == (1, 1)
    assert keras_layout.get_layer("conv2_block1_1_conv").use_bias
    # Both keep conv4 at stride 1 and end in 38x38x1024; v1.5 has fewer weights (no conv biases).
    for model in (ssd21, keras_layout):
        assert model.get_layer("conv4_block6_out").output.shape[1:] == (38, 38, 1024)
    assert keras_layout.count_params() > ssd21.count_params()
    with pytest.raises(ValueError, match="backbone layout must be one of torchvision, keras"):
        ssd_tf.build_ssd300(backbone_layout="caffe")


def test_head_kernels_are_xavier_uniform(ssd21):
    kernel = ssd21.get_layer("conf0_conv").get_weights()[0]  # 3x3x1024x84
    limit = np.sqrt(6 / (9 * 1024 + 9 * 84))
    largest = float(np.abs(kernel).max())
    # float32 draws can round a hair above the float64 limit; a wrong init would miss by far more.
    assert 0.9 * limit < largest <= limit * (1 + 1e-6)


def test_backbone_weights_from_file(tmp_path):
    # A keras.applications ResNet50 weights file (random weights here: no internet) loads by name.
    stock = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(300, 300, 3))
    path = tmp_path / "resnet50_notop.weights.h5"
    stock.save_weights(path)
    model = ssd_tf.build_ssd300(num_classes=2, backbone_weights=str(path), backbone_layout="keras")
    for name in ("conv1_conv", "conv3_block1_1_conv", "conv4_block1_0_conv", "conv4_block6_3_bn"):
        for ours, theirs in zip(model.get_layer(name).get_weights(), stock.get_layer(name).get_weights()):
            np.testing.assert_array_equal(ours, theirs)


def test_imagenet_weights_offline_error_says_what_to_do(monkeypatch):
    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure on https://...: [Errno -2] Name or service not known")

    monkeypatch.setattr(backbone.keras.applications, "ResNet50", no_network)
    with pytest.raises(ValueError, match="offline, pass backbone_weights='none'.*backbone_weights="):
        ssd_tf.build_ssd300(backbone_weights="imagenet", backbone_layout="keras")
    # The default layout's "imagenet" is torchvision's file, fetched into Keras' cache.
    monkeypatch.setattr(backbone.keras.utils, "get_file", no_network)
    with pytest.raises(ValueError, match=r"'none'.*resnet50-0676ba61\.pth \(downloaded elsewhere\) in .*models/"):
        ssd_tf.build_ssd300(backbone_weights="imagenet")


def test_bad_weights_path_names_the_file(tmp_path):
    with pytest.raises(ValueError, match="missing.h5"):
        ssd_tf.build_ssd300(backbone_weights=str(tmp_path / "missing.h5"), backbone_layout="keras")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        ssd_tf.build_ssd300(backbone_weights=str(tmp_path / "missing.pth"))


@pytest.mark.slow
def test_real_image_detections_equal_the_references_postprocess_of_the_model_outputs(ssd21):
    torch = pytest.importorskip("torch")
    design = pytest.importorskip("reference.design")
    path = shared_data("raccoon", "VOC2007", "JPEGImages", "raccoon-1.jpg")
    image = np.asarray(Image.open(path).convert("RGB").resize((300, 300)), np.float32)[None]
    out = ssd21.predict(image, verbose=0)
    assert np.all(np.isfinite(out))
    # A random network's class logits spread widely (std about 5): many scores round to 1.0 and
    # tie, which leaves the order of detections undefined. Soften them so every score differs.
    out[..., 4:] *= 0.3
    dets = {k: v.numpy()[0] for k, v in ssd_tf.decode_detections(out).items()}
    ref_boxes, ref_labels, ref_scores = design.PostProcess(design.dboxes300_coco())(
        torch.tensor(out[..., :4]).permute(0, 2, 1), torch.tensor(out[..., 4:]).permute(0, 2, 1))[0]
    n = int(dets["num_detections"])
    assert n == len(ref_scores) and n > 20
    order = np.argsort(-ref_scores.numpy(), kind="stable")
    np.testing.assert_allclose(dets["scores"][:n], ref_scores.numpy()[order], rtol=1e-5)
    np.testing.assert_array_equal(dets["classes"][:n], ref_labels.numpy()[order])
    np.testing.assert_allclose(dets["boxes"][:n], ref_boxes.numpy()[order], atol=1e-5)


def test_zero_init_residual_zeroes_only_each_bottlenecks_last_batch_norm_scale():
    import re

    model = ssd_tf.build_ssd300(num_classes=2, zero_init_residual=True)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    last = [layer for layer in norms if re.fullmatch(r"conv\d_block\d_3_bn", layer.name)]
    assert len(last) == 3 + 4 + 6  # one per bottleneck of conv2, conv3, conv4
    for layer in norms:
        np.testing.assert_array_equal(layer.gamma.numpy(), 0.0 if layer in last else 1.0)
    # So at the start each block is its shortcut: conv2_block2 passes its input through (ReLU'd).
    probe = keras.Model(model.input, [model.get_layer("conv2_block1_out").output,
                                      model.get_layer("conv2_block2_out").output])
    block_in, block_out = probe(_images(1), training=False)
    np.testing.assert_allclose(block_out, np.maximum(block_in, 0), atol=1e-6)


@pytest.mark.slow
def test_files_saved_before_layouts_load_as_keras_layout_and_predict_as_before(tmp_path):
    """A .keras file and a weights-only run folder written by the code before backbone layouts
    (commit 41914b7) load as the keras.applications layout and give the outputs that code gave.
    The old file is rebuilt from its stored config.json; its weights are set by a rule that
    depends only on each variable's position and shape (tests/old_model_fixture.py)."""
    import json
    import pathlib
    import zipfile

    from old_model_fixture import SLOTS, deterministic_weights
    from ssd_tf.inference import loading

    old = json.loads((pathlib.Path(__file__).parent / "data" / "ssd300-keras-layout-41914b7.json").read_text())
    assert "backbone_layout" not in json.dumps(old["config"])  # the old file lacks the new setting
    donor = ssd_tf.build_ssd300(num_classes=2, backbone_layout="keras")
    deterministic_weights(donor)
    donor.save(tmp_path / "donor.keras")
    with zipfile.ZipFile(tmp_path / "donor.keras") as z:
        weights = z.read("model.weights.h5")
    with zipfile.ZipFile(tmp_path / "old.keras", "w") as z:
        z.writestr("config.json", json.dumps(old["config"]))
        z.writestr("metadata.json", json.dumps(old["metadata"]))
        z.writestr("model.weights.h5", weights)
    path = shared_data("raccoon", "VOC2007", "JPEGImages", "raccoon-1.jpg")
    image = np.asarray(Image.open(path).convert("RGB").resize((300, 300), Image.BILINEAR), np.float32)[None]
    expected = np.array(old["outputs"])
    # float32 through 60 layers, on whichever CPU: 1e-3 of the largest output (about 256 here);
    # another normalisation or stride moves them by the order of the outputs themselves.
    tolerance = 1e-3 * np.abs(expected).max()

    model = loading.load_keras_model(tmp_path / "old.keras")
    assert backbone.layout_of(model) == "keras"
    np.testing.assert_allclose(model(image, training=False).numpy()[0, SLOTS], expected, atol=tolerance)
    # A run folder of that time with only a weights checkpoint: its config.json has no layout either.
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"dataset": "synthetic", "seed": 0}))
    loading.write_classes(run / "classes.json", ("background", "thing"))
    donor.save_weights(run / "checkpoints" / "latest.weights.h5")
    again = loading.load_keras_model(run)
    assert backbone.layout_of(again) == "keras"
    np.testing.assert_allclose(again(image, training=False).numpy()[0, SLOTS], expected, atol=tolerance)


def test_importing_the_library_never_imports_torch():
    """torch is an optional extra: only reading a PyTorch file imports it."""
    import subprocess
    import sys

    code = ("import sys, ssd_tf, ssd_tf.modeling.nvidia, ssd_tf.modeling.torch_weights, ssd_tf.training.finetune, "
            "ssd_tf.training.run, ssd_tf.evaluation.coco_metric, ssd_tf.export.saved_model, ssd_tf.export.tflite; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_sync_bn_synchronises_every_batch_norm(ssd21):
    """--sync-bn reaches all 53 batch norms of SSD300 (train() passes config.sync_bn on, as the resume
    test sees); their arithmetic across replicas is tested in test_training."""
    import keras

    import ssd_tf

    def norms(model):
        return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms(ssd21)) == 53 and not any(layer.synchronized for layer in norms(ssd21))
    synced = norms(ssd_tf.build_ssd300(num_classes=3, sync_bn=True))
    assert len(synced) == 53 and all(layer.synchronized for layer in synced)

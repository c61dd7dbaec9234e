import keras
import numpy as np
import pytest
from PIL import Image

import ssd_tf
from conftest import shared_data
from ssd_tf import backbone


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


def test_normalisation_is_inside_the_model(ssd21):
    layer = ssd21.get_layer("preprocess")
    rgb = np.array([[[[10.0, 20.0, 30.0]]]], np.float32)
    np.testing.assert_allclose(layer(rgb), [[[[30 - 103.939, 20 - 116.779, 10 - 123.68]]]], rtol=1e-6)


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
    model = ssd_tf.build_ssd300(num_classes=2, backbone_weights=str(path))
    for name in ("conv1_conv", "conv3_block1_1_conv", "conv4_block1_0_conv", "conv4_block6_3_bn"):
        for ours, theirs in zip(model.get_layer(name).get_weights(), stock.get_layer(name).get_weights()):
            np.testing.assert_array_equal(ours, theirs)


def test_imagenet_weights_offline_error_says_what_to_do(monkeypatch):
    def no_network(**kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: [Errno -2] Name or service not known")

    monkeypatch.setattr(backbone.keras.applications, "ResNet50", no_network)
    with pytest.raises(RuntimeError, match="no internet access.*backbone_weights"):
        ssd_tf.build_ssd300(backbone_weights="imagenet")


def test_bad_weights_path_names_the_file(tmp_path):
    with pytest.raises(ValueError, match="missing.h5"):
        ssd_tf.build_ssd300(backbone_weights=str(tmp_path / "missing.h5"))


def test_real_image_detections_equal_the_seeds_postprocess_of_the_model_outputs(ssd21):
    torch = pytest.importorskip("torch")
    seed = pytest.importorskip("ssd_tf.seed_reference")
    path = shared_data("raccoon", "VOC2007", "JPEGImages", "raccoon-1.jpg")
    image = np.asarray(Image.open(path).convert("RGB").resize((300, 300)), np.float32)[None]
    out = ssd21.predict(image, verbose=0)
    assert np.all(np.isfinite(out))
    # A random network's class logits spread widely (std about 5): many scores round to 1.0 and
    # tie, which leaves the order of detections undefined. Soften them so every score differs.
    out[..., 4:] *= 0.3
    dets = {k: v.numpy()[0] for k, v in ssd_tf.decode_detections(out).items()}
    ref_boxes, ref_labels, ref_scores = seed.PostProcess(seed.dboxes300_coco())(
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

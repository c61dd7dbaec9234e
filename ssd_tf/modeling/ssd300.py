"""SSD300 with a ResNet50 backbone as a Keras 3 functional model (NVIDIA SSD300 v1.1 layout)."""

import keras
from keras import layers

from ssd_tf.core import anchors as anchors_lib
from ssd_tf.modeling import backbone as backbone_lib

# The library's other Keras-serializable classes (loss, optimizer, schedule), registered with the
# model's layers so that a saved, compiled model loads wherever a model can be built.
from ssd_tf.modeling import losses  # noqa: F401

# Extra feature blocks after conv4: (middle channels, out channels, stride, padding).
# Padding is PyTorch-style (explicit, symmetric); Keras "same" would pad only bottom/right.
EXTRA_BLOCKS = ((256, 512, 2, 1), (256, 512, 2, 1), (128, 256, 2, 1), (128, 256, 1, 0), (128, 256, 1, 0))
# PyTorch BatchNorm defaults, as in the reference's extra blocks.
_BN = dict(epsilon=1e-5, momentum=0.9)


def _extra_block(x, middle, out, stride, padding, name, synchronized=False):
    x = layers.Conv2D(middle, 1, use_bias=False, name=name + "_1_conv")(x)
    x = backbone_lib.batch_norm(name + "_1_bn", synchronized, **_BN)(x)
    x = layers.Activation("relu", name=name + "_1_relu")(x)
    if padding:
        x = layers.ZeroPadding2D(padding, name=name + "_pad")(x)
    x = layers.Conv2D(out, 3, strides=stride, use_bias=False, name=name + "_2_conv")(x)
    x = backbone_lib.batch_norm(name + "_2_bn", synchronized, **_BN)(x)
    return layers.Activation("relu", name=name + "_2_relu")(x)


def _head(feature, boxes_per_cell, values_per_box, name):
    """3x3 conv head -> [B, boxes_per_cell * S * S, values_per_box] in anchor slot order."""
    size = feature.shape[1]
    x = layers.Conv2D(
        boxes_per_cell * values_per_box, 3, padding="same",
        kernel_initializer="glorot_uniform", name=name + "_conv",
    )(feature)
    # Channels are (shape, value); move the box shape in front of the cells so slots run
    # shape-major, then row-major over cells, as anchors.default_boxes() does.
    x = layers.Reshape((size, size, boxes_per_cell, values_per_box), name=name + "_split")(x)
    x = layers.Permute((3, 1, 2, 4), name=name + "_shape_major")(x)
    return layers.Reshape((boxes_per_cell * size * size, values_per_box), name=name + "_flat")(x)


def build_ssd300(num_classes=21, backbone_weights=None, name="ssd300", sync_bn=False, zero_init_residual=False,
                 backbone_layout=backbone_lib.DEFAULT_LAYOUT):
    """Build SSD300-ResNet50.

    Args:
      num_classes: classes including background (class 0).
      backbone_weights: None (random init), "imagenet" or the path of a ResNet50 weights file, as
        the layout takes them: "torchvision", torchvision's ``resnet50-0676ba61.pth`` (downloaded
        to Keras' cache) or a torchvision state-dict file; "keras", keras.applications' weights
        or their .h5 file.
      sync_bn: batch norm statistics over all replicas of a tf.distribute strategy (Keras
        ``BatchNormalization(synchronized=True)``), for small per-replica batches.
      zero_init_residual: start each ResNet residual branch's last batch-norm scale at 0, for
        training from random weights (pretrained weights overwrite it).
      backbone_layout: "torchvision" (NVIDIA SSD300 v1.1's ResNet50 "v1.5", torchvision's
        normalisation) or "keras" (keras.applications' ResNet50 "v1", caffe normalisation); see
        ``ssd_tf.modeling.backbone``. The layout is saved with the model.
    Returns:
      A functional ``keras.Model``. Input: float32 RGB images [B, 300, 300, 3], 0..255
      (normalisation happens inside). Output: float32 [B, 8732, 4 + num_classes]: per default
      box (order of ``ssd_tf.default_boxes()``) 4 offsets, then class logits.

    Example:
      model = ssd_tf.build_ssd300(num_classes=21)
      model.compile(optimizer="sgd", loss=ssd_tf.SSDLoss())
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must count background plus at least one class, got {num_classes}")
    spec = anchors_lib.SSD300
    size = spec.image_size
    images = keras.Input((size, size, 3), dtype="float32", name="images")
    x = backbone_lib.preprocess_layer(backbone_layout)(images)
    x = backbone_lib.resnet50_conv4(x, sync_bn, zero_init_residual, backbone_layout)
    features = [x]
    for k, (middle, out, stride, padding) in enumerate(EXTRA_BLOCKS, start=1):
        x = _extra_block(x, middle, out, stride, padding, f"extra{k}", sync_bn)
        features.append(x)
    for feature, expected in zip(features, spec.feature_sizes):
        assert feature.shape[1] == feature.shape[2] == expected, (feature.shape, expected)

    locs, confs = [], []
    for level, (feature, nd) in enumerate(zip(features, spec.boxes_per_cell)):
        locs.append(_head(feature, nd, 4, f"loc{level}"))
        confs.append(_head(feature, nd, num_classes, f"conf{level}"))
    loc = layers.Concatenate(axis=1, name="loc")(locs)
    conf = layers.Concatenate(axis=1, name="conf")(confs)
    # float32 output even under a mixed-precision policy: the loss and NMS want full precision.
    outputs = layers.Concatenate(axis=-1, dtype="float32", name="predictions")([loc, conf])
    model = keras.Model(images, outputs, name=name)
    if backbone_weights is not None:
        backbone_lib.load_resnet50_weights(model, backbone_weights)
    return model

"""ResNet50 (keras.applications "v1" layout) up to conv4, with conv4 at stride 1.

Layer names equal keras.applications' ResNet50, so its ImageNet weights load layer by layer.
At a 300x300 input the output, ``conv4_block6_out``, is 38x38x1024 (stock ResNet50: 19x19).
"""

import keras
from keras import layers

_BN_EPS = 1.001e-5  # keras.applications' ResNet50 value
# PyTorch's BN momentum 0.1 (Keras 0.9), as the seed trains with; Keras' 0.99 leaves the moving
# statistics far from the data for the first few hundred steps. Not stored in weight files.
_BN_MOMENTUM = 0.9
# keras.applications' ResNet50 BGR channel means (caffe-style preprocessing).
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
BACKBONE_PREFIXES = ("conv1_", "conv2_", "conv3_", "conv4_")


@keras.saving.register_keras_serializable(package="ssd_tf")
class CaffePreprocess(layers.Layer):
    """RGB 0..255 -> BGR minus the ImageNet channel means, as Keras' ResNet50 weights expect.

    Lives inside the model so training and serving can't normalise differently.
    """

    def call(self, images):
        bgr = images[..., ::-1]
        return bgr - keras.ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=bgr.dtype)


def batch_norm(name, synchronized=False, epsilon=_BN_EPS, momentum=_BN_MOMENTUM, zero_gamma=False):
    """BatchNormalization with PyTorch's momentum; ``synchronized``: statistics over all replicas;
    ``zero_gamma``: scale initialised to 0 instead of 1."""
    return layers.BatchNormalization(epsilon=epsilon, momentum=momentum, synchronized=synchronized, name=name,
                                     gamma_initializer="zeros" if zero_gamma else "ones")


def _bottleneck(x, filters, stride, conv_shortcut, name, synchronized=False, zero_init_residual=False):
    if conv_shortcut:
        shortcut = layers.Conv2D(4 * filters, 1, strides=stride, name=name + "_0_conv")(x)
        shortcut = batch_norm(name + "_0_bn", synchronized)(shortcut)
    else:
        shortcut = x
    x = layers.Conv2D(filters, 1, strides=stride, name=name + "_1_conv")(x)
    x = batch_norm(name + "_1_bn", synchronized)(x)
    x = layers.Activation("relu", name=name + "_1_relu")(x)
    x = layers.Conv2D(filters, 3, padding="same", name=name + "_2_conv")(x)
    x = batch_norm(name + "_2_bn", synchronized)(x)
    x = layers.Activation("relu", name=name + "_2_relu")(x)
    x = layers.Conv2D(4 * filters, 1, name=name + "_3_conv")(x)
    x = batch_norm(name + "_3_bn", synchronized, zero_gamma=zero_init_residual)(x)
    x = layers.Add(name=name + "_add")([shortcut, x])
    return layers.Activation("relu", name=name + "_out")(x)


def _stage(x, filters, blocks, stride, name, synchronized=False, zero_init_residual=False):
    x = _bottleneck(x, filters, stride, True, name + "_block1", synchronized, zero_init_residual)
    for i in range(2, blocks + 1):
        x = _bottleneck(x, filters, 1, False, f"{name}_block{i}", synchronized, zero_init_residual)
    return x


def resnet50_conv4(x, synchronized=False, zero_init_residual=False):
    """Caffe-preprocessed images [B, H, W, 3] -> conv4 features [B, H/8, W/8, 1024] (38x38 at 300).
    ``synchronized``: batch norm over all replicas' batches. ``zero_init_residual``: each residual
    branch's last batch norm starts with scale 0, so every block starts as its shortcut (Goyal et
    al. 2017; torchvision's ``zero_init_residual``): a from-scratch network trains much faster."""
    x = layers.ZeroPadding2D(3, name="conv1_pad")(x)
    x = layers.Conv2D(64, 7, strides=2, name="conv1_conv")(x)
    x = batch_norm("conv1_bn", synchronized)(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    x = _stage(x, 64, 3, 1, "conv2", synchronized, zero_init_residual)
    x = _stage(x, 128, 4, 2, "conv3", synchronized, zero_init_residual)
    # SSD300 keeps conv4 at stride 1 (NVIDIA SSD300 v1.1) for a 38x38 first detection map.
    return _stage(x, 256, 6, 1, "conv4", synchronized, zero_init_residual)


def load_resnet50_weights(model, weights):
    """Copy keras.applications ResNet50 weights into ``model``'s backbone layers, by name.

    Args:
      weights: "imagenet" (downloaded by Keras, or read from its cache ``~/.keras/models``) or
        the path of a keras.applications ResNet50 weights file (e.g. the
        ``resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5`` Keras downloads).
    Returns the number of layers copied.
    """
    try:
        stock = keras.applications.ResNet50(include_top=False, weights=weights, input_shape=(300, 300, 3))
    except Exception as err:  # download failure or unreadable file: say which and what to do
        if weights == "imagenet":
            raise RuntimeError(
                "Could not get keras.applications' ResNet50 ImageNet weights: the download failed "
                f"({type(err).__name__}: {err}). This machine may have no internet access. Download "
                "'resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5' on a connected machine and "
                "either put it in ~/.keras/models/ or pass its path as backbone_weights."
            ) from err
        raise ValueError(f"Could not load ResNet50 weights from {weights!r}: {err}") from err
    copied = 0
    for layer in model.layers:
        if layer.name.startswith(BACKBONE_PREFIXES) and layer.weights:
            layer.set_weights(stock.get_layer(layer.name).get_weights())
            copied += 1
    return copied

"""ResNet50 up to conv4 (torchvision's ``layer3``), with conv4 at stride 1, in two layouts.

- ``"torchvision"`` (the default): NVIDIA SSD300 v1.1's backbone, torchvision's ResNet50 "v1.5".
  The stride of each stage sits on the block's 3x3 conv (PyTorch's symmetric padding 1), convs
  have no biases, batch-norm epsilon is 1e-5, and inputs are normalised as torchvision's ImageNet
  weights expect: RGB / 255, minus mean (0.485, 0.456, 0.406), over std (0.229, 0.224, 0.225).
  Takes torchvision's ImageNet weights (``resnet50-0676ba61.pth``) and NVIDIA's checkpoint.
- ``"keras"``: keras.applications' ResNet50 "v1": the stride on the block's first 1x1 conv,
  convs with biases, epsilon 1.001e-5, caffe inputs (BGR minus channel means, 0..255). Takes
  Keras' ImageNet weights. Models saved before layouts existed are this layout.

Layer names equal keras.applications' ResNet50 in both (``conv3_block1_2_conv``, ...), so weights
map by name. At a 300x300 input the output, ``conv4_block6_out``, is 38x38x1024 (stock: 19x19).
The layout travels in the model file as the class of its ``preprocess`` layer.
"""

import keras
from keras import layers

from ssd_tf.modeling import BACKBONE_LAYOUTS as LAYOUTS

DEFAULT_LAYOUT = LAYOUTS[0]
# keras.applications' ResNet50 value; torchvision's (and PyTorch's default) is 1e-5.
_EPSILON = {"keras": 1.001e-5, "torchvision": 1e-5}
# PyTorch's BN momentum 0.1 (Keras 0.9), as the reference trains with; Keras' 0.99 leaves the moving
# statistics far from the data for the first few hundred steps. Not stored in weight files.
_BN_MOMENTUM = 0.9
# keras.applications' ResNet50 BGR channel means (caffe-style preprocessing).
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# torchvision's ImageNet normalisation of RGB in [0, 1].
TORCHVISION_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_STD = (0.229, 0.224, 0.225)
BACKBONE_PREFIXES = ("conv1_", "conv2_", "conv3_", "conv4_")


@keras.saving.register_keras_serializable(package="ssd_tf")
class CaffePreprocess(layers.Layer):
    """RGB 0..255 -> BGR minus the ImageNet channel means, as Keras' ResNet50 weights expect.

    Lives inside the model so training and serving can't normalise differently.
    """

    layout = "keras"

    def call(self, images):
        bgr = images[..., ::-1]
        return bgr - keras.ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=bgr.dtype)


@keras.saving.register_keras_serializable(package="ssd_tf")
class TorchvisionPreprocess(layers.Layer):
    """RGB 0..255 -> (RGB / 255 - mean) / std, torchvision's ImageNet normalisation (NVIDIA's input).

    Lives inside the model so training and serving can't normalise differently.
    """

    layout = "torchvision"

    def call(self, images):
        mean = keras.ops.convert_to_tensor([255.0 * m for m in TORCHVISION_MEAN], dtype=images.dtype)
        scale = keras.ops.convert_to_tensor([1.0 / (255.0 * s) for s in TORCHVISION_STD], dtype=images.dtype)
        return (images - mean) * scale


def preprocess_layer(layout, name="preprocess"):
    """The normalisation layer of ``layout``."""
    check_layout(layout)
    return (TorchvisionPreprocess if layout == "torchvision" else CaffePreprocess)(name=name)


def check_layout(layout):
    if layout not in LAYOUTS:
        raise ValueError(f"backbone layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
    return layout


def layout_of(model):
    """The backbone layout of an SSD300 Keras model, read from its ``preprocess`` layer."""
    try:
        layer = model.get_layer("preprocess")
    except ValueError:
        raise ValueError(f"{model.name}: no 'preprocess' layer, so not an ssd_tf SSD300") from None
    layout = getattr(layer, "layout", None)
    if layout is None:
        raise ValueError(f"{model.name}: unknown normalisation layer {type(layer).__name__}")
    return layout


def batch_norm(name, synchronized=False, epsilon=_EPSILON["keras"], momentum=_BN_MOMENTUM, zero_gamma=False):
    """BatchNormalization with PyTorch's momentum; ``synchronized``: statistics over all replicas;
    ``zero_gamma``: scale initialised to 0 instead of 1."""
    return layers.BatchNormalization(epsilon=epsilon, momentum=momentum, synchronized=synchronized, name=name,
                                     gamma_initializer="zeros" if zero_gamma else "ones")


def _conv(x, filters, kernel, stride, name, torchvision):
    """Conv as the layout has it: torchvision pads 3x3 convs symmetrically and has no bias."""
    if torchvision and kernel == 3 and stride > 1:
        # Keras "same" at stride 2 pads bottom/right only on even inputs; PyTorch pads 1 all round.
        # (At stride 1 "same" is PyTorch's padding 1, without a padded copy of the input.)
        x = layers.ZeroPadding2D(1, name=name + "_pad")(x)
        return layers.Conv2D(filters, 3, strides=stride, use_bias=False, name=name)(x)
    if kernel == 3:
        return layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=not torchvision, name=name)(x)
    return layers.Conv2D(filters, kernel, strides=stride, use_bias=not torchvision, name=name)(x)


def _bottleneck(x, filters, stride, conv_shortcut, name, layout, synchronized=False, zero_init_residual=False):
    tv = layout == "torchvision"
    eps = _EPSILON[layout]
    if conv_shortcut:
        shortcut = _conv(x, 4 * filters, 1, stride, name + "_0_conv", tv)
        shortcut = batch_norm(name + "_0_bn", synchronized, eps)(shortcut)
    else:
        shortcut = x
    # v1 strides the first 1x1 conv, v1.5 (torchvision) the 3x3.
    x = _conv(x, filters, 1, 1 if tv else stride, name + "_1_conv", tv)
    x = batch_norm(name + "_1_bn", synchronized, eps)(x)
    x = layers.Activation("relu", name=name + "_1_relu")(x)
    x = _conv(x, filters, 3, stride if tv else 1, name + "_2_conv", tv)
    x = batch_norm(name + "_2_bn", synchronized, eps)(x)
    x = layers.Activation("relu", name=name + "_2_relu")(x)
    x = _conv(x, 4 * filters, 1, 1, name + "_3_conv", tv)
    x = batch_norm(name + "_3_bn", synchronized, eps, zero_gamma=zero_init_residual)(x)
    x = layers.Add(name=name + "_add")([shortcut, x])
    return layers.Activation("relu", name=name + "_out")(x)


def _stage(x, filters, blocks, stride, name, layout, synchronized=False, zero_init_residual=False):
    x = _bottleneck(x, filters, stride, True, name + "_block1", layout, synchronized, zero_init_residual)
    for i in range(2, blocks + 1):
        x = _bottleneck(x, filters, 1, False, f"{name}_block{i}", layout, synchronized, zero_init_residual)
    return x


def resnet50_conv4(x, synchronized=False, zero_init_residual=False, layout="keras"):
    """Normalised images [B, H, W, 3] -> conv4 features [B, H/8, W/8, 1024] (38x38 at 300).
    ``layout``: "torchvision" or "keras" (module docstring). ``synchronized``: batch norm over all
    replicas' batches. ``zero_init_residual``: each residual branch's last batch norm starts with
    scale 0, so every block starts as its shortcut (Goyal et al. 2017; torchvision's
    ``zero_init_residual``): a from-scratch network trains much faster."""
    check_layout(layout)
    tv = layout == "torchvision"
    x = layers.ZeroPadding2D(3, name="conv1_pad")(x)
    x = layers.Conv2D(64, 7, strides=2, use_bias=not tv, name="conv1_conv")(x)
    x = batch_norm("conv1_bn", synchronized, _EPSILON[layout])(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    # Zero padding equals PyTorch's -inf padding here: the input is a ReLU's, never negative.
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    x = _stage(x, 64, 3, 1, "conv2", layout, synchronized, zero_init_residual)
    x = _stage(x, 128, 4, 2, "conv3", layout, synchronized, zero_init_residual)
    # SSD300 keeps conv4 at stride 1 (NVIDIA SSD300 v1.1) for a 38x38 first detection map.
    return _stage(x, 256, 6, 1, "conv4", layout, synchronized, zero_init_residual)


def load_keras_resnet50_weights(model, weights):
    """Copy keras.applications ResNet50 weights into a "keras"-layout ``model``'s backbone, by name.

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
            reason = " ".join(str(err).split())[:200]
            raise ValueError(
                f"could not get keras.applications' ResNet50 ImageNet weights ({type(err).__name__}: {reason}); "
                "offline, pass backbone_weights='none' to start from random weights, or put "
                "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 (downloaded elsewhere) in ~/.keras/models/ "
                "or pass its path as backbone_weights="
            ) from None
        raise ValueError(f"Could not load ResNet50 weights from {weights!r}: {err}") from err
    copied = 0
    for layer in model.layers:
        if layer.name.startswith(BACKBONE_PREFIXES) and layer.weights:
            layer.set_weights(stock.get_layer(layer.name).get_weights())
            copied += 1
    return copied


def load_resnet50_weights(model, weights):
    """ImageNet weights for ``model``'s backbone, as its layout takes them.

    "torchvision" layout: "imagenet" is torchvision's ``resnet50-0676ba61.pth`` (downloaded to
    Keras' cache, hash checked), or pass the path of a torchvision ResNet50 state-dict file
    (.pth/.pt; reading it needs the ``torch`` extra). "keras" layout: "imagenet" is Keras'
    weights, or pass a keras.applications weights file (.h5). Returns the number of layers copied.
    """
    layout = layout_of(model)
    weights = str(weights)
    if layout == "keras":
        if weights.endswith((".pth", ".pt")):
            raise ValueError(f"{weights}: a PyTorch file fits the 'torchvision' backbone layout, and this model "
                             "has the 'keras' one (backbone_layout='torchvision')")
        return load_keras_resnet50_weights(model, weights)
    if weights.endswith(".h5"):
        raise ValueError(f"{weights}: keras.applications weights fit the 'keras' backbone layout, and this model "
                         "has the 'torchvision' one (backbone_layout='keras'), which takes torchvision's .pth")
    from ssd_tf.modeling import torch_weights  # imports torch lazily, only when asked

    path = torch_weights.torchvision_resnet50_file() if weights == "imagenet" else weights
    return torch_weights.load_torchvision_backbone(model, path)

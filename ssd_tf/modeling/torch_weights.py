"""PyTorch weights into SSD300: torchvision's ImageNet ResNet50 and NVIDIA's COCO SSD300 v1.1.

Files are read with ``torch.load(weights_only=True)``: PyTorch's restricted unpickler, which
builds tensors and plain containers and never runs code from the file. Only
``collections.Counter`` is allowed beyond its defaults (NVIDIA's checkpoint keeps its
MultiStepLR milestones in one). Reading needs torch (``pip install "ssd-tf[torch]"``); nothing
else in ssd_tf imports it.

Name maps (torch -> Keras layer, see ``ssd_tf.modeling.backbone`` for the Keras names):
- torchvision: ``conv1``, ``bn1``, ``layerS.B.{conv1,bn1,conv2,bn2,conv3,bn3,downsample.0,downsample.1}``
  -> ``conv1_conv``, ``conv1_bn``, ``conv{S+1}_block{B+1}_{1_conv,1_bn,2_conv,2_bn,3_conv,3_bn,0_conv,0_bn}``.
- NVIDIA: ``feature_extractor.feature_extractor.N`` is ``resnet50.children()[:7]`` (0 conv1, 1 bn1,
  4 layer1, 5 layer2, 6 layer3); ``additional_blocks.K.{0,1,3,4}`` -> ``extra{K+1}_{1_conv,1_bn,2_conv,2_bn}``;
  ``loc.L``, ``conf.L`` -> ``loc{L}_conv``, ``conf{L}_conv``, with output channels reordered: NVIDIA
  reads a head as ``view(B, values, -1)`` (channel = value * boxes + box), this model as
  (box, value) (channel = box * values + value).
"""

import collections
import hashlib
import pathlib

import numpy as np

from ssd_tf.progress import track

# torchvision's IMAGENET1K_V1 ResNet50 (acc@1 76.13), what NVIDIA's SSD300 v1.1 was trained from.
TORCHVISION_RESNET50_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"
TORCHVISION_RESNET50_FILE = "resnet50-0676ba61.pth"
_BN_TENSORS = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
               ("running_var", "moving_variance"))


class WeightsError(ValueError):
    """A weights file that does not fit the model: names the file and the first tensor."""


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError('reading PyTorch weights files (.pt, .pth) needs torch: pip install "ssd-tf[torch]"') \
            from None
    return torch


def _reason(err):
    """torch.load's failure in a line, without its advice to retry with ``weights_only=False``:
    that runs whatever code the file holds, which is what the safe loader is there to refuse."""
    text = " ".join(str(err).split())
    if "Weights only load failed" not in text:
        return f"{type(err).__name__}: {text[:300] or type(err).__name__}"
    detail = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else \
        text.split("trusted source.", 1)[-1]
    for advice in (" Please use", " Check the documentation"):  # allow-listing or retrying: not for us to say
        detail = detail.split(advice, 1)[0]
    detail = detail.strip()[:200]
    if detail.startswith("Unsupported operand"):
        return f"not a pickle of tensors ({detail})"
    return f"loading it would run code or build objects from it, which this project never does ({detail})"


def read_state_dict(path):
    """A PyTorch weights file -> {name: float32 numpy array}, read without running code from it.

    Accepts a bare state dict, or a training checkpoint (a dict whose ``model`` or ``state_dict``
    entry is one, beside optimizer and scheduler state). ``module.`` prefixes (DataParallel) are
    stripped. Raises WeightsError naming the file when it is not such a file or is truncated.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    torch = _torch()
    try:
        with torch.serialization.safe_globals([collections.Counter]):
            loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and torch errors alike: say which file and why
        raise WeightsError(f"{path}: not a readable PyTorch weights file: {_reason(err)}") from None
    state = loaded
    if isinstance(loaded, dict):
        for key in ("model", "state_dict"):
            if isinstance(loaded.get(key), dict):
                state = loaded[key]
                break
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise WeightsError(f"{path}: holds no state dict (a dict of tensors, or a checkpoint with one under "
                           "'model')")
    out = {}
    for name, tensor in state.items():
        name = name[len("module."):] if name.startswith("module.") else name
        out[name] = tensor.detach().to(torch.float32).numpy() if tensor.is_floating_point() else tensor.numpy()
    return out


# ---------------------------------------------------------------- name maps

def _block_map(torch_prefix, keras_prefix):
    """One bottleneck: [(keras layer, torch module)]."""
    parts = [("1_conv", "conv1"), ("1_bn", "bn1"), ("2_conv", "conv2"), ("2_bn", "bn2"), ("3_conv", "conv3"),
             ("3_bn", "bn3"), ("0_conv", "downsample.0"), ("0_bn", "downsample.1")]
    return [(f"{keras_prefix}_{k}", f"{torch_prefix}.{t}") for k, t in parts]


def backbone_map(stem, stage_prefix):
    """[(keras layer, torch module)] of the ResNet50 up to layer3. ``stem``: (conv1 name, bn1 name);
    ``stage_prefix(S)``: the torch prefix of layerS."""
    pairs = [("conv1_conv", stem[0]), ("conv1_bn", stem[1])]
    for stage, blocks in ((1, 3), (2, 4), (3, 6)):
        for b in range(blocks):
            pairs += [p for p in _block_map(f"{stage_prefix(stage)}.{b}", f"conv{stage + 1}_block{b + 1}")
                      if b == 0 or not p[0].endswith(("_0_conv", "_0_bn"))]
    return pairs


TORCHVISION_MAP = backbone_map(("conv1", "bn1"), lambda s: f"layer{s}")
_FE = "feature_extractor.feature_extractor"
NVIDIA_MAP = (backbone_map((f"{_FE}.0", f"{_FE}.1"), lambda s: f"{_FE}.{s + 3}")
              + [(f"extra{k + 1}_{name}", f"additional_blocks.{k}.{index}")
                 for k in range(5) for name, index in (("1_conv", 0), ("1_bn", 1), ("2_conv", 3), ("2_bn", 4))]
              + [(f"{head}{level}_conv", f"{head}.{level}") for head in ("loc", "conf") for level in range(6)])


def _head_order(channels, boxes):
    """Keras channel (box, value) -> NVIDIA channel (value, box)."""
    values = channels // boxes
    return np.array([v * boxes + d for d in range(boxes) for v in range(values)])


def _layer_values(layer, torch_name, state, path):
    """The Keras weights of ``layer`` from ``state``'s tensors under ``torch_name``, shapes checked."""
    import keras

    def get(key, shape):
        full = f"{torch_name}.{key}"
        if full not in state:
            raise WeightsError(f"{path}: missing tensor {full} (for layer {layer.name}): not a state dict of this "
                               "network")
        value = state[full]
        if tuple(value.shape) != tuple(shape):
            raise WeightsError(f"{path}: tensor {full} has shape {tuple(value.shape)}, layer {layer.name} needs "
                               f"{tuple(shape)}: another network or class count")
        return value

    if isinstance(layer, keras.layers.BatchNormalization):
        current = {w.name: w for w in layer.weights}
        return [get(t, current[k].shape) for t, k in _BN_TENSORS if k in current]
    kernel = layer.kernel
    kh, kw, cin, cout = kernel.shape
    weight = get("weight", (cout, cin, kh, kw)).transpose(2, 3, 1, 0)  # OIHW -> HWIO
    values = [weight]
    if layer.use_bias:
        values.append(get("bias", (cout,)))
    if layer.name.startswith(("loc", "conf")):
        from ssd_tf.core import anchors

        level = int(layer.name[len("conf" if layer.name.startswith("conf") else "loc"):-len("_conv")])
        order = _head_order(cout, anchors.SSD300.boxes_per_cell[level])
        values = [v[..., order] for v in values]
    return values


def load_state_dict(model, state, name_map, path):
    """Set each mapped layer of ``model`` from ``state`` (all checked before any is set).
    Returns the Keras layer names set."""
    updates = []
    for keras_name, torch_name in track(name_map, len(name_map), f"reading {pathlib.Path(path).name}", unit="layers"):
        layer = model.get_layer(keras_name)
        updates.append((layer, _layer_values(layer, torch_name, state, path)))
    for layer, values in updates:
        layer.set_weights(values)
    return [layer.name for layer, _ in updates]


# ---------------------------------------------------------------- entry points

def torchvision_resnet50_file():
    """Path of torchvision's ImageNet ResNet50 weights in Keras' cache (``~/.keras/models``),
    downloaded there when missing; its SHA-256 must start with the hash in its name."""
    import keras

    try:
        path = keras.utils.get_file(TORCHVISION_RESNET50_FILE, TORCHVISION_RESNET50_URL, cache_subdir="models")
    except Exception as err:
        cache = pathlib.Path(keras.config.keras_home() if hasattr(keras.config, "keras_home") else "~/.keras")
        reason = " ".join(str(err).split())[:200]
        raise WeightsError(
            f"could not download torchvision's ResNet50 ImageNet weights ({TORCHVISION_RESNET50_URL}: "
            f"{type(err).__name__}: {reason}); offline, pass backbone_weights='none' to start from random weights, "
            f"or put {TORCHVISION_RESNET50_FILE} (downloaded elsewhere) in {cache / 'models'}/ or pass its path as "
            "backbone_weights="
        ) from None
    check_hash_prefix(path)
    return path


def check_hash_prefix(path):
    """torchvision's check: a file named ``name-<hex>.pth`` has a SHA-256 starting with <hex>."""
    path = pathlib.Path(path)
    expected = path.stem.rsplit("-", 1)[-1]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(expected):
        raise WeightsError(f"{path}: SHA-256 {digest[:16]}... does not start with {expected}, as its name says: "
                           "a partial or corrupt download; delete it and retry")


def load_torchvision_backbone(model, path):
    """torchvision ResNet50 state dict (e.g. ``resnet50-0676ba61.pth``) -> ``model``'s backbone
    (conv1 to layer3; layer4 and fc are not used). Returns the number of layers set."""
    return len(load_state_dict(model, read_state_dict(path), TORCHVISION_MAP, path))

"""What every export does first: name the classes and take a float32 model (refusing to overwrite: ssd_tf.paths)."""


from ssd_tf.core.classes import CLASSES_FILE, generic_names, write_classes
from ssd_tf.modeling.backbone import layout_of
from ssd_tf.modeling.ssd300 import build_ssd300


def labels_text(class_names):
    """``labels.txt`` of a .tflite or .onnx export: line i names output class i (our class i + 1)."""
    return "".join(f"{n}\n" for n in class_names[1:])


def write_model_file(target, data, labels_file, class_names, category_ids):
    """Write an exported model's bytes to ``target``, with ``labels_file`` and classes.json beside it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    (target.parent / labels_file).write_text(labels_text(class_names))
    write_classes(target.parent / CLASSES_FILE, class_names, category_ids)
    return target


def model_classes(model, class_names, category_ids):
    """(class_names, category_ids) for ``model``: the given ones when they fit its class count, else generic."""
    num_classes = int(model.output_shape[-1]) - 4
    if class_names is None or len(class_names) != num_classes:
        return generic_names(num_classes), tuple(range(num_classes))
    return tuple(class_names), tuple(category_ids) if category_ids is not None else tuple(range(num_classes))


def float32_model(model):
    """``model`` itself when float32; else a float32 copy with the same weights (a float16- or
    bfloat16-trained model serves in float32 on CPUs, where float16 is slow)."""
    # The model's own policy stays float32 under mixed precision (Keras gives it to the layers).
    if all(layer.dtype_policy.compute_dtype == "float32" for layer in model.layers):
        return model
    copy = build_ssd300(int(model.output_shape[-1]) - 4, backbone_layout=layout_of(model))
    copy.set_weights(model.get_weights())
    return copy

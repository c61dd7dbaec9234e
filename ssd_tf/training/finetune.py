"""Start from a trained detector's weights (fine-tuning, the TF Object Detection API's
``fine_tune_checkpoint``): copy every layer whose weights fit, keep the rest freshly initialised."""

import json
import logging
import pathlib

from ssd_tf.inference import loading
from ssd_tf.modeling.backbone import layout_of

log = logging.getLogger("ssd_tf.training.finetune")
INIT_FILE = "init_from.json"


def load_source(source):
    """The trained Keras SSD300 at ``source`` (run folder, .keras file or imported folder)."""
    return loading.load_keras_model(source)


def init_from(model, source, source_name=None):
    """Copy into ``model`` each layer of ``source`` (a path or a Keras model) with the same name and
    weight shapes. With another class count the class heads (``conf*_conv``) don't fit and keep
    their initialisation; the backbone, extra blocks and box heads (``loc*_conv``) are copied.

    Raises ValueError when the backbone layouts differ. Returns {"source" (``source_name``, or the
    path), "copied", "initialised"} (layer names).
    """
    trained = load_source(source) if isinstance(source, (str, pathlib.Path)) else source
    source = source_name or source
    ours, theirs = layout_of(model), layout_of(trained)
    if ours != theirs:
        raise ValueError(f"init_from={source}: its backbone layout is {theirs!r}, this run's is {ours!r}: "
                         f"train with backbone_layout={theirs!r}")
    copied, initialised = [], []
    for layer in model.layers:
        if not layer.weights:
            continue
        try:
            values = trained.get_layer(layer.name).get_weights()
        except ValueError:
            initialised.append(layer.name)
            continue
        current = layer.get_weights()
        if len(values) == len(current) and all(a.shape == b.shape for a, b in zip(values, current)):
            layer.set_weights(values)
            copied.append(layer.name)
        else:
            initialised.append(layer.name)
    if not copied:
        raise ValueError(f"init_from={source}: no layer fits this model; is it an SSD300?")
    return {"source": str(source), "copied": copied, "initialised": initialised}


def record(result, run):
    """Log what ``init_from`` did and write it to ``run/init_from.json``."""
    log.info("init from %s: %d layers copied, %d initialised (%s)", result["source"], len(result["copied"]),
             len(result["initialised"]), ", ".join(result["initialised"]) or "none")
    if run is not None:
        (pathlib.Path(run) / INIT_FILE).write_text(json.dumps(result, indent=2) + "\n")

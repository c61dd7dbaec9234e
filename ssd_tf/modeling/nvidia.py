"""Import NVIDIA's COCO-trained SSD300 v1.1 (PyTorch) as a model folder.

NVIDIA publishes ``nvidia_ssdpyt_amp_200703.pt`` (what torch.hub's ``nvidia_ssd`` downloads from
NGC): a training checkpoint ``{'epoch', 'iteration', 'optimizer', 'scheduler', 'label_map',
'model'}`` whose ``model`` is the state dict of SSD300 on torchvision's ResNet50 with 81 labels
(background plus COCO's 80 categories in the instances file's order). Importing writes
``DIR/final.keras`` (the "torchvision" backbone layout) and ``DIR/classes.json``; every command
that takes ``--model`` takes DIR.

A checkpoint with another label count is refused unless its count is asked for
(``num_classes``); its classes are then named ``class_1`` ... with ids 1..C-1.
"""

import json
import pathlib
import shutil
import tempfile

from ssd_tf.core.classes import CLASSES_FILE, write_classes
from ssd_tf.modeling import torch_weights
from ssd_tf.modeling.ssd300 import build_ssd300

# COCO's 80 categories as the instances files list them: (category id, name). NVIDIA's label k
# (1..80) is the k-th of these; label 0 is background.
COCO_CATEGORIES = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"), (7, "train"),
    (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"),
    (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"), (20, "sheep"),
    (21, "cow"), (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe"), (27, "backpack"),
    (28, "umbrella"), (31, "handbag"), (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"),
    (36, "snowboard"), (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"),
    (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"), (46, "wine glass"),
    (47, "cup"), (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"),
    (54, "sandwich"), (55, "orange"), (56, "broccoli"), (57, "carrot"), (58, "hot dog"), (59, "pizza"),
    (60, "donut"), (61, "cake"), (62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"),
    (67, "dining table"), (70, "toilet"), (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"),
    (76, "keyboard"), (77, "cell phone"), (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"),
    (82, "refrigerator"), (84, "book"), (85, "clock"), (86, "vase"), (87, "scissors"), (88, "teddy bear"),
    (89, "hair drier"), (90, "toothbrush"),
)
NVIDIA_NUM_CLASSES = 1 + len(COCO_CATEGORIES)  # 81


def label_count(state, path):
    """Labels per default box of an NVIDIA state dict (from ``conf.0``: 4 boxes per cell)."""
    if "conf.0.weight" not in state:
        raise torch_weights.WeightsError(f"{path}: missing tensor conf.0.weight: not a state dict of NVIDIA's "
                                         "SSD300")
    channels = state["conf.0.weight"].shape[0]
    if channels % 4:
        raise torch_weights.WeightsError(f"{path}: tensor conf.0.weight has {channels} output channels, not 4 "
                                         "boxes x labels")
    return channels // 4


def import_nvidia(checkpoint, output, num_classes=NVIDIA_NUM_CLASSES):
    """Import NVIDIA's SSD300 checkpoint (or a bare state dict of it) into the folder ``output``.

    Writes ``output/final.keras``, ``output/classes.json`` and ``output/imported.json`` (the source
    and the tensors' count). Refuses an existing ``output/final.keras``. Raises
    ``torch_weights.WeightsError`` naming the file and the first tensor that does not fit (missing,
    wrong shape, unexpected), before anything is written. Returns (output path, model).
    """
    checkpoint, output = pathlib.Path(checkpoint), pathlib.Path(output)
    if (output / "final.keras").exists():
        raise FileExistsError(f"{output / 'final.keras'} exists: choose another output=, or delete it first")
    state = torch_weights.read_state_dict(checkpoint)
    labels = label_count(state, checkpoint)
    if labels != num_classes:
        raise torch_weights.WeightsError(
            f"{checkpoint}: tensor conf.0.weight holds {labels} labels per box, NVIDIA's COCO SSD300 has "
            f"{num_classes}; to import it with {labels} labels (generic class names), pass num_classes={labels}")
    used = {name for _, name in torch_weights.NVIDIA_MAP}
    unexpected = sorted(k for k in state if k.rsplit(".", 1)[0] not in used and not k.endswith("num_batches_tracked"))
    if unexpected:
        raise torch_weights.WeightsError(f"{checkpoint}: unexpected tensor {unexpected[0]} ({len(unexpected)} in all): "
                                         "not NVIDIA's SSD300 v1.1 on ResNet50")
    model = build_ssd300(num_classes, backbone_layout="torchvision")
    torch_weights.load_state_dict(model, state, torch_weights.NVIDIA_MAP, checkpoint)
    if num_classes == NVIDIA_NUM_CLASSES:
        names = ["background"] + [name for _, name in COCO_CATEGORIES]
        ids = [0] + [cid for cid, _ in COCO_CATEGORIES]
    else:
        names = ["background"] + [f"class_{i}" for i in range(1, num_classes)]
        ids = list(range(num_classes))
    # Written beside, then moved in: a failure leaves no half-written model folder.
    output.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(dir=output, prefix=".import-"))
    try:
        model.save(staging / "final.keras")
        write_classes(staging / CLASSES_FILE, names, ids)
        (staging / "imported.json").write_text(json.dumps({
            "source": str(checkpoint.resolve()), "format": "NVIDIA SSD300 v1.1 (PyTorch)",
            "backbone_layout": "torchvision", "num_classes": num_classes, "tensors": len(state)}, indent=2) + "\n")
        for item in staging.iterdir():
            shutil.move(str(item), str(output / item.name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output, model

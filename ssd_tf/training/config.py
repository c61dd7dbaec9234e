"""TrainConfig: everything a training run needs, validated, saved with the run."""

import dataclasses
import json
import pathlib
import time

from ssd_tf.data.kinds import DEFAULT_SPLITS, KINDS
from ssd_tf.modeling import BACKBONE_LAYOUTS, LEGACY_LAYOUT  # noqa: F401 (the scripts' choices)
from ssd_tf.paths import refuse_existing

DATASETS = KINDS
STRATEGIES = ("auto", "default", "mirrored", "multiworker")
PRECISIONS = (None, "float16", "bfloat16")
SCHEDULES = ("step", "cosine")
JIT_COMPILE = ("auto", "on", "off")  # XLA for the training step; auto: Keras' choice (on with one GPU)


@dataclasses.dataclass
class TrainConfig:
    """A training run. ``lr`` is per 32 images: the run uses lr * batch_size / 32 (NVIDIA recipe)."""

    dataset: str = "synthetic"
    data_dir: str | None = None
    train_split: str | None = None  # default: voc "train", coco "train2017"
    val_split: str | None = None  # default: voc "val", coco "val2017"; "" for no validation
    classes: tuple | None = None  # VOC class names; default the 20 VOC classes
    synthetic_images: int = 64
    epochs: int | None = None  # default per data set, see resolved()
    batch_size: int = 8  # global, over all replicas and workers
    lr: float | None = None  # per 32 images
    warmup_steps: int | None = None
    schedule: str | None = None  # step (x0.1 at 2/3 and 5/6 of the epochs) or cosine; None: per data set
    momentum: float = 0.9
    weight_decay: float = 5e-4
    mixed_precision: str | None = None
    jit_compile: str = "auto"
    backbone_weights: str | None = None  # "imagenet", "none" (random init) or a path; None: per data set
    # "torchvision" (NVIDIA's ResNet50 v1.5) or "keras" (keras.applications v1); None: torchvision, or
    # the --init-from model's
    backbone_layout: str | None = None
    init_from: str | None = None  # a trained model (run folder, .keras, imported folder) to start from
    seed: int = 0
    output: str | None = None
    strategy: str = "auto"
    resume: bool = False
    steps_per_epoch: int | None = None  # cap, for smoke runs
    val_images: int = 4  # validation images drawn to TensorBoard at each validation
    eval_every: int | None = None  # epochs between validations, and after the last: validation loss (after
    # precise BN), COCO mAP, TensorBoard images (0: none while training); None: per data set
    sync_bn: bool = False  # batch norm statistics over all replicas (small per-replica batches)
    precise_bn: int | None = None  # batches whose statistics replace BN's moving averages before validation
    # (0: off); None: per data set

    def resolved(self):
        """Copy with data-set defaults filled in and every field checked."""
        c = dataclasses.replace(self)
        if c.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {c.dataset!r}")
        if c.dataset != "synthetic" and not c.data_dir:
            raise ValueError(f"dataset {c.dataset!r} needs data_dir= (its data folder)")
        c.train_split = c.train_split if c.train_split is not None else DEFAULT_SPLITS[c.dataset][0]
        c.val_split = c.val_split if c.val_split is not None else DEFAULT_SPLITS[c.dataset][1]
        # NVIDIA SSD300 v1.1 recipe for COCO: 65 epochs, lr 2.6e-3 per 32 images, 300 warmup steps.
        # The built-in set trains from random weights in a few minutes: 48 steps, a high rate,
        # cosine decay (measured in the README).
        # It validates after epochs 4 and 7 only: validating costs about 12 s an epoch there. 7 epochs (not 6)
        # since NVIDIA's torchvision layout became the default: AP50 0.593 and 0.522 for seeds 0 and 1, against
        # 0.505 and 0.486 after 6 (2026-12-01).
        # A YOLO set is most often a user's own small set, as VOC is: VOC's recipe.
        defaults = {"coco": (65, 2.6e-3, 300, "step", 8, 1), "voc": (120, 2.6e-3, 300, "step", 8, 1),
                    "yolo": (120, 2.6e-3, 300, "step", 8, 1),
                    "tfrecord": (65, 2.6e-3, 300, "step", 8, 1), "synthetic": (7, 4e-2, 8, "cosine", 2, 4)}
        epochs, lr, warmup, schedule, precise_bn, eval_every = defaults[c.dataset]
        c.epochs = c.epochs if c.epochs is not None else epochs
        c.lr = c.lr if c.lr is not None else lr
        c.warmup_steps = c.warmup_steps if c.warmup_steps is not None else warmup
        c.schedule = c.schedule if c.schedule is not None else schedule
        c.precise_bn = c.precise_bn if c.precise_bn is not None else precise_bn
        c.eval_every = c.eval_every if c.eval_every is not None else eval_every
        # Real data starts from ImageNet weights; the built-in set trains from scratch; a fine-tuned
        # run from its --init-from model.
        if c.backbone_weights is None:
            c.backbone_weights = "none" if c.dataset == "synthetic" or c.init_from else "imagenet"
        if c.backbone_layout is None and not c.init_from:
            c.backbone_layout = BACKBONE_LAYOUTS[0]
        if c.backbone_layout not in (None, *BACKBONE_LAYOUTS):
            raise ValueError(f"backbone_layout must be one of {', '.join(BACKBONE_LAYOUTS)}, got {c.backbone_layout!r}")
        if c.backbone_weights in ("None", ""):
            c.backbone_weights = "none"
        if c.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {c.strategy!r}")
        if c.mixed_precision not in PRECISIONS:
            raise ValueError(f"mixed_precision must be one of float16, bfloat16, got {c.mixed_precision!r}")
        if c.jit_compile not in JIT_COMPILE:
            raise ValueError(f"jit_compile must be one of {', '.join(JIT_COMPILE)}, got {c.jit_compile!r}")
        if c.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be 'step' or 'cosine', got {c.schedule!r}")
        if c.eval_every < 0:
            raise ValueError(f"eval_every must be >= 0, got {c.eval_every}")
        for name in ("epochs", "batch_size"):
            if getattr(c, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(c, name)}")
        if c.lr <= 0:
            raise ValueError(f"lr must be > 0, got {c.lr}")
        if c.classes is not None:
            c.classes = tuple(c.classes)
        return c

    @property
    def scaled_lr(self):
        return self.lr * self.batch_size / 32

    def save(self, path):
        pathlib.Path(path).write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path):
        saved = json.loads(pathlib.Path(path).read_text())
        saved.setdefault("backbone_layout", LEGACY_LAYOUT)
        return cls(**saved)

    @classmethod
    def resume_from(cls, run_dir, epochs=None):
        """The config saved in ``run_dir``, set to resume; ``epochs`` may extend the run."""
        path = pathlib.Path(run_dir) / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found; resume=True needs the folder of an earlier run")
        saved = cls.load(path)
        return dataclasses.replace(saved, resume=True, output=str(run_dir), epochs=epochs or saved.epochs)


def run_folder(config, check=True):
    """The run folder of a resolved config (``output``, or ``runs/ssd300-<dataset>-<time>``). With
    ``check``: a new run needs a new or empty folder, a resumed one its checkpoints (FileNotFoundError,
    FileExistsError). From the file system alone, so the command line asks it before TensorFlow loads."""
    run = pathlib.Path(config.output or f"runs/ssd300-{config.dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
    if not check:
        return run
    checkpoints = run / "checkpoints"
    if config.resume:
        if not checkpoints.exists():
            raise FileNotFoundError(f"{run}: nothing to resume (no checkpoints/ folder)")
    elif checkpoints.exists() and any(checkpoints.iterdir()):
        raise FileExistsError(f"{run} already holds a run: pass resume=True to continue it, or another output=")
    else:
        refuse_existing(run, "it is not a run folder: choose another output=")
    return run

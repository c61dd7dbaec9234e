"""Train SSD300-ResNet50.

    python scripts/train.py                      # built-in synthetic data, a few minutes on a CPU
    python scripts/train.py --dataset voc --data-dir VOCdevkit/VOC2012 --backbone-weights imagenet
    python scripts/train.py --dataset voc --data-dir raccoon/VOC2007 --classes raccoon
    python scripts/train.py --dataset yolo --data-dir my-yolo-set --splits train,val
    python scripts/train.py --dataset coco --data-dir COCO   # COCO/annotations/instances_train2017.json,
                                                             # COCO/train2017/
    python scripts/train.py --dataset tfrecord --data-dir records/coco  # shards from scripts/convert.py
    python scripts/train.py --output runs/x --resume          # continue an interrupted run
"""

import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ssd_tf.cli import arguments as a  # noqa: E402
from ssd_tf.cli import errors as cli  # noqa: E402
from ssd_tf.training.config import (BACKBONE_LAYOUTS, JIT_COMPILE, PRECISIONS, SCHEDULES, STRATEGIES,  # noqa: E402
                                    TrainConfig)

DEFAULTS = TrainConfig()  # the one source of every default; data-set defaults come from resolved()
from ssd_tf.data.kinds import parse_classes  # noqa: E402


def build_parser():
    p = a.parser(__doc__)
    a.add_data(p, splits="splits", what="data set to train on")
    p.add_argument("--epochs", type=a.positive_int, help="default: synthetic 7, voc and yolo 120, coco and tfrecord 65")
    p.add_argument("--batch-size", type=a.positive_int, default=DEFAULTS.batch_size,
                   help="global batch size (all replicas)")
    p.add_argument("--lr", type=a.positive_float, help="learning rate per 32 images (scaled by batch size / 32); "
                                                       "default: synthetic 0.04, otherwise 2.6e-3 (NVIDIA)")
    p.add_argument("--warmup-steps", type=a.non_negative_int, help="default: synthetic 8, otherwise 300")
    p.add_argument("--schedule", choices=SCHEDULES, default=DEFAULTS.schedule,
                   help="learning-rate decay; default: cosine for synthetic, step otherwise")
    p.add_argument("--momentum", type=a.momentum, default=DEFAULTS.momentum, help="SGD momentum")
    p.add_argument("--weight-decay", type=a.non_negative_float, default=DEFAULTS.weight_decay,
                   help="L2 on convolution and dense kernels, coupled as in torch.optim.SGD")
    p.add_argument("--precision", choices=["float32"] + [name for name in PRECISIONS if name], default="float32",
                   help="compute precision: float32, float16 (mixed, with loss scaling; for GPUs) or bfloat16 "
                        "(mixed); weights stay float32")
    p.add_argument("--jit-compile", choices=JIT_COMPILE, default=DEFAULTS.jit_compile,
                   help="XLA for the training step's forward and backward pass (auto: on with one GPU, "
                        "off on CPUs and with several replicas, as Keras chooses)")
    p.add_argument("--backbone-weights", default=None,
                   help="imagenet | none | PATH to ResNet50 weights: for the torchvision layout a torchvision state "
                        "dict (.pth; imagenet: resnet50-0676ba61.pth, downloaded once), for the keras layout a "
                        "keras.applications .h5 (default: none for synthetic and with --init-from, imagenet otherwise)")
    p.add_argument("--backbone-layout", choices=BACKBONE_LAYOUTS,
                   help="ResNet50 layout: torchvision (NVIDIA SSD300 v1.1's, the default) or keras "
                        "(keras.applications', caffe preprocessing); default with --init-from: that model's")
    p.add_argument("--init-from", metavar="MODEL",
                   help="start from a trained model's weights (run folder, .keras file or imported folder): layers "
                        "whose shapes fit are copied, class heads of another class count are re-initialised")
    p.add_argument("--strategy", choices=STRATEGIES, default=DEFAULTS.strategy,
                   help="auto: multiworker when TF_CONFIG lists a cluster, mirrored with several GPUs, "
                        "else default (one device)")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed,
                   help="seeds the weights, the data order and every augmentation")
    p.add_argument("--output", help="the run folder, new or empty (default runs/ssd300-<dataset>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output from its last epoch")
    p.add_argument("--steps-per-epoch", type=a.positive_int, help="cap steps per epoch (smoke runs); default: all")
    p.add_argument("--synthetic-images", type=a.positive_int, default=DEFAULTS.synthetic_images,
                   help="synthetic: training images to generate (a quarter as many validate)")
    p.add_argument("--eval-every", type=a.non_negative_int, default=DEFAULTS.eval_every,
                   help="validate every N epochs and after the last: validation loss (after precise BN), COCO mAP, "
                        "TensorBoard images (0: not while training; default: synthetic 4, otherwise 1)")
    p.add_argument("--sync-bn", action="store_true",
                   help="batch norm statistics over all replicas and workers (for small per-replica batches)")
    p.add_argument("--precise-bn", type=a.non_negative_int, default=DEFAULTS.precise_bn, metavar="BATCHES",
                   help="before each validation, set batch norm's moving statistics to their average over this "
                        "many batches of training images (one device; 0: off; default: synthetic 2, otherwise 8)")
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


# What --resume may change: where the run is, and how long it goes on.
RESUME_FLAGS = {"resume", "output", "epochs"}


def config_from_args(args):
    if args.resume:
        if not args.output:
            cli.fail("--resume needs --output RUN_FOLDER")
        parser = build_parser()
        changed = sorted(f"--{k.replace('_', '-')}" for k, v in vars(args).items()
                         if k not in RESUME_FLAGS and v != parser.get_default(k))
        if changed:
            cli.fail(f"--resume continues {args.output} with its saved config.json; it would ignore "
                     f"{', '.join(changed)}. Only --epochs may change on resume; start a new run "
                     "(another --output) to change the others.")
        return TrainConfig.resume_from(args.output, args.epochs)
    splits = args.splits or [None, None]
    if len(splits) > 2:
        cli.fail(f"--splits {','.join(splits)}: training takes two, the training split and the validation split")
    return TrainConfig(
        dataset=args.dataset, data_dir=args.data_dir, train_split=splits[0],
        val_split=splits[1] if len(splits) > 1 else "", classes=parse_classes(args.classes),
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup_steps,
        schedule=args.schedule, momentum=args.momentum, weight_decay=args.weight_decay,
        mixed_precision=None if args.precision == "float32" else args.precision, jit_compile=args.jit_compile,
        backbone_weights=args.backbone_weights,
        backbone_layout=args.backbone_layout, init_from=args.init_from, strategy=args.strategy,
        seed=args.seed,
        output=args.output, steps_per_epoch=args.steps_per_epoch, synthetic_images=args.synthetic_images,
        eval_every=args.eval_every, sync_bn=args.sync_bn, precise_bn=args.precise_bn,
    )


def main(argv=None):
    args = parse_args(argv)  # --help and option errors answer here, before TensorFlow loads
    from ssd_tf.cli import checks
    from ssd_tf.cli.native_logs import load_tensorflow

    with cli.user_errors():  # paths, layouts and outputs, checked before TensorFlow loads
        config = config_from_args(args)
        checks.training(config.resolved())
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)  # checkpoint saving's INFO lines, every epoch
    load_tensorflow()
    from ssd_tf.training import run as training
    from ssd_tf.training.callbacks import TrainingDiverged
    try:
        with cli.user_errors():  # a user error: one line, exit 2
            result = training.train(config)
    except TrainingDiverged as err:
        raise SystemExit(f"error: {cli.as_flags(str(err))}") from None
    s = result["summary"]
    if s.get("already_finished"):
        print(f"{result['run_dir']} already finished {s['completed_epochs']} epochs; nothing to do "
              f"(pass --epochs N with N > {s['completed_epochs']} to train on)")
        return
    print(f"run folder: {result['run_dir']}  (TensorBoard: tensorboard --logdir {result['run_dir'] / 'logs'})")
    final = f"{s['final_loss']:.4f}" if s["final_loss"] is not None else "n/a"
    print(f"final loss {final} after {s['epochs']} epochs in {s['wall_s']:.0f} s "
          f"({s['strategy']}, {s['replicas']} replica(s)); model: {result['run_dir'] / 'final.keras'}")
    if "val_AP50" in s:
        print(f"validation: AP50 {s['val_AP50']:.3f}, mAP {s['val_mAP']:.3f}; "
              f"{s['predictions_drawn']} validation images with drawn detections in {s['predictions']}/; "
              f"PR curves, confusion matrix and F1 (best at score {s['best_f1_threshold']:.2f}) in {s['plots']}/")


if __name__ == "__main__":
    main()

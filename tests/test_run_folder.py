"""A training run and its folder: resume, the default command, a diverging loss, one traced detection
graph."""

import json
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ssd_tf.inference import loading
from ssd_tf.training import callbacks
from ssd_tf.training import run as training
from ssd_tf.training.config import TrainConfig
from helpers import ENV, ROOT, diverging_config, tiny_config, tiny_ssd


@pytest.mark.slow
def test_resume_continues_from_saved_epoch(tmp_path, capsys, monkeypatch):
    """Interrupted, refused without --resume, resumed with a larger --epochs; --sync-bn kept. On the
    SSD-shaped tiny network, built by train() and the loaders where they build SSD300 (what is tested
    is the checkpoints, the run folder and the config; the CLI test trains SSD300 through train())."""
    builds = []

    def build_tiny(num_classes, **options):
        builds.append(options)
        return tiny_ssd(num_classes, sync_bn=options.get("sync_bn", False))
    monkeypatch.setattr(training, "build_ssd300", build_tiny)
    monkeypatch.setattr(loading, "build_ssd300", build_tiny)

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt("killed after epoch 2")

    config = TrainConfig(dataset="synthetic", synthetic_images=4, batch_size=2, epochs=3, steps_per_epoch=1,
                         output=str(tmp_path / "run"), val_images=0, eval_every=0, precise_bn=0, seed=3, sync_bn=True)
    with pytest.raises(KeyboardInterrupt):
        training.train(config, callbacks=[Interrupt()])
    assert builds[-1]["sync_bn"] is True
    with pytest.raises(FileExistsError, match=r"resume=True"):
        training.train(config)
    # The interrupted run has no final.keras yet: its last checkpoint loads, all of it, as export.py,
    # predict.py and evaluate.py load a run (their refusals of checkpoints that don't fit are tested
    # in test_export_predict), with the run's classes.
    assert not (tmp_path / "run" / "final.keras").exists()
    partial = loading.load_keras_model(tmp_path / "run")
    assert partial.output_shape == (None, 8732, 4 + len(loading.classes_beside(tmp_path / "run")[0]))
    # Resumed with a larger --epochs: epochs 3 and 4 run, from the saved weights and optimizer.
    resumed = training.train(TrainConfig.resume_from(tmp_path / "run", epochs=4))
    assert len(resumed["history"]["loss"]) == 2  # only epochs 3 and 4 ran
    assert int(resumed["model"].optimizer.iterations.numpy()) == 4  # optimizer state restored
    assert builds[-1]["sync_bn"] is True  # --sync-bn, kept by --resume
    norms = [layer for layer in resumed["model"].layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(layer.synchronized for layer in norms)
    rows = (tmp_path / "run" / "history.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2", "3"]
    assert training.run_epochs_done(tmp_path / "run") == 4

    # Resuming the finished run says so and returns (exit 0).
    sys.path.insert(0, str(ROOT / "scripts"))
    import train as train_cli
    capsys.readouterr()
    train_cli.main(["--output", str(tmp_path / "run"), "--resume"])
    assert "already finished 4 epochs" in capsys.readouterr().out
    # Flags the saved config would override are refused, not silently ignored.
    with pytest.raises(SystemExit) as exit_info:
        train_cli.config_from_args(train_cli.parse_args(["--output", str(tmp_path / "run"), "--resume", "--lr", "0.5",
                                                         "--batch-size", "4"]))
    assert exit_info.value.code == 2
    assert re.search(r"would ignore --batch-size, --lr\. Only --epochs may change", capsys.readouterr().err)
    assert training.run_epochs_done(tmp_path / "run") == 4


@pytest.mark.slow
def test_cli_default_run_leaves_a_complete_run_folder(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "scripts/train.py", "--epochs", "2", "--synthetic-images", "8", "--batch-size", "4",
         "--steps-per-epoch", "1",
         "--output", str(run)], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "final loss" in proc.stdout
    # The final validation numbers and where the drawn predictions are, as summary.json has them.
    summary = json.loads((run / "summary.json").read_text())
    assert f"validation: AP50 {summary['val_AP50']:.3f}, mAP {summary['val_mAP']:.3f}" in proc.stdout
    assert f"in {run / 'predictions'}/" in proc.stdout
    # The final model's pictures and the numbers behind them.
    plots = sorted(p.name for p in (run / "plots").iterdir())
    assert plots == ["confusion_matrix.png", "confusion_matrix_normalized.png", "f1_curve.png", "pr_curves.png",
                     "report.json", "training_curves.png"]
    report = json.loads((run / "plots" / "report.json").read_text())
    assert report["stats"]["AP50"] == pytest.approx(summary["val_AP50"], abs=1e-4)
    assert report["best_f1"]["threshold"] == summary["best_f1_threshold"]
    assert all(Image.open(run / "plots" / name).size[0] >= 500 for name in plots if name.endswith(".png"))
    drawn = sorted((run / "predictions").glob("*.jpg"))
    assert [p.name for p in drawn] == [f"image-{i}.jpg" for i in range(4)]  # the first 4 validation images
    assert all(Image.open(p).size == (320, 240) for p in drawn)  # at the images' own size
    # The built-in set validates every 4 epochs and after the last: here after epoch 2 only.
    rows = [line.split(",") for line in (run / "history.csv").read_text().strip().splitlines()]
    epochs = [dict(zip(rows[0], row)) for row in rows[1:]]
    assert [e["epoch"] for e in epochs] == ["0", "1"]
    val_keys = ("val_loss", "val_loc_loss", "val_cls_loss", "val_mAP", "val_AP50")
    assert all(epochs[0][k] == "NA" for k in val_keys)
    assert "val_loss: nan" not in proc.stdout and "val_mAP: nan" not in proc.stdout  # no NaN on the progress bar
    assert all(np.isfinite(float(epochs[1][k])) for k in val_keys)
    assert float(epochs[1]["val_AP50"]) == pytest.approx(summary["val_AP50"], abs=1e-4)
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"] == "synthetic" and config["epochs"] == 2 and config["lr"] == 0.04
    assert config["eval_every"] == 4
    assert (run / "final.keras").is_file() and any((run / "checkpoints").iterdir())
    events = list((run / "logs").rglob("events.out.tfevents.*"))
    assert events
    tags, image_steps, plugins = set(), [], {}
    for path in events:
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            tags |= {v.tag for v in event.summary.value}
            image_steps += [(v.tag, event.step) for v in event.summary.value
                            if v.tag in ("validation_detections", "confusion_matrix")]
            plugins.update({v.tag: v.metadata.plugin_data.plugin_name for v in event.summary.value})
    assert {"epoch_loss", "epoch_loc_loss", "epoch_cls_loss", "epoch_learning_rate", "validation_detections",
            "confusion_matrix"} <= tags
    assert sorted(image_steps) == [("confusion_matrix", 1), ("validation_detections", 1)]  # the validated epoch only
    # One TensorBoard PR curve per class (the built-in set's circle, square, triangle).
    assert {t for t, plugin in plugins.items() if plugin == "pr_curves"} == {
        f"pr_curve/{name}/pr_curves" for name in ("circle", "square", "triangle")}
    # The trained, compiled model loads as predict.py and export.py load it (their CLIs are
    # tested on a run folder in test_export_predict.py).
    model = loading.load_keras_model(run)
    assert model.output_shape == (None, 8732, 8)


@pytest.mark.slow
def test_nan_loss_stops_fit_at_that_step_and_keeps_last_checkpoint(tmp_path):
    with pytest.raises(callbacks.TrainingDiverged, match=r"loss is nan at step 2; the last finite loss was "
                                                            r"\d+\.\d+ at step 1"):
        # Step 1's update leaves huge but finite weights, whose outputs overflow at step 2.
        training.train(diverging_config(tmp_path / "run"), model_fn=tiny_ssd)
    assert training.run_epochs_done(tmp_path / "run") == 1  # epoch 1's checkpoint, untouched
    assert not (tmp_path / "run" / "final.keras").exists()
    model = tiny_ssd(4)  # restored as load_keras_model restores a run's checkpoint, all or nothing
    loading.restore_checkpoint(tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")), model)
    weights = {w.path: w.numpy() for w in model.weights}
    assert all(np.all(np.isfinite(w)) for w in weights.values()), weights.keys()
    assert max(float(np.abs(w).max()) for w in weights.values()) > 1e20  # the huge step-1 weights are kept


@pytest.mark.slow
def test_a_run_traces_its_detection_graph_once(tmp_path, monkeypatch):
    """Validation, the TensorBoard images and the final drawings detect through one Detector: the
    model's detection graph is traced once per run, not once for each."""
    from ssd_tf.inference import detector
    from ssd_tf.inference import serving

    modules = []

    class Counted(serving.ServingModule):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            modules.append(self)
    monkeypatch.setattr(detector, "ServingModule", Counted)
    result = training.train(tiny_config(tmp_path / "run", val_images=2, eval_every=1), model_fn=tiny_ssd)
    assert len(result["history"]["val_mAP"]) == 1  # validated, with TensorBoard images, and drew:
    assert len(list((tmp_path / "run" / "predictions").glob("*.jpg"))) == 2
    assert list((tmp_path / "run" / "logs" / "images").glob("events.out.tfevents.*"))
    assert len(modules) == 1
    assert modules[0].detect.experimental_get_tracing_count() == 1


@pytest.mark.slow
def test_the_final_report_is_the_last_validations_when_it_scored_the_final_weights(tmp_path, monkeypatch):
    """A run that validated after its last epoch draws plots/ from that report instead of scoring
    the same weights again; a run that did not validate scores its final model once."""
    calls = []
    original = training.evaluation.evaluate_model
    monkeypatch.setattr(training.evaluation, "evaluate_model", lambda *a, **k: calls.append(1) or original(*a, **k))
    training.train(tiny_config(tmp_path / "validated", epochs=2, eval_every=1, val_images=2, synthetic_images=8),
                   model_fn=tiny_ssd)
    assert calls == [] and (tmp_path / "validated" / "plots" / "report.json").is_file()
    training.train(tiny_config(tmp_path / "not", epochs=2, eval_every=0, val_images=2, synthetic_images=8),
                   model_fn=tiny_ssd)
    assert calls == [1] and (tmp_path / "not" / "plots" / "report.json").is_file()

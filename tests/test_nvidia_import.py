"""NVIDIA's SSD300 v1.1 and torchvision's ResNet50, imported from PyTorch files built here with
NVIDIA's module names (the real files can't be downloaded here)."""

import json

import numpy as np
import pytest
from PIL import Image

from conftest import shared_data

torch = pytest.importorskip("torch")
ref = pytest.importorskip("reference.network")

import ssd_tf  # noqa: E402
from ssd_tf.modeling import backbone  # noqa: E402
from ssd_tf.modeling import nvidia, torch_weights  # noqa: E402

MEAN, STD = np.array(backbone.TORCHVISION_MEAN), np.array(backbone.TORCHVISION_STD)


@pytest.fixture(scope="module")
def nvidia_torch():
    return ref.randomise(ref.SSD300(), seed=0)


@pytest.fixture(scope="module")
def checkpoint(nvidia_torch, tmp_path_factory):
    return ref.save_as_nvidia(nvidia_torch, tmp_path_factory.mktemp("nv") / "nvidia_ssdpyt_amp_200703.pt")


@pytest.fixture(scope="module")
def imported(checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("imported") / "nvidia-coco"
    output, model = nvidia.import_nvidia(checkpoint, folder)
    return output, model


def _real_images():
    folder = shared_data("raccoon", "VOC2007", "JPEGImages")
    return np.stack([np.asarray(Image.open(folder / name).convert("RGB").resize((300, 300), Image.BILINEAR),
                                np.float32) for name in ("raccoon-1.jpg", "raccoon-150.jpg", "raccoon-20.jpg")])


def _as_nvidia_input(images):
    """RGB 0..255 [B, H, W, 3] -> NVIDIA's input: RGB / 255, normalised, NCHW."""
    return torch.tensor((images / 255.0 - MEAN) / STD, dtype=torch.float32).permute(0, 3, 1, 2)


def test_imported_checkpoint_gives_torchs_offsets_and_logits(imported, nvidia_torch):
    output, model = imported
    images = _real_images()
    ours = model(images, training=False).numpy()
    with torch.no_grad():
        ploc, plabel = nvidia_torch(_as_nvidia_input(images))
    loc, logits = ploc.permute(0, 2, 1).numpy(), plabel.permute(0, 2, 1).numpy()
    assert 1.0 < logits.std() < 10.0  # logits of a trained network's order
    # float32 through 60 layers in two libraries: 1e-3 at logits of order 1-10 (measured 1.2e-4).
    np.testing.assert_allclose(ours[..., :4], loc, atol=1e-3)
    np.testing.assert_allclose(ours[..., 4:], logits, atol=1e-3)
    assert backbone.layout_of(model) == "torchvision"
    # The folder is a model folder: COCO's names and ids in NVIDIA's label order.
    classes = json.loads((output / "classes.json").read_text())
    assert classes["class_names"][:3] == ["background", "person", "bicycle"] and len(classes["class_names"]) == 81
    assert classes["category_ids"][-1] == 90 and classes["category_ids"][12] == 13  # stop sign: id 13, label 12
    assert json.loads((output / "imported.json").read_text())["backbone_layout"] == "torchvision"


def test_coco_categories_are_the_instances_files_order():
    case = shared_data("coco_eval_case", "instances_val2014_subset.json")
    categories = json.loads(case.read_text())["categories"]
    assert [(c["id"], c["name"]) for c in categories] == list(nvidia.COCO_CATEGORIES)


@pytest.mark.slow
def test_detections_of_the_imported_model_equal_the_references_postprocess(imported, nvidia_torch):
    design = pytest.importorskip("reference.design")
    _, model = imported
    images = _real_images()[:1]
    dets = {k: v.numpy()[0] for k, v in ssd_tf.decode_detections(model(images, training=False)).items()}
    with torch.no_grad():
        ploc, plabel = nvidia_torch(_as_nvidia_input(images))
    ref_boxes, ref_labels, ref_scores = design.PostProcess(design.dboxes300_coco())(ploc, plabel)[0]
    n = int(dets["num_detections"])
    assert n == len(ref_scores) > 20
    # Sorted by class, then box: scores equal to float32 noise can come in either order.
    ours = np.lexsort((*np.round(dets["boxes"][:n], 3).T[::-1], dets["classes"][:n]))
    theirs = np.lexsort((*np.round(ref_boxes.numpy(), 3).T[::-1], ref_labels.numpy()))
    np.testing.assert_array_equal(dets["classes"][:n][ours], ref_labels.numpy()[theirs])
    np.testing.assert_allclose(dets["boxes"][:n][ours], ref_boxes.numpy()[theirs], atol=1e-4)
    np.testing.assert_allclose(dets["scores"][:n][ours], ref_scores.numpy()[theirs], atol=1e-4)


def test_torchvision_backbone_weights_give_torchs_conv4_features(tmp_path):
    import keras

    resnet = ref.randomise(ref.ResNet50(), seed=1)
    path = tmp_path / "resnet50-0676ba61.pth"
    torch.save(resnet.state_dict(), path)  # as torchvision publishes it: a bare state dict
    model = ssd_tf.build_ssd300(num_classes=3, backbone_weights=str(path))
    conv4 = keras.Model(model.input, model.get_layer("conv4_block6_out").output)
    images = _real_images()[:2]
    ours = conv4(images, training=False).numpy()
    with torch.no_grad():
        theirs = ref.NvidiaResNet(resnet).eval()(_as_nvidia_input(images)).permute(0, 2, 3, 1).numpy()
    assert ours.shape == theirs.shape == (2, 38, 38, 1024)
    np.testing.assert_allclose(ours, theirs, atol=1e-3 * max(1.0, float(np.abs(theirs).max()) / 10))


def test_a_bare_state_dict_with_module_prefixes_imports(nvidia_torch, tmp_path):
    path = tmp_path / "bare.pth"
    torch.save({"module." + k: v for k, v in nvidia_torch.state_dict().items()}, path)
    _, model = nvidia.import_nvidia(path, tmp_path / "out")
    np.testing.assert_array_equal(model.get_layer("extra3_2_conv").get_weights()[0],
                                  nvidia_torch.additional_blocks[2][3].weight.detach().numpy().transpose(2, 3, 1, 0))


def _bad(tmp_path, state, name="bad.pt"):
    path = tmp_path / name
    torch.save({"epoch": 1, "model": state}, path)
    return path


@pytest.mark.parametrize("case, message", [
    ("not a checkpoint", r"not a readable PyTorch weights file"),
    ("truncated", r"not a readable PyTorch weights file"),
    ("resnet34-like", r"missing tensor feature_extractor\.feature_extractor\.4\.0\.conv3\.weight"),
    ("another label count", r"conf\.0\.weight holds 21 labels per box.*num_classes=21"),
    ("missing tensor", r"missing tensor additional_blocks\.1\.4\.running_var"),
    ("wrong shape", r"tensor loc\.2\.weight has shape \(24, 512, 1, 1\), layer loc2_conv needs \(24, 512, 3, 3\)"),
    ("unexpected tensor", r"unexpected tensor feature_extractor\.feature_extractor\.7\.0\.conv1\.weight"),
])
def test_bad_checkpoints_name_the_file_and_tensor_and_write_nothing(case, message, nvidia_torch, checkpoint,
                                                                    tmp_path):
    state = {k: v.clone() for k, v in nvidia_torch.state_dict().items()}
    if case == "not a checkpoint":
        path = tmp_path / "bad.pt"
        path.write_bytes(b"<html>404 Not Found</html>")
    elif case == "truncated":
        path = tmp_path / "bad.pt"
        path.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    elif case == "resnet34-like":  # basic blocks: no conv3 in any block
        path = _bad(tmp_path, {k: v for k, v in state.items() if ".conv3." not in k and ".bn3." not in k})
    elif case == "another label count":
        path = _bad(tmp_path, ref.SSD300(label_num=21).state_dict())
    elif case == "missing tensor":
        del state["additional_blocks.1.4.running_var"]
        path = _bad(tmp_path, state)
    elif case == "wrong shape":
        state["loc.2.weight"] = state["loc.2.weight"][..., :1, :1].contiguous()
        path = _bad(tmp_path, state)
    else:  # a backbone cut after layer4 instead of layer3
        state["feature_extractor.feature_extractor.7.0.conv1.weight"] = torch.zeros(512, 1024, 1, 1)
        path = _bad(tmp_path, state)
    with pytest.raises(torch_weights.WeightsError, match=message) as info:
        nvidia.import_nvidia(path, tmp_path / "out")
    assert str(path) in str(info.value)
    assert not (tmp_path / "out" / "final.keras").exists()


def test_another_label_count_imports_when_asked(tmp_path):
    path = _bad(tmp_path, ref.randomise(ref.SSD300(label_num=3)).state_dict(), "three.pt")
    _, model = nvidia.import_nvidia(path, tmp_path / "out", num_classes=3)
    assert model.output_shape == (None, 8732, 7)
    classes = json.loads((tmp_path / "out" / "classes.json").read_text())
    assert classes == {"class_names": ["background", "class_1", "class_2"], "category_ids": [0, 1, 2]}


def test_import_refuses_to_overwrite_and_the_cli_says_so(checkpoint, imported, capsys):
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "scripts"))
    import import_nvidia

    output, _ = imported
    before = (output / "final.keras").stat().st_mtime_ns
    with pytest.raises(SystemExit) as exit_info:
        import_nvidia.main([str(checkpoint), "--output", str(output)])
    assert exit_info.value.code == 2
    assert "already exists; not overwriting it" in capsys.readouterr().err
    assert (output / "final.keras").stat().st_mtime_ns == before


def test_reading_never_runs_code_from_the_file(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"model": {"x": torch.zeros(1)}, "evil": Payload()}, path)
    with pytest.raises(torch_weights.WeightsError, match="evil.pt: not a readable PyTorch weights file") as info:
        torch_weights.read_state_dict(path)
    # Never relay torch's advice to retry with weights_only=False: that is the unsafe path.
    message = str(info.value)
    assert "weights_only" not in message and "safe_globals" not in message and "GLOBAL print" in message, message


def test_torchvision_file_hash_is_checked(tmp_path):
    path = tmp_path / "resnet50-0676ba61.pth"
    path.write_bytes(b"partial download")
    with pytest.raises(torch_weights.WeightsError, match="does not start with 0676ba61"):
        torch_weights.check_hash_prefix(path)


def test_layout_mismatched_weights_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match="fit the 'keras' backbone layout"):
        ssd_tf.build_ssd300(num_classes=2, backbone_weights=str(tmp_path / "resnet50_notop.h5"))
    with pytest.raises(ValueError, match="fits the 'torchvision' backbone layout"):
        ssd_tf.build_ssd300(num_classes=2, backbone_weights=str(tmp_path / "r.pth"), backbone_layout="keras")


@pytest.mark.slow
def test_the_imported_models_saved_model_returns_the_keras_models_detections(imported, tmp_path):
    import tensorflow as tf

    from ssd_tf.inference import loading

    from ssd_tf.cli.export import export_saved_model_from
    from ssd_tf.data.resize import resize_image

    folder, _ = imported
    path = export_saved_model_from(folder, tmp_path / "saved_models" / "nvidia-coco", model_name="nvidia-coco")
    assert json.loads((path / "assets.extra" / "classes.json").read_text())["class_names"][1] == "person"
    files = [shared_data("raccoon", "VOC2007", "JPEGImages", name) for name in ("raccoon-1.jpg", "raccoon-20.jpg")]
    served = tf.saved_model.load(str(path)).signatures["serving_default"](
        image_bytes=tf.constant([p.read_bytes() for p in files]))
    model = loading.load_keras_model(folder)
    for i, file in enumerate(files):
        image = tf.io.decode_image(file.read_bytes(), channels=3, expand_animations=False)
        out = ssd_tf.decode_detections(model(resize_image(image[None]), training=False))
        n = int(out["num_detections"][0])
        assert int(served["num_detections"][i]) == n > 0
        # Sorted by class, then box: scores equal to float32 noise can come in either order.
        ours = np.lexsort((*np.round(out["boxes"][0, :n].numpy(), 3).T[::-1], out["classes"][0, :n].numpy()))
        theirs = np.lexsort((*np.round(served["detection_boxes"][i, :n].numpy(), 3).T[::-1],
                             served["detection_classes"][i, :n].numpy()))
        np.testing.assert_array_equal(served["detection_classes"][i, :n].numpy()[theirs],
                                      out["classes"][0, :n].numpy()[ours])
        np.testing.assert_allclose(served["detection_boxes"][i, :n].numpy()[theirs], out["boxes"][0, :n].numpy()[ours],
                                   atol=1e-4)
        np.testing.assert_allclose(served["detection_scores"][i, :n].numpy()[theirs],
                                   out["scores"][0, :n].numpy()[ours], atol=1e-4)


@pytest.mark.slow
def test_evaluate_cli_scores_the_imported_folder_on_a_coco_layout(imported, tmp_path, capsys):
    """evaluate.py --dataset coco on a COCO folder (annotations/instances_val2017.json, val2017/)
    whose categories are COCO's 80: the imported folder's labels line up with them."""
    import pathlib
    import shutil
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "scripts"))
    import evaluate as evaluate_cli

    folder, _ = imported
    (tmp_path / "annotations").mkdir()
    (tmp_path / "val2017").mkdir()
    images, annotations = [], []
    for i, name in enumerate(("raccoon-1.jpg", "raccoon-20.jpg", "raccoon-150.jpg"), start=1):
        source = shared_data("raccoon", "VOC2007", "JPEGImages", name)
        shutil.copy(source, tmp_path / "val2017" / name)
        width, height = Image.open(source).size
        images.append({"id": i, "file_name": name, "width": width, "height": height})
        annotations.append({"id": i, "image_id": i, "category_id": 18, "bbox": [10, 10, width / 2, height / 2],
                            "area": width * height / 4, "iscrowd": 0})  # a "dog"
    categories = [{"id": cid, "name": name} for cid, name in nvidia.COCO_CATEGORIES]
    (tmp_path / "annotations" / "instances_val2017.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    evaluate_cli.main(["--model", str(folder), "--dataset", "coco", "--data-dir", str(tmp_path),
                       "--output", str(tmp_path / "evaluation")])
    out = capsys.readouterr().out
    assert "3 images" in out
    report = json.loads((tmp_path / "evaluation" / "report.json").read_text())
    assert (tmp_path / "evaluation" / "confusion_matrix.png").is_file()
    assert len(report["per_class_ap50"]) == 80 and "dog" in report["per_class_ap50"]
    assert report["num_detections"] > 0

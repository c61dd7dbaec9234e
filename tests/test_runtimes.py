"""Our exports in the runtimes people deploy with, as their users install them: MediaPipe Tasks'
ObjectDetector on the .tflite files (their TFLite Model Metadata), ONNX Runtime and OpenVINO on the
.onnx file."""

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, shared_data
from helpers import SHAPE_CLASSES, assert_match, box_iou, mixed_images
from ssd_tf.inference.detector import Detector


def _photos_at_300(folder, count_raccoon=4, count_builtin=3):
    """Real photos (raccoons) and built-in set images at the model's 300x300, as PNG: each runtime
    then sees the same pixels (no resize, no JPEG decoder differences)."""
    from ssd_tf import data
    from ssd_tf.data.synthetic import builtin_split

    folder.mkdir(exist_ok=True)
    paths = []
    for path in sorted(shared_data("raccoon", "VOC2007", "JPEGImages").glob("*.jpg"))[:count_raccoon]:
        out = folder / f"{path.stem}.png"
        Image.open(path).convert("RGB").resize((300, 300), Image.BILINEAR).save(out)
        paths.append(out)
    val = builtin_split("val", 16, seed=0)
    for k, (image, _) in enumerate(data.eval_dataset(val, 1).take(count_builtin)):
        out = folder / f"builtin-{k}.png"
        Image.fromarray(np.clip(np.round(image[0].numpy()), 0, 255).astype(np.uint8)).save(out)
        paths.append(out)
    return paths


def _metadata(path):
    """The TFLite Model Metadata of a .tflite file, parsed with MediaPipe's own schema code."""
    md = pytest.importorskip("mediapipe.tasks.metadata.metadata_schema_py_generated")
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
    [entry] = [m for m in model.metadata if m.name == b"TFLITE_METADATA"]
    data = bytes(model.buffers[entry.buffer].data)
    assert md.ModelMetadata.ModelMetadataBufferHasIdentifier(data, 0)
    return md, md.ModelMetadataT.InitFromObj(md.ModelMetadata.GetRootAsModelMetadata(data, 0)), model


@pytest.mark.slow  # the session's trained model and exports
@pytest.mark.parametrize("form", ["tflite", "int8"])
def test_tflite_files_carry_the_metadata_object_detectors_read(models, form):
    md, meta, model = _metadata(models[form])
    assert meta.name == b"ssd300" and meta.version and meta.license and meta.minParserVersion == b"1.2.0"
    [subgraph] = meta.subgraphMetadata
    [image] = subgraph.inputTensorMetadata
    assert image.content.contentPropertiesType == md.ContentProperties.ImageProperties
    assert image.content.contentProperties.colorSpace == md.ColorSpaceType.RGB
    assert list(image.stats.max) == [255.0] and list(image.stats.min) == [0.0]  # uint8 input: no normalisation
    # Each output's metadata sits at that output's place in the subgraph, tagged by its role.
    names = [model.subgraphs[0].tensors[i].name.decode() for i in model.subgraphs[0].outputs]
    roles = {"location": "detection_boxes", "category": "detection_classes", "score": "detection_scores",
             "number of detections": "num_detections"}
    tagged = [t.name.decode() for t in subgraph.outputTensorMetadata]
    assert sorted(tagged) == sorted(roles)
    signature = {t.tensorIndex: t.name.decode() for t in model.signatureDefs[0].outputs}
    assert [roles[t] for t in tagged] == [signature[i] for i in model.subgraphs[0].outputs], (tagged, names)
    location = subgraph.outputTensorMetadata[tagged.index("location")]
    assert list(location.content.contentProperties.index) == [1, 0, 3, 2]  # (ymin, xmin, ymax, xmax)
    assert location.content.contentProperties.type == md.BoundingBoxType.BOUNDARIES
    category = subgraph.outputTensorMetadata[tagged.index("category")]
    [labels] = category.associatedFiles
    assert labels.name == b"labels.txt" and labels.type == md.AssociatedFileType.TENSOR_VALUE_LABELS
    assert [g.tensorNames for g in subgraph.outputTensorGroups] == [[b"location", b"category", b"score"]]
    packed = zipfile.ZipFile(models[form]).read("labels.txt").decode()
    assert packed == (models[form].parent / "labels.txt").read_text() == "circle\nsquare\ntriangle\n"


@pytest.mark.slow  # the session's trained model and exports
@pytest.mark.parametrize("form", ["tflite", "int8"])
def test_mediapipe_object_detector_finds_predicts_detections(models, form, tmp_path):
    """MediaPipe Tasks' ObjectDetector loads the export as it is and finds what predict.py finds on
    the same files: same class name, score within 0.01, and the box to MediaPipe's whole pixels.
    MediaPipe truncates the box's origin and its size separately (seen: ours x 203.8 to 277.5,
    theirs origin 203, width 73), so each of the four numbers it reports is within 1 px of ours,
    and the far corner within 2 px."""
    mp = pytest.importorskip("mediapipe")
    from mediapipe.tasks import python as mp_python
    from mediapipe.tasks.python import vision

    from ssd_tf.inference.prediction import predict_files

    files = _photos_at_300(tmp_path / "photos")
    payload = predict_files(Detector.load(models[form]), files, tmp_path / "predicted", min_score=0.2)
    options = vision.ObjectDetectorOptions(base_options=mp_python.BaseOptions(model_asset_path=str(models[form])),
                                           score_threshold=0.15, max_results=-1)
    detector = vision.ObjectDetector.create_from_options(options)
    try:
        total = 0
        for entry in payload["images"]:
            found = detector.detect(mp.Image.create_from_file(entry["file"])).detections
            theirs = [(d.categories[0].category_name, d.categories[0].score,
                       (d.bounding_box.origin_x, d.bounding_box.origin_y, d.bounding_box.width, d.bounding_box.height))
                      for d in found]
            for ours in entry["detections"]:
                x0, y0, x1, y1 = ours["box_pixels"]
                match = [t for t in theirs if t[0] == ours["class_name"] and abs(t[1] - ours["score"]) <= 0.01
                         and np.abs(np.subtract(t[2], (x0, y0, x1 - x0, y1 - y0))).max() <= 1.02]
                assert match, (entry["file"], ours, theirs[:5])
                total += 1
    finally:
        detector.close()
    assert total >= 10, total  # the comparison is not vacuous


@pytest.mark.slow  # the session's trained model and exports
def test_onnx_runtime_gives_the_saved_models_detections(models):
    """The .onnx in ONNX Runtime against the SavedModel, on real photos of any size and built-in
    images: same class, box IoU >= 0.98, score within 0.01. (ONNX gets the resized image as uint8,
    rounded, as TFLite does; the SavedModel resizes in float.)"""
    images = mixed_images()
    onnx = Detector.load(models["onnx"])
    saved = Detector.load(models["saved_model"])
    assert onnx.kind == "onnx" and onnx.class_names == SHAPE_CLASSES
    total = flips = 0
    for theirs, ours in zip(onnx.detect(images), saved.detect(images)):
        matched, flipped = assert_match(ours, theirs, iou=0.98, score_tol=0.01, nms_flips=True)
        total, flips = total + matched, flips + flipped
    assert total >= 20 and flips <= 0.1 * total, (total, flips)
    # The file names its classes and its producer.
    import onnx as onnx_lib

    props = {p.key: p.value for p in onnx_lib.load(str(models["onnx"])).metadata_props}
    assert json.loads(props["class_names"]) == list(SHAPE_CLASSES) and props["producer"].startswith("ssd-tf ")
    assert [n.op_type for n in onnx_lib.load(str(models["onnx"])).graph.node].count("NonMaxSuppression") >= 1


@pytest.mark.slow  # the session's trained model and exports
def test_openvino_runs_the_onnx_file_as_onnx_runtime_does(models):
    """OpenVINO (from PyPI) reads the .onnx as it is and gives ONNX Runtime's outputs. Its CPU
    plugin computes in bfloat16 by default where the CPU has AMX or AVX512-BF16; f32 is asked for,
    as a user comparing runtimes would."""
    ov = pytest.importorskip("openvino")
    from ssd_tf.data.resize import to_uint8_input
    from ssd_tf.inference.onnx_runner import ONNXRunner

    images = np.stack([to_uint8_input(i) for i in mixed_images()])
    expected = ONNXRunner(models["onnx"]).run(images)
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(models["onnx"])), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled(images)
    got = {output.get_any_name(): got[output] for output in compiled.outputs}
    assert sorted(got) == sorted(expected)
    np.testing.assert_array_equal(got["num_detections"], expected["num_detections"])
    assert expected["num_detections"].sum() >= 20
    for i, n in enumerate(expected["num_detections"].astype(int)):
        # NMS may order two near-tied detections either way: compare as matched sets.
        for box, score, cls in zip(expected["detection_boxes"][i, :n], expected["detection_scores"][i, :n],
                                   expected["detection_classes"][i, :n]):
            same = [j for j in range(n) if got["detection_classes"][i, j] == cls
                    and abs(got["detection_scores"][i, j] - score) <= 1e-4
                    and box_iou(box, got["detection_boxes"][i, j]) >= 0.999]
            assert same, (i, box, score, cls)


@pytest.mark.slow  # the session's trained model and exports
def test_predict_and_evaluate_take_an_onnx_file(models, tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "scripts"))
    import evaluate as evaluate_cli
    import predict as predict_cli

    photo = tmp_path / "photo.png"
    Image.fromarray(mixed_images(0, 1)[0]).save(photo)
    predict_cli.main(["--model", str(models["onnx"]), str(photo), "--output", str(tmp_path / "out")])
    payload = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert payload["images"][0]["detections"] and capsys.readouterr().out
    evaluate_cli.main(["--model", str(models["onnx"]), "--dataset", "synthetic", "--synthetic-images", "16",
                       "--output", str(tmp_path / "evaluation")])
    report = json.loads((tmp_path / "evaluation" / "report.json").read_text())
    from ssd_tf.cli.evaluate import evaluate_model_from

    keras_report, _ = evaluate_model_from(models["run"], "synthetic", synthetic_images=16)
    assert report["stats"]["AP50"] == pytest.approx(keras_report["stats"]["AP50"], abs=0.02)


def test_files_that_are_not_our_detectors_get_one_line_errors(tmp_path):
    """A .onnx that is not ours, or not ONNX at all, is refused naming the file and what is missing."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    other = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(other))
    with pytest.raises(ValueError, match=r"other\.onnx: not an ssd-tf detector: expected one uint8 input 'images'"):
        Detector.load(other)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"broken\.onnx: not a readable ONNX model"):
        Detector.load(broken)
    photo = tmp_path / "in" / "photo.png"
    photo.parent.mkdir()
    Image.new("RGB", (32, 24)).save(photo)
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "predict.py"), "--model", str(other), str(photo),
                          "--output", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].startswith(f"error: {other}: not an ssd-tf")


def test_a_missing_onnx_extra_is_named(tmp_path, monkeypatch, capsys):
    """Without tf2onnx, export.py --format onnx says which extra to install, in one line, before
    loading anything; nothing is written."""
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # import tf2onnx now raises ImportError
    sys.path.insert(0, str(ROOT / "scripts"))
    import export as export_cli

    with pytest.raises(SystemExit) as exit_info:
        export_cli.main(["--model", str(tmp_path / "run"), "--format", "onnx", "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and err[-1].startswith("error: ONNX export needs tf2onnx"), err
    assert 'pip install -e ".[onnx]"' in err[-1] and not (tmp_path / "out").exists()


@pytest.mark.slow  # the session's trained model and exports
def test_onnx_export_never_overwrites(models):
    from ssd_tf.export import export_onnx

    before = models["onnx"].stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="model.onnx already exists"):
        export_onnx(models["run"], models["onnx"].parent)
    assert models["onnx"].stat().st_mtime_ns == before


def test_a_missing_onnxruntime_is_named(tmp_path, monkeypatch, capsys):
    """predict.py on an .onnx file without ONNX Runtime: one line naming the extra."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    sys.path.insert(0, str(ROOT / "scripts"))
    import predict as predict_cli

    (tmp_path / "model.onnx").write_bytes(b"unused: the runtime is missing first")
    Image.new("RGB", (32, 24)).save(tmp_path / "photo.png")
    with pytest.raises(SystemExit) as exit_info:
        predict_cli.main(["--model", str(tmp_path / "model.onnx"), str(tmp_path), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and err[-1].startswith("error: running .onnx models needs onnxruntime"), err
    assert 'pip install -e ".[onnx]"' in err[-1]

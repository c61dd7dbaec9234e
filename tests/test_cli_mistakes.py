"""A new user's mistakes, fed to every script in a fresh process: one ``error:`` line, exit status 2,
nothing created, and, for argument and path mistakes, TensorFlow never imported."""

import subprocess
import sys

import pytest
from PIL import Image

from conftest import shared_data
from helpers import ENV, ROOT

RUNNER = """if True:
    import runpy, sys
    script, sys.argv = sys.argv[1], sys.argv[1:]
    sys.path.insert(0, {root!r})
    try:
        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as exit:
        code = exit.code
    sys.stdout.flush()
    print("TENSORFLOW" if "tensorflow" in sys.modules else "NO-TENSORFLOW", code)
"""


def _run(script, args, cwd, env=None):
    """(exit code, TensorFlow imported?, stderr lines) of ``script`` (a path under ROOT) run with ``args``."""
    result = subprocess.run([sys.executable, "-c", RUNNER.format(root=str(ROOT)), str(ROOT / script), *map(str, args)],
                            cwd=cwd, env=env or ENV, capture_output=True, text=True, timeout=300)
    marker, code = result.stdout.strip().splitlines()[-1].split()
    return int(code) if code.lstrip("-").isdigit() else code, marker == "TENSORFLOW", result.stderr.splitlines()


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A working folder with the things a user points the scripts at, right and wrong."""
    root = tmp_path_factory.mktemp("mistakes")
    (root / "mine").mkdir()
    (root / "mine" / "notes.txt").write_text("the user's")
    (root / "empty").mkdir()
    (root / "notes.txt").write_text("not a model")
    (root / "run").mkdir()  # looks like a run folder from the file system: the checks pass it
    (root / "run" / "final.keras").write_bytes(b"")
    (root / "saved").mkdir()
    (root / "saved" / "saved_model.pb").write_bytes(b"")
    (root / "exports" / "1").mkdir(parents=True)
    (root / "exports" / "1" / "saved_model.pb").write_bytes(b"")
    (root / "tflite").mkdir()
    (root / "tflite" / "model.tflite").write_bytes(b"the user's")
    noann = root / "VOC-no-annotations"
    (noann / "JPEGImages").mkdir(parents=True)
    (noann / "ImageSets" / "Main").mkdir(parents=True)
    (noann / "ImageSets" / "Main" / "train.txt").write_text("a\n")
    (root / "good").mkdir()
    Image.new("RGB", (32, 24)).save(root / "good" / "photo.png")
    (root / "unreadable").mkdir()
    (root / "unreadable" / "a.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    (root / "unreadable" / "b.png").write_bytes(b"not a png")
    return root


VOC = ("raccoon", "VOC2007")

# script -> [(what, args, words the error line must hold)]; {p} is the working folder, {voc} the raccoon set.
MISTAKES = {
    "scripts/train.py": [
        ("zero batch", ["--batch-size", "0"], "--batch-size: must be a positive integer"),
        ("negative epochs", ["--epochs", "-1"], "--epochs: must be a positive integer"),
        ("not a number", ["--lr", "fast"], "'fast' is not a number"),
        ("missing data folder", ["--dataset", "voc", "--data-dir", "{p}/nowhere"], "nowhere does not exist"),
        ("parent folder", ["--dataset", "voc", "--data-dir", "{voc_parent}"], "did you mean"),
        ("no Annotations", ["--dataset", "voc", "--data-dir", "{p}/VOC-no-annotations", "--splits", "train"],
         "no Annotations/ folder"),
        ("unknown split", ["--dataset", "voc", "--data-dir", "{voc}", "--splits", "train,valid"],
         "no split 'valid' (this folder has train, trainval, val)"),
        ("three splits", ["--dataset", "voc", "--data-dir", "{voc}", "--splits", "train,val,test"], "takes two"),
        ("coco without instances", ["--dataset", "coco", "--data-dir", "{voc}"], "instances_train2017.json does not"),
        ("data folder for synthetic", ["--data-dir", "{voc}"], "is not read with the built-in set"),
        ("missing init model", ["--init-from", "{p}/nowhere.keras"], "nowhere.keras does not exist (expected a run"),
        ("user's folder as output", ["--output", "{p}/mine"], "mine already exists"),
        ("resume nothing", ["--resume", "--output", "{p}/empty"], "--resume needs the folder of an earlier run"),
        ("missing weights file", ["--dataset", "voc", "--data-dir", "{voc}", "--classes", "raccoon",
                                  "--backbone-weights", "{p}/resnet.pth"], "resnet.pth does not exist"),
    ],
    "scripts/evaluate.py": [
        ("missing model", ["--model", "{p}/nowhere"], "nowhere does not exist (expected a run folder"),
        ("not a model", ["--model", "{p}/notes.txt"], "notes.txt: not a model file (expected"),
        ("missing data folder", ["--model", "{p}/run", "--dataset", "voc", "--data-dir", "{p}/nowhere"],
         "does not exist"),
        ("unknown coco split", ["--model", "{p}/run", "--dataset", "coco", "--data-dir", "{p}", "--split", "val2099"],
         "instances_val2099.json does not exist"),
        ("user's folder as output", ["--model", "{p}/run", "--output", "{p}/mine"], "mine already exists"),
        ("threshold above 1", ["--model", "{p}/run", "--score-threshold", "2"], "must be between 0 and 1"),
    ],
    "scripts/predict.py": [
        ("missing model", ["--model", "{p}/nowhere.tflite", "{p}/unreadable", "--output", "{p}/out"],
         "does not exist (expected a run folder, a .keras file, a .weights.h5 file, a SavedModel folder, "
         "a .tflite file or an .onnx file)"),
        ("missing images", ["--model", "{p}/run", "{p}/photos", "--output", "{p}/out"], "photos does not exist"),
        ("no images", ["--model", "{p}/run", "{p}/empty", "--output", "{p}/out"], "no images in this folder"),
        ("user's folder as output", ["--model", "{p}/run", "{p}/good", "--output", "{p}/mine"],
         "mine already exists"),
        ("no readable image", ["--model", "{p}/run", "{p}/unreadable", "--output", "{p}/out"],
         "no image could be read: 2 skipped"),
        ("negative threshold", ["--model", "{p}/run", "{p}/good", "--output", "{p}/out",
                                "--score-threshold", "-1"], "must be between 0 and 1"),
    ],
    "scripts/export.py": [
        ("missing model", ["--model", "{p}/nowhere"], "nowhere does not exist"),
        ("a SavedModel as the source", ["--model", "{p}/saved"], "is a SavedModel folder, which this does not take"),
        ("int8 without images", ["--model", "{p}/run", "--format", "tflite", "--quantize", "int8"],
         "--quantize int8 needs --data-dir"),
        ("missing calibration images", ["--model", "{p}/run", "--format", "tflite", "--quantize", "int8",
                                        "--data-dir", "{p}/nowhere"], "nowhere does not exist"),
        ("existing version", ["--model", "{p}/run", "--output", "{p}/exports", "--version", "1"],
         "1 already exists"),
        ("existing tflite", ["--model", "{p}/run", "--format", "tflite", "--output", "{p}/tflite"],
         "model.tflite already exists"),
        ("version zero", ["--model", "{p}/run", "--version", "0"], "must be a positive integer"),
        ("version with tflite", ["--model", "{p}/run", "--format", "tflite", "--version", "2"], "--version is for"),
    ],
    "scripts/convert.py": [
        ("missing data folder", ["--dataset", "voc", "--data-dir", "{p}/nowhere", "--output", "{p}/out"],
         "does not exist"),
        ("user's folder as output", ["--dataset", "voc", "--data-dir", "{voc}", "--output", "{p}/mine"],
         "mine already exists"),
        ("zero shard size", ["--output", "{p}/out", "--images-per-shard", "0"], "must be a positive integer"),
        ("records as the source", ["--dataset", "tfrecord", "--data-dir", "{p}", "--output", "{p}/out"],
         "convert.py reads voc, coco, yolo or synthetic"),
        ("empty split name", ["--dataset", "voc", "--data-dir", "{voc}", "--splits", "train,", "--output", "{p}/out"],
         "empty split name"),
    ],
    "scripts/import_nvidia.py": [
        ("missing checkpoint", ["{p}/nvidia.pt", "--output", "{p}/out"], "nvidia.pt does not exist"),
        ("user's folder as output", ["{p}/notes.txt", "--output", "{p}/mine"], "mine already exists"),
        ("one class", ["{p}/notes.txt", "--output", "{p}/out", "--num-classes", "1"], "2 or more"),
    ],
    "scripts/inspect_data.py": [
        ("missing data folder", ["--dataset", "yolo", "--data-dir", "{p}/nowhere", "--output", "{p}/out"],
         "nowhere does not exist"),
        ("no data.yaml", ["--dataset", "yolo", "--data-dir", "{p}/empty", "--output", "{p}/out"], "no data.yaml"),
        ("user's folder as output", ["--output", "{p}/mine"], "mine already exists"),
    ],
    "benchmarks/__main__.py": [
        ("zero images", ["inference", "--images", "0"], "must be a positive integer"),
        ("unknown precision", ["train", "--precision", "float8"], "invalid choice: 'float8'"),
        ("missing VOC folder", ["data", "--data-dir", "{p}/nowhere"], "nowhere does not exist"),
        ("missing model", ["inference", "--onnx", "{p}/nowhere.onnx"], "nowhere.onnx does not exist"),
    ],
}
CASES = [(script, *case) for script, cases in MISTAKES.items() for case in cases]


@pytest.mark.parametrize("script, what, args, words", CASES, ids=[f"{c[0].split('/')[-1]}:{c[1]}" for c in CASES])
def test_an_argument_or_path_mistake_is_one_line_at_once(place, script, what, args, words):
    """Answered before TensorFlow loads: one line naming the option or path, exit 2, nothing written."""
    voc = shared_data(*VOC)
    args = [a.format(p=place, voc=voc, voc_parent=voc.parent) for a in args]
    before = _tree(place)
    code, tensorflow, err = _run(script, args, cwd=place)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and words in err[0], err
    assert not tensorflow, f"{what}: TensorFlow was imported"
    assert _tree(place) == before


@pytest.mark.slow  # each loads TensorFlow
def test_data_mistakes_found_while_reading_are_one_line_too(place, tmp_path):
    """Mistakes only reading finds: a misspelled class, a weights file that would run code,
    ImageNet weights offline. One error line, no traceback and no TensorFlow notice; no
    run folder or output left behind."""
    voc = shared_data(*VOC)
    evil = tmp_path / "evil.pt"
    evil.write_bytes(b"\x80\x02cposix\nsystem\nq\x00X\x05\x00\x00\x00echo!q\x01\x85q\x02Rq\x03.")
    offline = dict(ENV, HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9",
                   KERAS_HOME=str(tmp_path.parent / f"{tmp_path.name}-keras-home"))  # Keras writes its config there
    cases = [
        ("scripts/train.py", ["--dataset", "voc", "--data-dir", voc, "--classes", "racoon", "--output", "run1"], ENV,
         "its objects' classes are raccoon: pass them as --classes"),
        ("scripts/import_nvidia.py", [evil, "--output", "imported"], ENV, "would run code"),
        ("scripts/train.py", ["--dataset", "voc", "--data-dir", voc, "--classes", "raccoon", "--output", "run2"],
         offline, "offline, pass --backbone-weights none"),
    ]
    for script, args, env, words in cases:
        before = _tree(tmp_path)
        code, _, err = _run(script, args, cwd=tmp_path, env=env)
        errors = [line for line in err if not line.startswith("INFO ")]  # training's progress log
        assert code == 2 and len(errors) == 1 and errors[0].startswith("error: ") and words in errors[0], (script, err)
        assert "weights_only" not in errors[0]
        assert _tree(tmp_path) == before, (script, _tree(tmp_path))


def test_predict_fails_when_no_image_can_be_read_in_process(place, tmp_path):
    """The library side of that: predict_files writes nothing when no image is readable."""
    from ssd_tf.inference import prediction

    class NeverCalled:
        path = "model"

        def detect(self, images):
            raise AssertionError("no image should reach the detector")

    payload = prediction.predict_files(NeverCalled(), sorted((place / "unreadable").iterdir()), tmp_path / "out")
    assert payload["images"] == [] and len(payload["skipped"]) == 2 and not (tmp_path / "out").exists()


def test_every_option_shows_its_default_in_help():
    """argparse can show them all: every option with a default says it in --help."""
    import argparse
    import importlib.util

    for script in MISTAKES:
        spec = importlib.util.spec_from_file_location(f"help_{script.replace('/', '_')}", ROOT / script)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(ROOT))
        spec.loader.exec_module(module)
        parsers = [module.build_parser()]
        for action in parsers[0]._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers += list(action.choices.values())
        for parser in parsers:
            text = " ".join(parser.format_help().split())
            for action in parser._actions:
                if action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
                    continue
                shown = parser._get_formatter()._get_help_string(action) % {"default": action.default}
                assert "default" in shown, (script, action.option_strings)
                assert " ".join(shown.split())[:40] in text


def test_one_vocabulary_across_the_scripts():
    """One name per idea: none of the old names is left, and the kinds match the library's."""
    from ssd_tf.cli.arguments import DATASETS
    from ssd_tf.data.kinds import KINDS

    assert DATASETS == KINDS
    old = ("--mixed-precision", "--train-split", "--val-split", "--min-score", "--confusion-score", "--plots",
           "--output-root", "--dtype", "--calibration-data", "--images-dir", "--no-seed")
    texts = [(p, p.read_text()) for p in [*ROOT.glob("scripts/*.py"), ROOT / "benchmarks" / "__main__.py",
                                           ROOT / "README.md", *ROOT.glob("docs/*.md")]]
    left = [(p.name, name) for p, text in texts for name in old if f"{name} " in text or f'"{name}"' in text]
    assert not left, left
    shared = [p for p, text in texts if p.suffix == ".py" and "../shared" in text]
    assert not shared, shared


def test_tensorflow_start_up_notices_are_there_to_hold_back():
    """The notices exist (so the scripts' quiet stderr, checked above, is the filter's doing), and
    SSD_TF_NATIVE_LOGS=1 shows them."""
    code = ("from ssd_tf.cli.native_logs import NOTICES, load_tensorflow; load_tensorflow(); "
            "import sys; print('loaded', file=sys.stderr)")
    loud = subprocess.run([sys.executable, "-c", code], env=dict(ENV, SSD_TF_NATIVE_LOGS="1"), capture_output=True,
                          text=True, timeout=300)
    from ssd_tf.cli.native_logs import NOTICES

    notices = [line for line in loud.stderr.splitlines() if NOTICES.search(line)]
    assert loud.returncode == 0 and len(notices) >= 3, loud.stderr


def test_skipped_items_show_the_first_few_and_a_count(tmp_path, caplog):
    """A flood of skipped files logs five lines and one more saying the rest are counted."""
    from ssd_tf.data.detection_set import SkipReport

    report = SkipReport()
    with caplog.at_level("WARNING", logger="ssd_tf.data"):
        for i in range(40):
            report.skip("broken annotations", f"file-{i}.xml: broken")
    assert report.total == 40 and len(report.messages) == 40
    assert len(caplog.records) == SkipReport.LOGGED + 1 and "only the first 5" in caplog.records[-1].getMessage()
    held = SkipReport(held=True)
    with caplog.at_level("WARNING", logger="ssd_tf.data"):
        caplog.clear()
        held.skip("x", "one")
        assert not caplog.records
        held.release()
    assert [r.getMessage() for r in caplog.records] == ["skipped: one"]


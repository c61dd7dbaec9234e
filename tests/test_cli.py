"""The command lines: every option explained, and a user error is one line and exit status 2."""

import importlib.util
import sys

import pytest

from conftest import ROOT

SCRIPTS = sorted((ROOT / "scripts").glob("*.py")) + [ROOT / "benchmarks" / "__main__.py"]  # python -m benchmarks
NAMES = [p.parent.name if p.stem == "__main__" else p.stem for p in SCRIPTS]


def _script(path):
    if path.parent.name == "scripts":  # python -m benchmarks imports as a package, from the root
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(f"script_{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parsers(parser):
    subs = [a for action in parser._actions if isinstance(getattr(action, "choices", None), dict)
            for a in action.choices.values()]
    return [parser] + subs


@pytest.mark.parametrize("path", SCRIPTS, ids=NAMES)
def test_every_option_has_help(path):
    parser = _script(path).build_parser()
    missing = [a.dest for p in _parsers(parser) for a in p._actions if not a.help and a.dest != "help"]
    assert not missing, missing


def _user_error(tmp_path):
    missing = tmp_path / "missing"
    not_a_model = tmp_path / "notes.txt"
    not_a_model.write_text("not a model")
    return {
        "train": (["--dataset", "voc", "--data-dir", str(missing)], str(missing)),
        "evaluate": (["--model", str(not_a_model), "--dataset", "synthetic"], "notes.txt"),
        "predict": (["--model", str(not_a_model), str(tmp_path), "--output", str(tmp_path / "out")], "notes.txt"),
        "export": (["--model", str(not_a_model)], "notes.txt"),
        "convert": (["--dataset", "voc", "--data-dir", str(missing), "--output", str(tmp_path / "records")],
                    str(missing)),
        "import_nvidia": ([str(not_a_model), "--output", str(tmp_path / "imported")], "notes.txt"),
        "inspect_data": (["--dataset", "yolo", "--data-dir", str(missing), "--output", str(tmp_path / "look")],
                         str(missing)),
        "benchmarks": (["inference", "--data-dir", str(tmp_path / "empty")], "empty"),
    }


@pytest.mark.parametrize("path", SCRIPTS, ids=NAMES)
def test_a_user_error_is_one_line_and_exit_status_2(path, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    argv, named = _user_error(tmp_path)[NAMES[SCRIPTS.index(path)]]
    if path.stem == "import_nvidia":
        pytest.importorskip("torch")
    if path.stem == "train":  # a class name the data set doesn't have is a user error too
        with pytest.raises(SystemExit) as exit_info:
            _script(path).main(["--dataset", "synthetic", "--classes", "cat,,dog"])
        assert exit_info.value.code == 2 and "an empty class name" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        _script(path).main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert err and err[-1].startswith("error: ") and named in err[-1], err
    assert not any("Traceback" in line for line in err)


def test_help_answers_without_tensorflow():
    """--help of every script, and ``import ssd_tf``, load no TensorFlow: they answer at once."""
    import subprocess
    code = """if True:
        import runpy, sys
        for path in sys.argv[1:]:
            sys.argv = [path, "--help"]
            try:
                runpy.run_path(path, run_name="__main__")
            except SystemExit as exit:
                assert exit.code == 0, (path, exit.code)
        import ssd_tf, ssd_tf.data, ssd_tf.training.config, ssd_tf.data.kinds
        loaded = sorted(m for m in ("tensorflow", "keras", "torch") if m in sys.modules)
        print("LOADED", loaded, file=sys.stderr)
    """
    out = subprocess.run([sys.executable, "-c", code, *map(str, SCRIPTS)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "LOADED []" in out.stderr, out.stderr[-3000:]
    assert out.stdout.count("usage:") == len(SCRIPTS)


def test_library_parameters_read_as_flags_on_the_command_line():
    from ssd_tf.cli.errors import as_flags

    cases = {
        "init_from=runs/a: no layer fits": "--init-from runs/a: no layer fits",
        "pass resume=True to continue it, or another output=": "pass --resume to continue it, or another --output",
        "train with backbone_layout='keras'": "train with --backbone-layout keras",
        "quantize='int8' needs calibration_data=: a folder": "--quantize int8 needs --calibration-data: a folder",
        "classes='cat,,dog': an empty class name": "--classes 'cat,,dog': an empty class name",
        "pass num_classes=21": "pass --num-classes 21",
        "x == 2 and a.b=c stay": "x == 2 and a.b=c stay",
    }
    for message, expected in cases.items():
        assert as_flags(message) == expected
    assert as_flags("choose another output_dir=", {"output_dir": "--output"}) == "choose another --output"


def _raised_strings(path):
    """The string pieces of every ``raise`` in a file (messages, f-string parts)."""
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Raise) and node.exc is not None:
            found += [n.value for n in ast.walk(node.exc) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    return found


def test_library_errors_name_parameters_not_flags():
    """Outside ssd_tf/cli, no raised message names a command-line flag: a Python caller reads
    ``init_from=``, and the scripts show it as ``--init-from``."""
    import re

    flags = {f"{p.relative_to(ROOT)}: {s!r}" for p in (ROOT / "ssd_tf").rglob("*.py") if "cli" not in p.parts
             for s in _raised_strings(p) if re.search(r"(?<![\w-])--[a-z]", s)}
    assert not flags, sorted(flags)
    assert any("init_from=" in s for s in _raised_strings(ROOT / "ssd_tf" / "training" / "finetune.py"))


def test_a_script_shows_the_librarys_parameter_as_its_flag(tmp_path, capsys):
    """export_tflite says ``quantize='int8' needs calibration_data=``; export.py says the flags."""
    export = _script(ROOT / "scripts" / "export.py")
    with pytest.raises(SystemExit) as exit_info:
        export.main(["--model", str(tmp_path / "run"), "--format", "tflite", "--quantize", "int8",
                     "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and err[-1].startswith("error: --quantize int8 needs --data-dir: "), err
    assert not (tmp_path / "out").exists()

"""The house rules: layers import downward only, and the library never needs torch."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "ssd_tf"
# What the data layer must never import, even inside a function: it sits below all of these.
ABOVE_DATA = ("ssd_tf.evaluation", "ssd_tf.prediction", "ssd_tf.artifacts", "ssd_tf.export", "ssd_tf.serving",
              "ssd_tf.training", "ssd_tf.distribute", "ssd_tf.callbacks", "ssd_tf.nvidia", "ssd_tf.finetune")


def _imports(path):
    """Every module a file imports, at any depth (``from ssd_tf import x`` counts as ssd_tf.x)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_the_data_layer_imports_nothing_above_it():
    offenders = {f"{path.name}: {name}" for path in sorted((PACKAGE / "data").glob("*.py"))
                 for name in _imports(path) if name.startswith(ABOVE_DATA)}
    assert not offenders, sorted(offenders)


def test_no_data_module_imports_one_that_imports_it_back():
    modules = {f"ssd_tf.data.{p.stem}": _imports(p) for p in (PACKAGE / "data").glob("*.py") if p.stem != "__init__"}
    circles = {tuple(sorted((a, b))) for a, uses in modules.items() for b in uses if b in modules and a in modules[b]}
    assert not circles, sorted(circles)


def test_torch_is_imported_only_where_pytorch_files_are_read():
    users = sorted(p.name for p in PACKAGE.rglob("*.py") if any(n.split(".")[0] == "torch" for n in _imports(p)))
    # torch_weights reads .pt/.pth files; benchmark runs the seed's side of a comparison; both import it
    # inside functions. seed_reference is the seed's PyTorch code for the parity tests and benchmarks.
    assert users == ["benchmark.py", "seed_reference.py", "torch_weights.py"], users

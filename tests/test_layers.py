"""The house rules: layers import downward only, and the library never needs torch."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "ssd_tf"
# What the data layer must never import, even inside a function: it sits below all of these.
ABOVE_DATA = ("ssd_tf.evaluation", "ssd_tf.prediction", "ssd_tf.loading", "ssd_tf.export", "ssd_tf.serving",
              "ssd_tf.training", "ssd_tf.distribute", "ssd_tf.callbacks", "ssd_tf.nvidia", "ssd_tf.finetune",
              "ssd_tf.loop", "ssd_tf.validation", "ssd_tf.detector", "ssd_tf.tflite", "ssd_tf.cli")


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
    # torch_weights reads .pt/.pth files, importing torch inside its functions. The reference design's
    # PyTorch code (parity tests, the benchmarks' reference side) lives in tests/, outside the package.
    assert users == ["torch_weights.py"], users


def _module_graph():
    """ssd_tf module -> the ssd_tf modules it imports (at any depth). The top-level package, which
    gathers the public names for users, is left out: nothing inside imports it; so is a module's own
    package (``from ssd_tf.data import augment`` inside ``ssd_tf.data`` names a sibling)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return {name: {n for n in _imports(path) | _lazy_exports(name, path) if n in modules and n not in (name, "ssd_tf")
                   and not name.startswith(n + ".")}
            for name, path in modules.items() if name != "ssd_tf"}


def _lazy_exports(package, path):
    """The modules a package's ``_EXPORTS`` table (names imported on first use) hands out: edges of
    the graph as real as a static import."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_EXPORTS" for t in node.targets):
            names = {ast.literal_eval(v) for v in node.value.values}
            return {n if n.startswith("ssd_tf.") else f"{package}.{n}" for n in names}
    return set()


def test_no_import_circles_anywhere_in_the_package():
    graph = _module_graph()
    assert "ssd_tf.loop" in graph and "ssd_tf.data.pipeline" in graph["ssd_tf.training"] | graph["ssd_tf.data"]
    circles = set()

    def visit(node, path):
        for nxt in graph.get(node, ()):
            if nxt in path:
                circles.add(tuple(path[path.index(nxt):]) + (nxt,))
            elif len(path) < 12:
                visit(nxt, path + [nxt])
    for start in graph:
        visit(start, [start])
    assert not circles, sorted(circles)[:5]

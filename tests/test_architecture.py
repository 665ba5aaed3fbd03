"""The package's shape: imports point down only (ARCHITECTURE.md), and inference stays light.

The import graph counts every import, also those inside functions, so a cycle cannot hide behind a
deferred import. The light-inference check runs in a fresh interpreter: what a module pulls in is
only visible before anything else was imported.
"""
import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "gluon_ssd"


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph():
    """Module -> the package modules it imports (a parent package's ``__init__`` not counted
    for its own submodules: Python runs it first whatever they import)."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {m: set() for m in paths}
    for mod, path in paths.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                    + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base
                           for a in node.names]
            else:
                continue
            for target in targets:
                while target not in paths and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in paths and target != mod and not mod.startswith(target + "."):
                    graph[mod].add(target)
    return graph


def cycles(graph):
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert "gluon_ssd.detect" in graph and len(graph) > 20
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# MXNet 1.9.1's own ``import mxnet`` loads ``mxnet.contrib.quantization`` (``mxnet.contrib``
# imports it), so what is checked is that gluon-ssd's quantization (``gluon_ssd.quantize``,
# calibration data and all) stays out.
@pytest.mark.parametrize("module, absent", [
    ("gluon_ssd.detect", ("matplotlib", "gluon_ssd.quantize", "gluon_ssd.data.synthetic",
                          "gluon_ssd.data.datasets", "gluon_ssd.visualize", "gluon_ssd.train",
                          "gluon_ssd.deploy.onnx_model", "onnxruntime", "openvino")),
    ("gluon_ssd.export", ("gluon_ssd.quantize", "gluon_ssd.data.synthetic")),
    ("gluon_ssd.train", ("matplotlib", "gluon_ssd.visualize")),
])
def test_a_module_does_not_load_what_it_does_not_need(module, absent):
    code = (f"import sys, {module}; "
            f"print(' '.join(m for m in {absent!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"import {module} loaded {done.stdout.strip()}"

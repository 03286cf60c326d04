"""The package's layout holds: one folder per target runtime, the core never imports a target,
and no module imports another that imports it back (issue 19, section 0).

Imports are read from the source (ast), every one of them: at the top, inside functions
(lazy imports of torch's modules still name a module) and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "modelreg"
#: One folder per target runtime.
TARGETS = ("modelreg.rtneural", "modelreg.onnx", "modelreg.nam")
#: The front doors may name targets: the command line (`modelreg import FILE.json`) and the
#: package face (lazy public names such as load_rtneural).
FRONT_DOORS = ("modelreg", "modelreg.cli", "modelreg.__main__")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """The modules an ``from ... import ...`` names (a name that is a submodule counts as one)."""
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    names = []
    for alias in node.names:
        candidate = PACKAGE.parent / Path(*f"{prefix}.{alias.name}".split("."))
        # `from . import checks` names the submodule; `from .errors import Problem` names errors.
        names.append(f"{prefix}.{alias.name}" if candidate.with_suffix(".py").is_file() or candidate.is_dir()
                     else prefix)
    return names


def import_graph() -> dict[str, set[str]]:
    """modelreg module -> the modelreg modules it imports (a package counts as its __init__)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        is_package = path.name == "__init__.py"
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                found.update(_resolve(module, is_package, node))
        graph[module] = {name for name in found if name == "modelreg" or name.startswith("modelreg.")} - {module}
    return graph


def test_each_target_runtime_is_one_folder_holding_its_exporters_and_cpp_sources():
    assert (PACKAGE / "rtneural" / "runner.cpp").is_file()
    for name in ("format", "runtime", "cpp", "exporter", "header", "importing"):
        assert (PACKAGE / "rtneural" / f"{name}.py").is_file(), name
    assert (PACKAGE / "onnx" / "exporter.py").is_file()
    for name in ("format", "engine", "exporter"):
        assert (PACKAGE / "nam" / f"{name}.py").is_file(), name
    assert (PACKAGE / "nam" / "runner.cpp").is_file()
    leftovers = [p.name for p in PACKAGE.iterdir() if p.name.startswith(("rtneural_", "onnx_", "nam_")) or p.name == "exporters"]
    assert leftovers == []


def test_the_built_in_exporters_are_entry_points_into_their_target_folders():
    ours = {ep.name: ep.value for ep in entry_points(group="modelreg.exporters")
            if ep.value.startswith("modelreg.")}
    assert set(ours) == {"rtneural", "rtneural-cpp", "rtneural-torch", "onnx", "nam"}
    for name, value in ours.items():
        assert value.split(":")[0].rsplit(".", 1)[0] in TARGETS, (name, value)
    from modelreg.plugins import BUILTIN_EXPORTERS

    # The start-up shortcut never names an exporter that is not one of modelreg's own entry points.
    assert BUILTIN_EXPORTERS <= set(ours)


def test_the_core_never_imports_a_target():
    graph = import_graph()
    offenders = {module: sorted(name for name in imports if name.startswith(TARGETS))
                 for module, imports in graph.items()
                 if not module.startswith(TARGETS) and module not in FRONT_DOORS}
    assert {m: names for m, names in offenders.items() if names} == {}


def test_a_target_never_imports_another_target():
    # What two targets share (the C++ toolchain, adopting a file as an entry) lives in the core.
    graph = import_graph()
    crossings = {module: sorted(name for name in imports
                                if name.startswith(TARGETS) and not name.startswith(_target_of(module)))
                 for module, imports in graph.items() if module.startswith(TARGETS)}
    assert {m: names for m, names in crossings.items() if names} == {}


def _target_of(module: str) -> str:
    return next(target for target in TARGETS if module == target or module.startswith(target + "."))


def test_no_import_circle():
    graph = import_graph()
    # The package face re-exports lazily from everything; nothing below may need it.
    assert [m for m, imports in graph.items() if "modelreg" in imports and m not in FRONT_DOORS] == []
    graph = {module: imports - {"modelreg"} for module, imports in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for name in sorted(graph.get(module, ())):
            if state.get(name) == 1:
                pytest.fail("import circle: " + " -> ".join(stack[stack.index(name):] + [name]))
            if name in graph and state.get(name) is None:
                visit(name)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if state.get(module) is None:
            visit(module)


def test_the_graph_reader_sees_lazy_and_type_checking_imports():
    graph = import_graph()
    assert "modelreg.builder" in graph["modelreg.spec"]  # lazy: spec.build() imports torch's builder
    assert "modelreg.rtneural.runtime" in graph["modelreg.rtneural.exporter"]  # under TYPE_CHECKING too
    assert "modelreg.layers.base" in graph["modelreg.builder"]

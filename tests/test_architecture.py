"""The package's layers (docs/architecture.md): each layer is one sub-package of ``src/mixstudy/``
(the folders are the only list of them), the CLI alone sits on top, imports between layers only go
one way (no two layers import each other, directly or round a loop), no two modules import each
other, and every DVC stage depends on the folders its command runs.

Imports are read from the source (every ``import`` and ``from ... import``, at the top of a module
or inside a function): an import moved into a function cannot hide an upward import or a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "mixstudy"
TOP = {"cli"}  # the one module above the layers
# Each DVC stage's command and the modules it enters the package through (besides cli and config).
STAGE_ENTRIES = {"data": ["data.datasets"], "subset": ["data.subsets"],
                 "aggregate": ["results.aggregation", "results.analysis", "data.datasets", "data.subsets"],
                 "figures": ["figures.registry"], "report": ["report.document"]}


def module_name(path: Path) -> str:
    """``core.config`` for src/mixstudy/core/config.py, ``core`` for its ``__init__.py``."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py") if path != PACKAGE / "__init__.py"}


def layer(module: str) -> str:
    """A module's layer: its sub-package (the CLI is a layer of its own)."""
    return module.split(".")[0]


def imported_modules(source: str, known: set[str], here: str = "") -> set[str]:
    """The mixstudy modules a module's source imports, anywhere in it (``here``: the importing
    module, for relative imports)."""
    found = set()

    def add(module: str, names=()):
        # `from mixstudy.data import engine` imports the module data.engine, not a name of data
        named = {f"{module}.{name}".strip(".") for name in names} & known
        found.update(named or ({module} & known))

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: -node.level] if here.count(".") >= node.level - 1 else []
                module = ".".join([*base, *(node.module.split(".") if node.module else [])])
                add(module, [alias.name for alias in node.names])
            elif node.module and node.module.split(".")[0] == "mixstudy":
                add(node.module.partition(".")[2], [alias.name for alias in node.names])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("mixstudy."):
                    add(alias.name.partition(".")[2])
    return found


def package_graph() -> dict[str, set[str]]:
    """Module -> the modules it imports (itself excluded), modules named ``layer.module``."""
    modules = all_modules()
    known = set(modules)
    return {module: imported_modules(path.read_text(), known, module) - {module} for module, path in modules.items()}


def layer_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Layer -> the other layers its modules import."""
    layers: dict[str, set[str]] = {layer(module): set() for module in graph}
    for module, targets in graph.items():
        layers[layer(module)] |= {layer(target) for target in targets} - {layer(module)}
    return layers


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle found by a depth-first search (each reported once, from its first module)."""
    found, state = [], {}

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                found.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def imports_between_layers_of_a_loop(graph: dict[str, set[str]]) -> list[str]:
    """The module imports that make two layers import each other (round a loop of layers): with
    layers in one order, one of them goes upward."""
    looped = {edge for cycle in cycles(layer_graph(graph)) for edge in zip(cycle, cycle[1:])}
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if (layer(a), layer(b)) in looped)


def layer_order(graph: dict[str, set[str]]) -> list[str]:
    """The layers lowest first (each after every layer it imports; ties by name)."""
    layers, order = layer_graph(graph), []
    while len(order) < len(layers):
        order.append(min(name for name, below in layers.items() if name not in order and below <= set(order)))
    return order


def closure(graph: dict[str, set[str]], entries) -> set[str]:
    seen, todo = set(), list(entries)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += graph[module]
    return seen


def test_only_the_cli_and_the_layers_at_the_top():
    top = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__"}
    assert top == TOP, "a module outside the layers' folders"
    folders = {path.name for path in PACKAGE.iterdir() if path.is_dir() and path.name != "__pycache__"}
    assert all((PACKAGE / folder / "__init__.py").is_file() for folder in folders), "a folder that is not a package"
    assert all(len(module.split(".")) <= 2 for module in all_modules()), "a package inside a layer"


def test_no_two_layers_import_each_other():
    graph = package_graph()
    assert imports_between_layers_of_a_loop(graph) == []
    assert layer_order(graph)[-1] == "cli"


def test_there_is_no_import_cycle():
    assert cycles(package_graph()) == []


def test_the_checks_find_an_upward_import_and_a_cycle():
    """What the two tests above would say if someone added `from mixstudy import cli` to
    data/datasets.py, or made results.tables import results.aggregation (which imports tables)."""
    upward = package_graph()
    upward["data.datasets"] = upward["data.datasets"] | {"cli"}
    found = imports_between_layers_of_a_loop(upward)
    assert "data.datasets -> cli" in found and all(edge.startswith(("data.", "cli ")) for edge in found), found
    assert ["cli", "data", "cli"] in cycles(layer_graph(upward))
    looped = package_graph()
    looped["results.tables"] = looped["results.tables"] | {"results.aggregation"}
    assert imports_between_layers_of_a_loop(looped) == []  # one layer: only the cycle test can see it
    found = cycles(looped)
    assert found and all({"results.tables", "results.aggregation"} <= set(cycle) for cycle in found), found


def test_imports_are_read_in_every_form():
    known = {"data", "data.engine", "data.datasets", "runs.study", "cli"}
    source = ("from mixstudy.data import engine\nfrom mixstudy.data.datasets import StudyData\n"
              "import mixstudy.runs.study\ndef f():\n    from mixstudy import cli\n    from . import engine\n")
    assert imported_modules(source, known, "data.datasets") == {"data.engine", "data.datasets", "runs.study", "cli"}


@pytest.mark.parametrize("stage", sorted(STAGE_ENTRIES))
def test_each_dvc_stage_depends_on_the_code_it_runs(stage):
    deps = set(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["deps"])
    # the command's function in cli.py imports its entry modules (and config, for the parameters)
    runs = {"cli"} | closure(package_graph(), ["core.config", *STAGE_ENTRIES[stage]])
    folders = {"src/mixstudy/cli.py" if module in TOP else f"src/mixstudy/{layer(module)}" for module in runs}
    missing = sorted(folders - deps)
    assert missing == [], f"dvc.yaml stage {stage} runs the code of these folders without depending on them"

"""The package's layers (docs/architecture.md): every module in one layer, imports only downward,
no import cycle, and every DVC stage depending on the code its command runs.

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

# Lowest first; a module may import modules of its own layer or of a layer below it.
LAYERS = {
    "base": ["errors", "fileio", "provenance"],
    "parameters": ["networks", "config"],
    "study": ["study", "progress", "reruns"],
    "data": ["data", "engine"],
    "model": ["models", "packing", "mixing", "metrics", "theory"],
    "train": ["trainer", "evaluation", "checkpoint", "runfolder", "training", "run_evaluation"],
    "results": ["statistics", "analysis", "selection", "tables", "theory_tables", "published", "summary", "aggregation", "run_sets",
                "figure_base", "figure_examples", "figure_grids", "figure_runs", "figures",
                "report_comparison", "report_theory", "report_results", "report_setting", "report"],
    "cli": ["cli"],
}
# Each DVC stage's command and the module it enters the package through (besides cli and config).
STAGE_ENTRIES = {"data": ["data"], "subset": ["data"], "aggregate": ["aggregation", "analysis", "data"],
                 "figures": ["figures"], "report": ["report"]}


def imported_modules(source: str) -> set[str]:
    """The mixstudy modules a module's source imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mixstudy":
            parts = node.module.split(".")
            found |= {alias.name for alias in node.names} if len(parts) == 1 else {parts[1]}
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("mixstudy.")}
    return found


def package_graph() -> dict[str, set[str]]:
    modules = {path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
    return {module: imported_modules((PACKAGE / f"{module}.py").read_text()) & modules for module in modules}


def layer_of() -> dict[str, int]:
    return {module: rank for rank, modules in enumerate(LAYERS.values()) for module in modules}


def upward_imports(graph: dict[str, set[str]], ranks: dict[str, int]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if ranks[b] > ranks[a])


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


def closure(graph: dict[str, set[str]], entries) -> set[str]:
    seen, todo = set(), list(entries)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += graph[module]
    return seen


def test_every_module_has_one_layer():
    placed = [module for modules in LAYERS.values() for module in modules]
    assert len(placed) == len(set(placed)), "a module is in two layers"
    assert set(placed) == set(package_graph()), "a module without a layer, or a layer naming no module"


def test_no_module_imports_a_higher_layer():
    assert upward_imports(package_graph(), layer_of()) == []


def test_there_is_no_import_cycle():
    assert cycles(package_graph()) == []


def test_the_checks_find_an_upward_import_and_a_cycle():
    """What the two tests above would say if someone added `from mixstudy import cli` to data.py,
    or made tables import aggregation (which imports tables)."""
    upward = package_graph()
    upward["data"] = upward["data"] | {"cli"}
    assert upward_imports(upward, layer_of()) == ["data -> cli"]
    looped = package_graph()
    looped["tables"] = looped["tables"] | {"aggregation"}
    assert upward_imports(looped, layer_of()) == []  # one layer: only the cycle test can see it
    found = cycles(looped)
    assert found and all({"tables", "aggregation"} <= set(cycle) for cycle in found), found


@pytest.mark.parametrize("stage", sorted(STAGE_ENTRIES))
def test_each_dvc_stage_depends_on_the_code_it_runs(stage):
    deps = set(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["deps"])
    # the command's function in cli.py imports its entry modules (and config, for the parameters)
    runs = {"cli"} | closure(package_graph(), ["config", *STAGE_ENTRIES[stage]])
    missing = sorted(f"src/mixstudy/{module}.py" for module in runs if f"src/mixstudy/{module}.py" not in deps)
    assert missing == [], f"dvc.yaml stage {stage} runs these modules without depending on them"

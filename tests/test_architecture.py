"""The package's layers: dependencies point one way (README: Architecture) and there are no
import cycles between modules. Read from the source with `ast`, so a late import inside a
function counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import brainvq

PACKAGE = Path(brainvq.__file__).parent
# What each part may import from brainvq, besides itself and the shared helpers.
SHARED = {"config", "hardware", "metrics", "io.atomic", "run", "edge"}
ALLOWED = {
    "data": set(),
    "models": set(),
    "io": {"models"},
    "training": {"data", "models", "io", "inference"},
    "inference": {"data", "models", "io"},
    "evaluation": {"data", "models", "io", "inference"},
    "report": {"io.atomic", "run"},
    "app": {"data", "models", "io", "training", "inference", "evaluation", "report"},
}
# import nothing from brainvq but each other (edge: nothing at all, it must run without torch)
LOW = {"config", "hardware", "metrics", "edge"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("brainvq"):
            found.add(node.module.removeprefix("brainvq").removeprefix("."))
        elif isinstance(node, ast.Import):
            found |= {
                a.name.removeprefix("brainvq.") for a in node.names if a.name.startswith("brainvq.")
            }
    return {f for f in found if f}


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}


def part_of(module: str) -> str:
    if module.startswith("io.atomic"):
        return "io.atomic"
    return module.split(".")[0]


def test_dependencies_point_one_way() -> None:
    wrong = []
    for module, targets in graph().items():
        part = part_of(module)
        for target in targets:
            other = part_of(target)
            if other == part or module == "":  # the notebook API may use everything
                continue
            if part in LOW:
                ok = other in LOW
            elif part in ("run", "io.atomic"):
                ok = other in LOW | {"data", "models", "io.atomic"}
            else:
                ok = other in SHARED | ALLOWED[part] or (other == "io" and "io" in ALLOWED[part])
            if not ok:
                wrong.append(f"{module} -> {target}")
    assert not wrong, wrong


def test_no_import_cycles() -> None:
    deps = graph()
    modules = set(deps)

    def resolve(target: str) -> str | None:  # "io.bundle" -> "io.bundle"; "data" -> "data"
        return target if target in modules else None

    edges = {m: {t for t in map(resolve, deps[m]) if t and t != m} for m in deps}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, path: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle.extend(path[path.index(nxt) :] + [node, nxt] if nxt in path else [node, nxt])
                return True
            if nxt not in state and visit(nxt, [*path, node]):
                return True
        state[node] = 2
        return False

    for module in sorted(edges):
        if module not in state and visit(module, []):
            break
    assert not cycle, " -> ".join(cycle)


def test_the_report_reads_no_model_data_or_sampler_code() -> None:
    for module, targets in graph().items():
        if part_of(module) == "report":
            assert not {
                t for t in targets if part_of(t) in ("training", "inference", "evaluation", "data")
            }, module

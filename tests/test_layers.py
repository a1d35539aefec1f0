"""The house's layers hold: each module imports only from its own layer or below (the order
of docs/design.md's diagram, read from the file), no import circles among metaloop's modules,
and the sharper rules below.

Imports are read from the source with ``ast`` — at module level and inside functions alike;
only those under ``if TYPE_CHECKING:`` are left out, since they never run.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "metaloop"
DESIGN = SRC.parent / "docs" / "design.md"
#: the diagram's layers, top first
LAYER_NAMES = ["faces", "top", "face API", "drivers", "config", "services", "parts", "ground"]

#: (importer prefix, forbidden prefixes, why)
RULES = [
    ("metaloop.optimizers", ("metaloop.executors", "metaloop.store", "metaloop.config",
                             "metaloop.drivers", "metaloop.api"),
     "optimizers are pure algorithms"),
    ("metaloop.executors", ("metaloop.store", "metaloop.optimizers", "metaloop.config",
                            "metaloop.api", "metaloop.cli"),
     "executors run evaluations and know nothing of what records or proposes them"),
    ("metaloop.store", ("metaloop.optimizers", "metaloop.executors", "metaloop.config"),
     "the store keeps records, whoever makes them"),
    ("metaloop.optimizees", ("metaloop.api", "metaloop.cli", "metaloop.config",
                             "metaloop.dashboard", "metaloop.nested", "metaloop.drivers"),
     "optimizees are below the config and the drivers"),
]
#: only these may import the command line or the dashboard
FACES = ("metaloop.cli", "metaloop.dashboard", "metaloop.__main__")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def _resolve(name: str, modules: set[str]) -> str | None:
    """The deepest module of ours that ``name`` names (``a.b.func`` -> ``a.b``)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of ours it imports at run time."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in files.items():
        tree = ast.parse(path.read_text())
        skip = _type_checking_nodes(tree)
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                targets = [f"{origin}.{a.name}" for a in node.names]
            for target in targets:
                if target.startswith("metaloop"):
                    found = _resolve(target, modules)
                    if found is not None and found != mod:
                        graph[mod].add(found)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


GRAPH = import_graph()


def test_the_graph_sees_imports_inside_functions() -> None:
    # drivers.loop imports the registry at module level, nested imports api in a function
    assert "metaloop.api" in GRAPH["metaloop.nested"]
    assert "metaloop.optimizers.registry" in GRAPH["metaloop.drivers.loop"]


def test_no_import_circles() -> None:
    assert cycles(GRAPH) == []


def test_cycle_finder_finds_a_planted_circle() -> None:
    planted = {m: set(t) for m, t in GRAPH.items()}
    planted["metaloop.space"].add("metaloop.api")
    assert any("metaloop.space" in c and "metaloop.api" in c for c in cycles(planted))


@pytest.mark.parametrize("importer, forbidden, why", RULES, ids=[r[0] for r in RULES])
def test_layer_rules(importer: str, forbidden: tuple[str, ...], why: str) -> None:
    bad = sorted(
        f"{mod} -> {target}"
        for mod, targets in GRAPH.items()
        if _under(mod, importer)
        for target in targets
        if any(_under(target, f) for f in forbidden)
    )
    assert bad == [], why


def test_only_the_faces_import_the_faces() -> None:
    bad = sorted(
        f"{mod} -> {target}"
        for mod, targets in GRAPH.items()
        if not any(_under(mod, f) for f in FACES)
        for target in targets
        if any(_under(target, f) for f in ("metaloop.cli", "metaloop.dashboard"))
    )
    assert bad == []


def test_no_source_module_over_600_lines() -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 600
    }
    assert long == {}


# -- the order of docs/design.md's diagram ------------------------------------------------------
def design_rows() -> list[tuple[str, list[str], dict[str, list[str]]]]:
    """The diagram's rows, top first: (layer, the modules and packages it places, each package's
    listed modules where it lists them)."""
    text = DESIGN.read_text()
    diagram = text.split("## The layers", 1)[1].split("```", 2)[1]
    rows = []
    for line in diagram.strip("\n").splitlines():
        layer = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        names, listed = [], {}
        for m in re.finditer(r"([\w]+)(\.py|/)(?:\s*\(([^)]*)\))?", line):
            stem, kind, inner = m.groups()
            if kind == ".py":
                names.append("metaloop" if stem == "__init__" else f"metaloop.{stem}")
            else:
                names.append(f"metaloop.{stem}")
                if inner is not None:
                    listed[f"metaloop.{stem}"] = [x.strip() for x in inner.split(",")]
        rows.append((layer, names, listed))
    return rows


ROWS = design_rows()


def layer_of(module: str) -> int | None:
    """The module's layer, counted from the ground (0) up; None where the diagram has none."""
    for i, (_, names, _) in enumerate(reversed(ROWS)):
        for name in names:
            package = name != "metaloop" and (PACKAGE / name.split(".", 1)[1]).is_dir()
            if module == name or package and _under(module, name):
                return i
    return None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """The imports of a higher layer than the importer's."""
    return sorted(
        f"{mod} -> {target}"
        for mod, targets in graph.items()
        for target in targets
        if (layer_of(target) or 0) > (layer_of(mod) or 0)
    )


def test_the_diagram_has_the_designs_layers() -> None:
    assert [layer for layer, _, _ in ROWS] == LAYER_NAMES


def test_the_diagram_places_every_module_once() -> None:
    unplaced = sorted(m for m in GRAPH if layer_of(m) is None)
    assert unplaced == [], "add them to docs/design.md's layer diagram"
    named = [n for _, names, _ in ROWS for n in names]
    assert len(named) == len(set(named))
    missing = [n for n in named if n not in GRAPH]  # a package is its __init__ module
    assert missing == [], "the diagram names modules that do not exist"


def test_the_diagrams_module_lists_are_complete() -> None:
    for _, _, listed in ROWS:
        for package, modules in listed.items():
            folder = PACKAGE / package.split(".", 1)[1]
            actual = sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")
            assert sorted(modules) == actual, package


def test_each_layer_imports_only_its_own_and_lower_layers() -> None:
    assert upward_imports(GRAPH) == []


def test_the_order_check_finds_a_planted_upward_import() -> None:
    planted = {m: set(t) for m, t in GRAPH.items()}
    planted["metaloop.steering"].add("metaloop.config.resolve")
    planted["metaloop.scoring"].add("metaloop.store.sql")
    assert upward_imports(planted) == [
        "metaloop.scoring -> metaloop.store.sql",
        "metaloop.steering -> metaloop.config.resolve",
    ]

"""The package has no import cycle, and the lower layers never import the upper ones.

Read from the source with ``ast`` (module-level imports only: an import inside a function runs on
call, not at import time, and is how a few convenience methods reach a renderer).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "fairaudit"

#: Folders (or top-level modules) from the bottom up; a module may import only its own layer or lower ones.
LAYERS = [
    {"errors", "version", "model", "geodata", "text"},
    {"io", "validate", "privacy", "stats", "options"},
    {"methods", "engines"},
    {"pipeline", "report"},
    {"comparison", "gate", "synth", "export", "embed"},
    {"render", "api"},
    {"cli", "__init__"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_imports(path: Path) -> set[str]:
    """fairaudit modules imported at module level (``if TYPE_CHECKING:`` blocks excluded)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fairaudit"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(
                    candidate
                    if (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").exists()
                    or (PACKAGE.parent / candidate.replace(".", "/")).is_dir()
                    else node.module
                )
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("fairaudit"))
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): module_imports(p) for p in PACKAGE.rglob("*.py")}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def layer_of(module: str) -> int:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else "__init__"
    for level, names in enumerate(LAYERS):
        if key in names:
            return level
    raise AssertionError(f"{module} is in no layer: add its folder to LAYERS")


def test_no_import_cycle():
    assert find_cycle(graph()) is None, f"import cycle: {' -> '.join(find_cycle(graph()) or [])}"


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_a_higher_layer():
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in graph().items()
        for target in targets
        if target != "fairaudit" and layer_of(target) > layer_of(module)
    )
    assert not upward, "imports that go up a layer: " + "; ".join(upward)


def test_every_package_folder_is_installed():
    """pyproject.toml lists the packages explicitly (data_schemas/ is mapped in as one): a new
    folder missing from the list works in a checkout but not after pip install."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {module_name(p) for p in PACKAGE.rglob("__init__.py")}
    assert folders <= listed, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(folders - listed)}"

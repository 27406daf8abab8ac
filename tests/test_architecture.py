"""The layering of docs/architecture.md, checked on the source: every ``gankit`` import (top level or inside a
function) goes to the importer's own layer or a lower one, and no two modules import each other in a cycle; the
model layer and ``io`` know nothing of the Hub; the training loop stays short enough to read as the loop.

Only the package facade ``gankit/__init__.py`` may import anything (it re-exports the public API).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "gankit"

# First path component under gankit/ (module or package) -> layer, low to high.
LAYERS = {
    "errors": 0, "version": 0, "interrupts": 0, "io": 0, "device": 0, "images": 0, "log": 0,
    "nn": 1,
    "models": 2,
    "losses": 3, "compat": 3, "augment": 3,
    "config": 4, "configs": 4,
    "data": 5,
    "metrics": 6,
    "training": 7,
    "api": 8, "hub": 8,
    "apps": 9,
    "cli": 10, "__main__": 10,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def gankit_imports(path: Path, text: str | None = None) -> set[str]:
    """Every ``gankit.*`` module ``path`` imports, relative imports resolved, ``from X import name`` counted as X
    (or as X.name when that is a module of its own). ``text`` replaces the file's source when given."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    source = path.read_text() if text is None else text
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "gankit")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "gankit":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    return found


FILES = sorted(SRC.rglob("*.py"))
MODULES = {module_name(p) for p in FILES}


def layer_of(module: str) -> int:
    parts = module.split(".")
    assert len(parts) >= 2, module
    return LAYERS[parts[1]]


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in MODULES if m != "gankit" and m.split(".")[1] not in LAYERS)
    assert unplaced == []


@pytest.mark.parametrize("path", [p for p in FILES if module_name(p) != "gankit"], ids=module_name)
def test_imports_go_only_downward(path):
    importer = module_name(path)
    upward = sorted(m for m in gankit_imports(path) if m != "gankit" and layer_of(m) > layer_of(importer))
    assert upward == [], f"{importer} (layer {layer_of(importer)}) imports higher layers: {upward}"


def test_no_module_imports_the_facade():
    offenders = sorted(module_name(p) for p in FILES if module_name(p) != "gankit" and "gankit" in gankit_imports(p))
    assert offenders == []


def test_no_import_cycles():
    graph = {module_name(p): {m for m in gankit_imports(p) if m in MODULES} for p in FILES}
    # A package's __init__ importing its own submodules is how packages re-export; a cycle is module-to-module.
    for pkg in graph:
        graph[pkg] = {m for m in graph[pkg] if not m.startswith(pkg + ".") or pkg == "gankit"}
    graph.pop("gankit")
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert cycles == []


def test_the_checker_sees_upward_and_relative_imports():
    """The check itself finds a leaf importing the trainer, inside a function and relatively (so green means
    something)."""
    leaf = SRC / "errors.py"
    text = leaf.read_text() + "\ndef f():\n    from .training import trainer\n    import gankit.apps.sample\n"
    found = gankit_imports(leaf, text)
    assert {"gankit.training.trainer", "gankit.apps.sample"} <= found
    assert all(layer_of(m) > layer_of("gankit.errors") for m in ("gankit.training.trainer", "gankit.apps.sample"))


def _imports_anything_of_the_hub(path: Path, text: str | None = None) -> list[str]:
    """The Hub modules ``path`` imports: ``gankit.hub*`` and ``huggingface_hub*``."""
    text = path.read_text() if text is None else text
    found = [m for m in gankit_imports(path, text) if m == "gankit.hub" or m.startswith("gankit.hub.")]
    for node in ast.walk(ast.parse(text, str(path))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        found += [n for n in names if n.split(".")[0] == "huggingface_hub"]
    return sorted(found)


@pytest.mark.parametrize(
    "path", [p for p in FILES if module_name(p).startswith("gankit.models") or module_name(p) == "gankit.io"],
    ids=module_name,
)
def test_models_and_io_know_nothing_of_the_hub(path):
    assert _imports_anything_of_the_hub(path) == []
    text = path.read_text()
    assert "PretrainedDir" not in text and "model_card" not in text


def test_the_hub_check_sees_a_hub_import():
    base = SRC / "models" / "base.py"
    added = "\ndef f():\n    from gankit.hub.layout import PretrainedDir\n    import huggingface_hub\n"
    text = base.read_text() + added
    assert _imports_anything_of_the_hub(base, text) == ["gankit.hub.layout", "huggingface_hub"]


def test_the_trainer_reads_as_the_loop():
    """The step, checkpoints and resuming live in their own modules; what stays in trainer.py is the loop."""
    lines = (SRC / "training" / "trainer.py").read_text().splitlines()
    assert len(lines) < 300

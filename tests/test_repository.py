"""Repository-wide rules: the package's imports read one way, and the files speak of the project.

Layers, lowest first: ops -> models -> data / engine -> analysis -> cli. A module may import from its
own layer or below, never above; and no two modules import each other, directly or round a loop.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "videomamba"
LAYERS = {"ops": 0, "models": 1, "data": 2, "engine": 2, "analysis": 3, "cli": 4, "__main__": 4}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The videomamba modules ``path`` imports, at the top or inside functions."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        for candidate in candidates:
            if candidate.startswith("videomamba") and _file_of(candidate) is not None:
                found.add(candidate)
    found.discard(name)
    return found


def _file_of(module: str) -> Path | None:
    base = PACKAGE.parent.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_no_import_cycles():
    graph = _graph()
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(nxt_ := node, ())):
            # a package's __init__ importing its own submodules is not a cycle through them
            if nxt.startswith(nxt_ + ".") and _file_of(nxt_).name == "__init__.py":
                continue
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_imports_point_down_the_layers():
    upward = []
    for module, targets in _graph().items():
        own = _layer(module)
        for target in targets:
            other = _layer(target)
            if own is not None and other is not None and other > own:
                upward.append(f"{module} imports {target}")
    assert not upward, "imports against the layering ops -> models -> data/engine -> analysis -> cli:\n" + \
        "\n".join(sorted(upward))


# Words about how the code was made, not about the project (spelled in pieces so that this file does not
# match its own rule). API names that contain them are allowed.
_SITTING, _INVOCATION, _HALT = "sess" + "ion", "ca" + "ll", "st" + "op"
PROCESS_WORDS = re.compile(rf"{_SITTING}|\b{_INVOCATION} [0-9]|\b{_HALT}\b", re.IGNORECASE)
ALLOWED = re.compile(rf'scope="{_SITTING}"|Inference{_SITTING.title()}')
CHECKED = ("README.md", "CHANGELOG.md", "docs", "src", "tests", "benchmarks", "configs", ".ci")
TEXT_SUFFIXES = {".md", ".py", ".yaml", ".yml", ".toml", ".txt", ".sh", ".c", ".json", ".jsonl", ".csv", ""}


def _text_files():
    for entry in CHECKED:
        path = ROOT / entry
        files = [path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []
        for file in files:
            if file.is_file() and file.suffix in TEXT_SUFFIXES and "__pycache__" not in file.parts:
                yield file


def test_files_speak_of_the_project_not_of_how_it_was_made():
    hits = []
    for file in _text_files():
        for number, line in enumerate(file.read_text(errors="replace").splitlines(), 1):
            if PROCESS_WORDS.search(ALLOWED.sub("", line)):
                hits.append(f"{file.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert not hits, "words about the making of the code in the repository:\n" + "\n".join(hits)


@pytest.mark.parametrize("line,flagged", [
    (f"# measured in the seventh {_SITTING}", True), (f"({_INVOCATION} 5)", True), (f"the previous {_HALT}'s code", True),
    (f'@pytest.fixture(scope="{_SITTING}")', False), (f"onnxruntime.Inference{_SITTING.title()}(path)", False),
    (f"subprocess.{_INVOCATION}(cmd)", False), ("the loop ends after max_steps", False)])
def test_process_word_rule(line, flagged):
    assert bool(PROCESS_WORDS.search(ALLOWED.sub("", line))) == flagged

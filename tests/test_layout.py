"""The package's shape: private names stay in their package, no import cycles, small modules."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "memnas"
MAX_LINES = 400


def _modules() -> list[pathlib.Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package(module: str) -> str:
    """The first-level package a module belongs to (``memnas.runner``), or the module."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _imports(path: pathlib.Path) -> list[tuple[str, list[str], int]]:
    """``(module, names, line)`` of every absolute ``memnas`` import in a file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            out.extend((a.name, [], node.lineno) for a in node.names)
    return [(m, names, line) for m, names, line in out if m.split(".")[0] == "memnas"]


def test_no_private_module_or_name_is_imported_across_packages():
    bad = []
    for path in _modules():
        here = _package(_name(path))
        for module, names, line in _imports(path):
            there = _package(module)
            if there == here:
                continue
            private = [p for p in module.split(".") if p.startswith("_")]
            if module in ("memnas", there):   # `from memnas.store import X`: X is the name
                private += [n for n in names if n.startswith("_") and n != "__version__"]
            else:
                private += [n for n in names if n.startswith("_")]
            if private:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module} {names}")
    assert not bad, "\n".join(bad)


def test_tests_use_only_their_own_packages_private_names():
    bad = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        rel = path.relative_to(ROOT / "tests").parts
        own = f"memnas.{rel[0]}" if len(rel) > 1 else None
        for module, names, line in _imports(path):
            if own and _package(module) == own:
                continue
            hidden = [p for p in module.split(".") if p.startswith("_")]
            hidden += [n for n in names if n.startswith("_") and n != "__version__"]
            if hidden:
                bad.append(f"tests/{'/'.join(rel)}:{line} imports {module} {names}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles_between_packages():
    """Module-level imports only (imports inside functions are deliberate late binding)."""
    graph: dict[str, set[str]] = {}
    for path in _modules():
        here = _package(_name(path))
        tree = ast.parse(path.read_text(), str(path))
        for node in tree.body:
            if isinstance(node, ast.If):          # `if TYPE_CHECKING:` imports count too
                nodes = node.body
            else:
                nodes = [node]
            for n in nodes:
                if isinstance(n, ast.ImportFrom) and n.module and n.level == 0 \
                        and n.module.startswith("memnas."):
                    there = _package(n.module)
                    if there != here and there != "memnas":
                        graph.setdefault(here, set()).add(there)

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return path + [nxt]
                if nxt not in path:
                    stack.append((nxt, path + [nxt]))
        return None

    cycles = {" -> ".join(c) for p in graph if (c := cycle_from(p))}
    assert not cycles, "\n".join(sorted(cycles))


def _top_level_imports(path: pathlib.Path) -> set[str]:
    """Modules a file imports at module level (``from a.b import c`` gives a.b and a.b.c)."""
    out = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def test_no_module_imports_back_the_package_init_that_imports_it():
    """The cycle `algorithms/__init__` had: __init__ imports a module that imports __init__."""
    bad = []
    for path in _modules():
        if path.name == "__init__.py":
            continue
        me = _name(path)
        package = me.rsplit(".", 1)[0]
        init = path.parent / "__init__.py"
        if package == "memnas" or not init.exists() or me not in _top_level_imports(init):
            continue
        folder = path.parent
        for module, names, line in _imports(path):
            defined = [n for n in names if not (folder / f"{n}.py").exists()
                       and not (folder / n / "__init__.py").exists()]
            if module == package and defined:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {defined} from "
                           f"{package}, whose __init__ imports it")
    assert not bad, "\n".join(bad)


def test_no_noqa_e402():
    assert not [p for p in _modules() if "noqa: E402" in p.read_text()]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_are_small_or_say_why(path):
    text = path.read_text()
    lines = text.count("\n")
    doc = ast.get_docstring(ast.parse(text)) or ""
    assert doc, f"{path.relative_to(ROOT)} has no module docstring"
    if lines > MAX_LINES:
        assert "over 400 lines" in doc, (
            f"{path.relative_to(ROOT)} has {lines} lines; split it or say in its docstring "
            f"why it is over 400 lines")

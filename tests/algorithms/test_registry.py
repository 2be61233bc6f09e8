"""The package layout: the registry holds no cycle, and `import memnas.algorithms` stays light."""

import ast
import pathlib
import subprocess
import sys

import memnas.algorithms

PACKAGE = pathlib.Path(memnas.algorithms.__file__).parent


def _imports_the_package(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            if node.module == "memnas.algorithms" or (
                    node.module == "memnas" and any(a.name == "algorithms" for a in node.names)):
                yield node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is None:
            yield node.lineno  # from . import x
        elif isinstance(node, ast.Import) and \
                any(a.name == "memnas.algorithms" for a in node.names):
            yield node.lineno


def test_no_algorithm_module_imports_the_package_init():
    found = {p.name: lines for p in sorted(PACKAGE.glob("*.py")) if p.name != "__init__.py"
             for lines in [list(_imports_the_package(ast.parse(p.read_text())))] if lines}
    assert found == {}, f"import from memnas.algorithms.registry (or the module) instead: {found}"


def test_import_registers_every_algorithm_without_torch():
    code = ("import sys, memnas.algorithms as a; "
            "print(sorted(a.ALGORITHMS), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    names, torch = out.stdout.rsplit(" ", 1)
    assert torch.strip() == "False"
    assert {"random", "evolution", "nsga2", "mcts", "tpe", "cmaes", "gp", "optuna_nsga2", "imp",
            "sharp_darts"} <= set(ast.literal_eval(names))

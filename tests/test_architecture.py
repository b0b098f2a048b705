"""The package's layers: imports only point down the module table of ``fewshot/__init__.py``, the
ground floor imports nothing of the package, no package import hides inside a function, and any
import order works (the old ``config ⇄ data`` cycle is gone)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fewshot"
GROUND = {"config", "checks", "distances"}


def table() -> list[str]:
    """The modules of ``fewshot/__init__.py``'s table, top to bottom."""
    doc = ast.get_docstring(ast.parse((PACKAGE / "__init__.py").read_text()))
    return re.findall(r"^``fewshot\.(\w+)``", doc, flags=re.M)


def package_imports(name: str) -> list[tuple[str, int, bool]]:
    """``(module, line, inside a function)`` for every import of a ``fewshot`` module in ``name``."""
    tree = ast.parse((PACKAGE / f"{name}.py").read_text())
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom):
                if child.level == 1:  # from .x import y / from . import x
                    mods = [child.module.split(".")[0]] if child.module else [a.name for a in child.names]
                elif child.level == 0 and (child.module or "").split(".")[0] == "fewshot":
                    parts = child.module.split(".")
                    mods = [parts[1]] if len(parts) > 1 else [a.name for a in child.names]
                else:
                    mods = []
                found.extend((m, child.lineno, inner) for m in mods)
            elif isinstance(child, ast.Import):
                found.extend((a.name.split(".")[1], child.lineno, inner) for a in child.names
                             if a.name.startswith("fewshot."))
            visit(child, inner)

    visit(tree, False)
    return found


MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in {"__init__", "__main__"})


def test_every_module_is_in_the_table() -> None:
    order = table()
    assert len(order) == len(set(order))
    assert set(order) == set(MODULES), (set(MODULES) - set(order), set(order) - set(MODULES))
    assert set(order[-3:]) == GROUND  # the ground floor is at the bottom


@pytest.mark.parametrize("name", MODULES)
def test_imports_only_point_down(name: str) -> None:
    order = table()
    level = {m: i for i, m in enumerate(order)}  # larger index = lower in the table
    bad = [f"{name}.py:{line} imports {mod}" for mod, line, _ in package_imports(name)
           if mod not in level or level[mod] <= level[name]]
    assert not bad, bad
    if name in GROUND:
        below = {m for m, _, _ in package_imports(name)}
        assert below <= GROUND, below


@pytest.mark.parametrize("name", MODULES + ["__main__", "__init__"])
def test_no_package_import_inside_a_function(name: str) -> None:
    hidden = [f"{name}.py:{line} imports {mod} inside a function"
              for mod, line, inner in package_imports(name) if inner]
    assert not hidden, hidden


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                          cwd=ROOT, env={"PATH": "", "FEWSHOT_OFFLINE": "1", "FEWSHOT_FAST": "1",
                                         "PYTHONPATH": str(ROOT), "HOME": str(ROOT / ".no-home")})


def test_ground_floor_imports_nothing_of_the_package() -> None:
    """In a fresh interpreter, with the package's ``__init__`` kept out of the way (it imports the
    run for ``fewshot.setup``), importing each ground-floor module loads no other ``fewshot`` module
    but the ones below it."""
    code = """
import sys, types
pkg = types.ModuleType("fewshot"); pkg.__path__ = [%r]; sys.modules["fewshot"] = pkg
import importlib
loaded = {}
for name in ("config", "checks", "distances", "data"):
    before = {m for m in sys.modules if m.startswith("fewshot.")}
    importlib.import_module("fewshot." + name)
    loaded[name] = sorted({m for m in sys.modules if m.startswith("fewshot.")} - before)
print(loaded)
""" % str(PACKAGE)
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = ast.literal_eval(proc.stdout.strip().splitlines()[-1])
    assert loaded["config"] == ["fewshot.config"]
    assert loaded["checks"] == ["fewshot.checks"]
    assert loaded["distances"] == ["fewshot.distances"]  # checks is already there
    assert loaded["data"] == ["fewshot.data"]  # config and checks were already there: no cycle


def test_data_can_be_imported_before_the_package() -> None:
    proc = _python("import fewshot.data as d\nimport fewshot\nimport fewshot.config as c\n"
                   "assert fewshot.setup and d.load_mnist and c.get_profile\n"
                   "import sys\nprint(sorted(m for m in sys.modules if m.startswith('fewshot')))")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fewshot.data" in proc.stdout


def environment_reads(name: str) -> list[str]:
    """``file:line`` of every read of the environment in ``name``: ``os.environ``, ``os.getenv``,
    ``os.environb`` or ``from os import environ/getenv``."""
    tree = ast.parse((PACKAGE / f"{name}.py").read_text())
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id == "os" and node.attr in {"environ", "environb", "getenv"}):
            found.append(f"{name}.py:{node.lineno} os.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [f"{name}.py:{node.lineno} from os import {a.name}" for a in node.names
                      if a.name in {"environ", "environb", "getenv"}]
    return found


@pytest.mark.parametrize("name", [m for m in MODULES if m != "config"] + ["__main__", "__init__"])
def test_only_config_reads_the_environment(name: str) -> None:
    """Every ``FEWSHOT_*`` variable is read in one place, ``config.settings()``."""
    assert not environment_reads(name), environment_reads(name)


def test_the_environment_check_sees_a_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bad.py").write_text("import os\nfrom os import getenv\nX = os.environ.get('A')\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path)
    assert environment_reads("bad") == ["bad.py:2 from os import getenv", "bad.py:3 os.environ"]
    assert environment_reads.__module__ == __name__

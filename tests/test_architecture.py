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


# ---------------------------------------------------------------------------------------------
# The run is explicit: the entry layer decides profile, seed and data; nothing below fetches them

# Only these decide the run: ``setup`` (run.py) and the command line (__main__.py). The table
# builders that take the Run (``compare.compare(run)``, ``compare.evaluate_method(run, spec)``,
# ``oneshot.oneshot(run)``, ``protocol.verification_results(run)``, ``export.build_demo(run, ...)``,
# ``plan.run_plan(run)``) read it from their ``run`` argument, so they need no exception here.
ENTRY_LAYER = {"run", "__main__"}
RUN_GETTERS = {"get_profile", "current_seed", "resolve_seed", "load_run_data", "load_run_characters"}


def run_getter_calls(name: str) -> list[str]:
    """``file:line name`` of every call of a :data:`RUN_GETTERS` function in ``name``, whether
    called by its name or as an attribute (``config.get_profile()``)."""
    tree = ast.parse((PACKAGE / f"{name}.py").read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(
                func, ast.Attribute) else None
            if called in RUN_GETTERS:
                found.append(f"{name}.py:{node.lineno} {called}()")
    return sorted(found)


@pytest.mark.parametrize("name", [m for m in MODULES + ["__init__", "__main__"]
                                  if m not in ENTRY_LAYER])
def test_no_run_getter_below_the_entry_layer(name: str) -> None:
    """Profile, seed and data arrive as arguments (a Run, a spec, a seed) below ``run`` and
    ``__main__``: no library function looks them up for itself."""
    assert not run_getter_calls(name), run_getter_calls(name)


def test_the_run_getter_check_sees_a_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bad.py").write_text("from .config import get_profile\nimport fewshot.data as d\n"
                                     "def f():\n    return get_profile().epochs, d.load_run_data()\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path)
    assert run_getter_calls("bad") == ["bad.py:4 get_profile()", "bad.py:4 load_run_data()"]


# Module-level containers that are constant tables (never changed after import), each with why.
# Anything else built at import (a list, dict or set, or a call's result) would be run state.
CONSTANT_TABLES = {
    "characters.OMNIGLOT_FOLDERS": "split → Omniglot's folder name",
    "compare.DIGIT_COLUMNS": "a digit table's columns by header (frozen Columns)",
    "config.PROFILES": "the run sizes (frozen Profiles)",
    "config.RENAMED": "old profile names → new",
    "config.VARIABLES": "the environment variables and what they do",
    "data.MNIST_SIZES": "MNIST's split sizes",
    "export.FILES": "the deployed files' names",
    "margins.HEADS": "method → head class",
    "oneshot.CHARACTER_METHODS": "chapter 8's models: method and settings",
    "oneshot.CHARACTER_ALTERNATIVES": "the runs chapter 8's defaults were chosen against",
    "oneshot.SETTING_HEADS": "(N, K) → its short header",
    "oneshot.CHARACTER_COLUMNS": "a character table's columns by header (frozen Columns)",
    "plan.HERMANS": "chapter 5's batch-hard settings",
    "plan.ALL_CHARACTERS": "chapter 8's trainings (frozen Trainings)",
    "plan.CHAPTERS": "what each notebook trains",
    "plots.DIGIT_COLORS": "one colour per digit",
    "plots.PAIR_COLORS": "pair kind → colour",
    "plots.METHOD_STYLES": "line styles per method",
    "plots.METRIC_LABELS": "metric → axis label",
    "printed.DISTORTION": "the printed glyphs' distortion (a frozen dataclass)",
    "protocol.VERIFY_METHODS": "data → the methods chapter 9 measures",
    "protocol.SPLIT_NOTES": "data → what its test and calibration splits hold (table captions)",
    "recipes.PROTONET": "protonet's default training episode",
    "recipes.SPHEREFACE_LAMBDA": "SphereFace's λ schedule constants",
    "spec._USES": "setting → the methods that use it",
    "spec.FIELDS": "TrainSpec's field names (a tuple)",
    "widgets.HAS_STACK": "a feature test of ipywidgets (a bool)",
}


def module_state(name: str) -> list[str]:
    """``module.NAME`` of every module-level assignment in ``name`` of a list, dict or set
    (literal or comprehension) or of a call's result, but ``__all__``."""
    tree = ast.parse((PACKAGE / f"{name}.py").read_text())
    mutable = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp, ast.Call)
    found = []
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, mutable):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for t in ast.walk(target):
                    if isinstance(t, ast.Name) and t.id != "__all__":
                        found.append(f"{name}.{t.id}")
    return found


@pytest.mark.parametrize("name", MODULES + ["__init__", "__main__"])
def test_no_module_level_run_state(name: str) -> None:
    """No module keeps run state in a global (a ledger, a seed, loaded data): that lives in the
    Run, a ModelCache, or a memo keyed by its arguments (``functools.lru_cache``)."""
    state = [s for s in module_state(name) if s not in CONSTANT_TABLES]
    assert not state, f"{state}: module-level state; if it is a constant table, add it to " \
                      "CONSTANT_TABLES with the reason"


def test_the_module_state_check_sees_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bad.py").write_text("LEDGER: list[dict] = []\n_RUN_SEED = [0]\n_SEEN = set()\n"
                                     "__all__ = ['x']\nLIMIT = 3\nNAMES = ('a', 'b')\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path)
    assert module_state("bad") == ["bad.LEDGER", "bad._RUN_SEED", "bad._SEEN"]

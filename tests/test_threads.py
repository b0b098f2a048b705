"""The notebooks' kernels under ``pytest -n 2`` get one thread each, however pytest is called.

Two kernels with two OpenMP threads each on a two-core machine trained every model about 7x
slower than one kernel alone (root ``conftest.py``). The settings live in the root conftest so
that ``pytest -n 2 book/…`` (without ``tests/``) gets them too."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]

PROBE = """import json, os, sys, torch
out = {"omp": os.environ.get("OMP_NUM_THREADS"), "threads": torch.get_num_threads()}
open({path!r}, "w").write(json.dumps(out))"""


def _notebook(path: Path, report: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(PROBE.replace("{path!r}", repr(str(report))))]
    nbformat.write(nb, path)


def _run(folder: Path, *args: str) -> list[dict]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTEST_XDIST_WORKER",
                        "PYTEST_XDIST_TESTRUNUID", "PYTEST_CURRENT_TEST")}
    reports = [folder / f"threads{n}.json" for n in range(2)]
    for n, report in enumerate(reports):
        _notebook(folder / f"probe{n}.ipynb", report)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--nbmake", "-q", *args,
         "probe0.ipynb", "probe1.ipynb"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return [json.loads(r.read_text()) for r in reports]


def test_two_workers_give_each_kernel_one_thread(tmp_path: Path) -> None:
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    for report in _run(tmp_path, "-n", "2", "--dist", "loadgroup"):
        assert report == {"omp": "1", "threads": 1}, report


def test_one_process_keeps_the_machines_threads(tmp_path: Path) -> None:
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    for report in _run(tmp_path, "-p", "no:xdist"):
        assert report["omp"] is None, report

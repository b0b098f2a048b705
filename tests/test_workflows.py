"""Lint the GitHub Actions workflows offline, so a broken workflow fails here rather than on GitHub.

* ``check-jsonschema --builtin-schema vendor.github-workflows``: GitHub's workflow schema (shipped with
  the package, no download);
* ``zizmor --offline`` with ``zizmor.yml``: the security audit (least ``permissions``, no persisted
  credentials, pinned actions, no template injection);
* the book workflow publishes what the README promises: the ``full`` profile on real data, ``_build/html``;
* CI, the tests workflow and the README run the same test command.

Each tool test is skipped, with the reason, when the tool is not installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install {name})")
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_both_workflows_exist() -> None:
    assert {f.name for f in FILES} >= {"tests.yml", "book.yml"}


@pytest.mark.parametrize("workflow", FILES, ids=[f.name for f in FILES])
def test_workflow_matches_github_schema(workflow: Path) -> None:
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(workflow))
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_finds_nothing() -> None:
    result = run(tool("zizmor"), "--offline", "--no-progress", "--config", str(ROOT / "zizmor.yml"),
                 str(WORKFLOWS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_book_workflow_builds_full_profile_and_publishes_the_html() -> None:
    workflow = yaml.safe_load((WORKFLOWS / "book.yml").read_text())
    build = workflow["jobs"]["build"]
    assert build["env"]["FEWSHOT_PROFILE"] == "full"
    assert "FEWSHOT_OFFLINE" not in build["env"] and "FEWSHOT_FAST" not in build["env"]
    steps = build["steps"]
    assert any("jupyter-book build . -W -n --keep-going" in s.get("run", "") for s in steps)
    uploads = [s for s in steps if s.get("uses", "").startswith("actions/upload-pages-artifact@")]
    assert [s["with"]["path"] for s in uploads] == ["_build/html"]
    deploy = workflow["jobs"]["deploy"]
    assert any(s.get("uses", "").startswith("actions/deploy-pages@") for s in deploy["steps"])
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert build["permissions"] == {"contents": "read"}


def test_one_test_command_everywhere() -> None:
    """The README's test command is exactly what ``.ci/run`` and the tests workflow run."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = re.search(r"pip install -r requirements.txt && (pytest[^\n`]*)", readme).group(1)
    assert "-n 2" in command  # the notebooks run two at a time
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip().startswith("pytest")]
    assert ci == [command]
    steps = yaml.safe_load((WORKFLOWS / "tests.yml").read_text())["jobs"]["pytest"]["steps"]
    assert [s["run"].strip() for s in steps if s.get("run", "").strip().startswith("pytest")] == [
        command]

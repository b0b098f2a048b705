"""The book's own rules: outputs stripped, one repository URL, the same setup cell, a complete TOC.

``python tests/test_book.py --sync`` rewrites every notebook's Colab cell from ``_config.yml``.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = sorted(p for p in BOOK.glob("*.ipynb"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
# Code lines in notebooks: at most CODE_LINE characters, which fit the theme's 688-px text column at
# 1,280 px in the code font that _extra/_static/book-layout.css sets (a wide monospace font is about
# 0.62 em a character; a code block has 16 px of padding either side)
CODE_LINE = 78  # STYLE.md: code lines at most 78 characters
TEXT_COLUMN_PX, CODE_PADDING_PX, WIDE_MONOSPACE_EM = 688, 2 * 16, 0.62

SETUP_CELL = '''# Colab: install the book's helper package `fewshot` from the repository
# (does nothing elsewhere).
import sys

if "google.colab" in sys.modules:
    import subprocess

    REPOSITORY = "{url}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    f"git+{{REPOSITORY}}@{branch}"], check=True)'''


def expected_setup_cell() -> str:
    repo = CONFIG["repository"]
    return SETUP_CELL.format(url=repo["url"], branch=repo["branch"])


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def source(cell: dict) -> str:
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def test_there_are_notebooks() -> None:
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path: Path) -> None:
    for cell in load(path)["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{path.name} has outputs: strip them"
            assert cell.get("execution_count") is None, f"{path.name} has execution counts"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_cell_has_its_own_id(path: Path) -> None:
    """nbformat 4.5 cells carry an id (a missing one is a validation warning today, an error in
    future nbformat versions): a cell added by hand must get one."""
    ids = [cell.get("id") for cell in load(path)["cells"]]
    assert None not in ids, f"{path.name}: cells {[i for i, x in enumerate(ids) if x is None]} have no id"
    assert len(set(ids)) == len(ids), f"{path.name}: two cells share an id"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_cell_installs_from_the_configured_repository(path: Path) -> None:
    first = load(path)["cells"][0]
    assert first["cell_type"] == "code"
    assert source(first) == expected_setup_cell(), (
        f"{path.name}: the Colab cell differs from _config.yml's repository; run "
        "`python tests/test_book.py --sync`")
    assert "remove-cell" in first.get("metadata", {}).get("tags", [])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_and_no_hard_coded_sizes(path: Path) -> None:
    code = "\n".join(source(c) for c in load(path)["cells"] if c["cell_type"] == "code")
    assert "fewshot.setup(" in code, f"{path.name} does not call fewshot.setup()"
    assert not re.search(r"\bepochs\s*=\s*\d", code), f"{path.name} hard-codes epochs"
    assert not re.search(r"\b(train_size|test_size|size)\s*=\s*\d{3,}", code), f"{path.name} hard-codes a data size"


def code_cells(path: Path) -> list[str]:
    return [source(c) for c in load(path)["cells"] if c["cell_type"] == "code"]


def markdown(path: Path) -> str:
    return "\n".join(source(c) for c in load(path)["cells"] if c["cell_type"] == "markdown")


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_template(path: Path) -> None:
    """Every chapter: Colab cell, then the same setup call; the same data names; a widget,
    exercises and a summary; code that fits the page column."""
    code = code_cells(path)
    assert len(code) >= 2, f"{path.name} has no setup cell"
    # verbose=False: a page that uses no MNIST prints the data it does use instead
    assert re.search(r"^run = fewshot\.setup\((verbose=False)?\)$", code[1], re.M), (
        f"{path.name}: the first code cell after the Colab cell must call `run = fewshot.setup()`")
    everything = "\n".join(code)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert re.search(rf"\b{name}\b", everything), f"{path.name} does not name its data {name}"
    assert "slider_frames(" in everything, f"{path.name} has no widget (fewshot.widgets.slider_frames)"
    text = markdown(path)
    assert re.search(r"^## Exercises", text, re.M), f"{path.name} has no Exercises section"
    assert re.search(r"^## Summary", text, re.M), f"{path.name} has no Summary section"
    long = [line for src in code for line in src.splitlines() if len(line) > CODE_LINE]
    assert not long, f"{path.name}: code lines over {CODE_LINE} characters: {long[:3]}"


# a string that can only be part of a Markdown table: a header rule ("| --- |", "---: |"), a line
# that starts or ends with a cell border ("| a | b |", f"| {x} |"), or the border alone
# (" | ".join(cells)); fewshot.tables builds every table
TABLE_TEXT = re.compile(r"\|\s*:?-{3,}|-{3,}:?\s*\||^[ \t]*\|[ \t]|[ \t]\|[ \t]*$|\A\s*\|\s*\Z", re.M)


def hand_built_tables(code: str) -> list[str]:
    """The string literals of ``code`` (f-strings' literal parts too) that build a Markdown table."""
    tree = ast.parse(code)
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and TABLE_TEXT.search(node.value)]


def test_hand_built_tables_are_found() -> None:
    """The check below catches the ways chapters used to build tables (and not other strings)."""
    built = [
        'lines = ["| task | accuracy |", "| --- | ---: |"]',
        'lines.append(f"| {k} | {v:.1f}% |")',
        'row = "| " + " | ".join(cells) + " |"',
        'display(Markdown("| a | b |\\n|---|---|\\n| 1 | 2 |"))',
        'spec_rows.append("| " + " | ".join(cells) + " |")',
    ]
    for code in built:
        assert hand_built_tables(code), code
    fine = ['print("a|b", re.split(r"x|y", s))', 'tables.markdown(rows, COLUMNS)',
            'title = "p(class | query) = "',
            'print(f"{name:<23} {n:>7,}")', 'x = a | b']
    for code in fine:
        assert not hand_built_tables(code), code


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_markdown_table_built_in_a_notebook(path: Path) -> None:
    """Tables come from fewshot.tables (typed rows and the columns to show), never from strings
    joined in a notebook cell."""
    found = [(i, text) for i, code in enumerate(code_cells(path))
             for text in hand_built_tables("\n".join(
                 line for line in code.splitlines() if not line.lstrip().startswith(("%", "!"))))]
    assert not found, (f"{path.name}: code cells build a Markdown table by hand (use "
                       f"fewshot.tables): {found[:3]}")


def test_a_code_line_fits_the_column_in_the_code_font() -> None:
    """CODE_LINE characters in the book's code font fit the 688-px text column with the block's padding
    (tests/browser_check.py measures the real pages: no code or output block overflows its box)."""
    css = (ROOT / "_extra" / "_static" / "book-layout.css").read_text()
    rule = re.search(r"\.bd-article pre[^{]*\{[^}]*?font-size:\s*([\d.]+)px", css)
    assert rule, "book-layout.css sets no px font-size for .bd-article pre"
    size = float(rule.group(1))
    assert CODE_LINE * WIDE_MONOSPACE_EM * size + CODE_PADDING_PX <= TEXT_COLUMN_PX, (
        f"{CODE_LINE} characters at {size} px are wider than the {TEXT_COLUMN_PX}-px column")


def test_links_and_mentions_only_to_chapters_in_the_toc() -> None:
    listed = {f.split("/")[-1] for f in toc_files()}
    n_chapters = sum(1 for f in toc_files() if re.match(r"book/\d\d_", f))
    for path in NOTEBOOKS + sorted(BOOK.glob("*.md")):
        text = path.read_text()
        for target in re.findall(r"\{doc\}`(?:[^`<]*<)?([^`>]+)>?`", text):
            assert target.split("/")[-1] in listed, f"{path.name} links to {target!r}, not in _toc.yml"
        for number in re.findall(r"\b[Cc]hapters? (\d+)", text):
            assert 1 <= int(number) <= n_chapters, f"{path.name} mentions chapter {number}"


def test_toc_lists_every_notebook_and_nothing_missing() -> None:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    for f in files:
        assert any((ROOT / f"{f}{ext}").exists() for ext in (".ipynb", ".md")), f"{f} in _toc.yml is missing"
    listed = {f for f in files}
    for nb in NOTEBOOKS:
        assert f"book/{nb.stem}" in listed, f"{nb.name} is not in _toc.yml"


def test_citations_exist_in_the_bibliography() -> None:
    keys = set(re.findall(r"@\w+\{([^,]+),", (BOOK / "references.bib").read_text()))
    for path in NOTEBOOKS + sorted(BOOK.glob("*.md")):
        text = path.read_text()
        for group in re.findall(r"\{cite(?::[pt])?\}`([^`]+)`", text):
            for key in group.split(","):
                assert key.strip() in keys, f"{path.name} cites {key!r}, not in references.bib"


def test_config_stays_offline_and_on_jupyter_book_1() -> None:
    assert "intersphinx_mapping" not in (ROOT / "_config.yml").read_text()
    reqs = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^jupyter-book>=1\.0\.4,<2$", reqs, re.M)
    assert not re.search(r"^torch==|^torchvision==", reqs, re.M), "torch must be a range, not a pin"
    assert CONFIG["repository"]["branch"] == "main"
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"


def sync() -> None:
    """Rewrite each notebook's first cell from ``_config.yml`` (after changing the repository URL)."""
    for path in NOTEBOOKS:
        nb = load(path)
        nb["cells"][0]["source"] = expected_setup_cell()
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        print("synced", path.name)


if __name__ == "__main__" and "--sync" in sys.argv:
    sync()

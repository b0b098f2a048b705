"""Comparative sentences come from the numbers, not from the prose.

A sentence such as "triplet beats softmax" or "the gap is largest at 0.1%" is true for one run size
and false for another. The book prints every such verdict from its numbers (``evaluate.versus``,
``evaluate.ci_order``) or asserts it in a code cell, so a rebuild cannot leave a false sentence
behind. This test fails on a comparative word in the **prose** of the book: the Markdown cells of
``book/*.ipynb`` and the ``book/*.md`` pages. Code cells, and what they print, are not checked.

A cell whose comparative words are not claims about this run's numbers (a general statement about
the method, a quotation of a published result, a definition such as "lower is better") may stay,
with its reason written next to it:

- a notebook's Markdown cell: cell metadata ``"comparative_ok": "<reason>"`` (a non-empty string);
- a ``.md`` page: an entry ``"name.md": "<reason>"`` in :data:`MD_ALLOWED` below.

Words are matched whole and case-insensitively, after removing maths (``$…$``), code spans and
blocks, and MyST roles (``{cite}`key```). "above" and "below" count only as comparisons: "the table
above" and "the slider below" (a place on the page) are not.

Run ``python tests/test_prose.py`` to list every flagged cell with its words.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))
PAGES = sorted(BOOK.glob("*.md"))
ALLOW_KEY = "comparative_ok"

# Words that rank one thing against another. Whole words, any case.
COMPARATIVES = (
    "beat", "beats", "beating", "outperform", "outperforms", "outperformed", "outperforming",
    "better", "worse", "best", "worst",
    "higher", "lower", "highest", "lowest",
    "larger", "smaller", "largest", "smallest",
    "faster", "slower", "fastest", "slowest",
    "stronger", "weaker", "strongest", "weakest",
    "superior", "inferior",
    "above", "below",
)
PHRASES = ("no difference", "no clear difference", "more accurate", "less accurate")

# "above"/"below" as a place on the page: after one of these words ("the table above"), or before a
# colon ("Move the margin below:"). Anything else ("softmax is below pixels") is a comparison.
PLACES = ("table", "tables", "line", "lines", "cell", "cells", "figure", "figures", "plot", "plots",
          "map", "maps", "picture", "pictures", "slider", "sliders", "widget", "code", "output",
          "outputs", "sentence", "sentences", "list", "section", "panel", "panels", "curve",
          "curves", "chart", "numbers", "number", "printed", "shown", "drawn", "listed", "see",
          "as", "from", "here", "results", "verdicts", "verdict", "examples", "exercise",
          "exercises", "links",
          "page", "rows", "row", "columns", "column", "frames", "steps", "split", "calls",
          "call", "commands", "command", "diagram", "bars", "grid", "lists", "text")

# .md pages: file name → why its comparative words may stay.
MD_ALLOWED: dict[str, str] = {}

_WORDS = re.compile(r"\b(" + "|".join(COMPARATIVES) + r")\b", re.IGNORECASE)
_PHRASES = re.compile(r"\b(" + "|".join(p.replace(" ", r"\s+") for p in PHRASES) + r")\b",
                      re.IGNORECASE)
_PLACE = re.compile(r"\b(?:" + "|".join(PLACES) + r")\s+(?:above|below)\b"
                    r"|\b(?:above|below)\s*:", re.IGNORECASE)
_STRIP = [
    re.compile(r"```.*?```", re.DOTALL),        # code blocks and directives
    re.compile(r"\$\$.*?\$\$", re.DOTALL),      # display maths
    re.compile(r"\$[^$\n]+\$"),                 # inline maths
    re.compile(r"\{[a-z]+\}`[^`]*`"),           # MyST roles: {cite}`…`, {doc}`…`
    re.compile(r"`[^`\n]*`"),                   # code spans
    re.compile(r"<!--.*?-->", re.DOTALL),       # comments
    re.compile(r"\(https?://[^)]*\)"),          # link targets
]


def prose(text: str) -> str:
    """The words a reader reads: ``text`` without maths, code, roles, comments and link targets."""
    for pattern in _STRIP:
        text = pattern.sub(" ", text)
    return text


def comparatives(text: str) -> list[str]:
    """The comparative words and phrases of ``text``'s prose, in order (lower case)."""
    words = prose(text)
    words = _PLACE.sub(" ", words)
    found = [(m.start(), m.group(0).lower()) for m in _WORDS.finditer(words)]
    found += [(m.start(), " ".join(m.group(0).lower().split())) for m in _PHRASES.finditer(words)]
    return [w for _, w in sorted(found)]


def _source(cell: dict) -> str:
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def _heading(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("#"):
            return line.strip("# ").strip()
    return text.strip().splitlines()[0][:60] if text.strip() else ""


def notebook_findings(path: Path) -> list[str]:
    """One line per Markdown cell of ``path`` with comparative words and no reason, or with an
    empty reason."""
    problems = []
    for i, cell in enumerate(json.loads(path.read_text())["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        meta = cell.get("metadata", {})
        text = _source(cell)
        if ALLOW_KEY in meta:
            reason = meta[ALLOW_KEY]
            if not isinstance(reason, str) or not reason.strip():
                problems.append(f"{path.name} cell {i} ({_heading(text)!r}): "
                                f"{ALLOW_KEY} needs a reason (a non-empty string), got {reason!r}")
            continue
        words = comparatives(text)
        if words:
            problems.append(f"{path.name} cell {i} ({_heading(text)!r}): {', '.join(words)}")
    return problems


def page_findings(path: Path) -> list[str]:
    """The same for a ``.md`` page, allow-listed as a whole by :data:`MD_ALLOWED`."""
    if path.name in MD_ALLOWED:
        if not MD_ALLOWED[path.name].strip():
            return [f"{path.name}: MD_ALLOWED needs a reason (a non-empty string)"]
        return []
    words = comparatives(path.read_text())
    return [f"{path.name}: {', '.join(words)}"] if words else []


HOW = ("print the verdict from the numbers in a code cell (evaluate.versus, evaluate.ci_order), "
       "or, if the words are not about this run's numbers, give the Markdown cell the metadata "
       f'"{ALLOW_KEY}": "<reason>" (for a .md page: MD_ALLOWED in tests/test_prose.py)')


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_prose_has_no_unchecked_comparatives(path: Path) -> None:
    problems = notebook_findings(path)
    assert not problems, "comparative words in prose:\n" + "\n".join(problems) + "\n" + HOW


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_page_prose_has_no_unchecked_comparatives(path: Path) -> None:
    problems = page_findings(path)
    assert not problems, "comparative words in prose:\n" + "\n".join(problems) + "\n" + HOW


# The checker itself: it must catch what it exists for, and leave alone what it should.
@pytest.mark.parametrize("text", [
    "Triplet beats softmax.", "ArcFace is BETTER here.", "the gap is largest at 0.1%",
    "softmax is below raw pixels", "Semi-hard is clearly lower than batch-all.",
    "There is no difference.", "ArcFace outperforms CosFace", "a more accurate model",
    "It lies above the pixel line.", "Protonet is the weakest method.",
])
def test_catches_comparatives(text: str) -> None:
    assert comparatives(text), text


@pytest.mark.parametrize("text", [
    "The lines above say which way it went: `print(higher)`.",
    "the table above", "Move the slider below:", "as printed below", "$a \\le b$ with `best`",
    "{doc}`05_mining` and {cite}`lin2021best`", "a lowered logit", "betterment",
])
def test_leaves_places_code_and_maths_alone(text: str) -> None:
    assert not comparatives(text), comparatives(text)


def test_an_empty_reason_fails(tmp_path: Path) -> None:
    cells = [{"cell_type": "markdown", "metadata": {ALLOW_KEY: reason}, "source": ["plain text"]}
             for reason in ("", "  ", None)]
    cells.append({"cell_type": "markdown", "metadata": {ALLOW_KEY: "a general statement"},
                  "source": ["X beats Y in general."]})
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": cells}))
    problems = notebook_findings(path)
    assert len(problems) == 3 and all("needs a reason" in p for p in problems), problems


if __name__ == "__main__":
    found = [p for path in NOTEBOOKS for p in notebook_findings(path)]
    found += [p for path in PAGES for p in page_findings(path)]
    print("\n".join(found) or "no unchecked comparatives")
    sys.exit(1 if found else 0)

"""Tables: typed rows in, one Markdown table (for the book) or one plain-text table (for the
command line) out. Every table of the book is built here, from the rows the table builders
(:mod:`fewshot.compare`, :mod:`fewshot.oneshot`, :mod:`fewshot.protocol`) return; no notebook builds
a table by hand.

A number's cell follows one convention: ``mean ± std`` over training seeds when a row has a
``…_std`` partner, else ``mean ± 95% CI`` over episodes when it has a ``…_ci95`` partner, else the
plain value.
"""

from __future__ import annotations

from typing import Sequence

from .evaluate import pm


def cell(row: dict, key: str, percent: bool = True) -> str:
    """One number of a row as text: ``mean ± std`` over seeds when there were several, else
    ``mean ± 95% CI`` for few-shot accuracies, else the plain value."""
    if f"{key}_std" in row:
        return pm(row[key], row[f"{key}_std"], percent, 1 if percent else 3)
    if f"{key}_ci95" in row:
        return pm(row[key], row[f"{key}_ci95"], percent)
    return f"{100 * row[key]:.1f}%" if percent else f"{row[key]:.3f}"




def text_table(headers: Sequence[str], cells: list[list[str]], note: str, left: int = 2) -> str:
    """A plain-text table for the command line: the first ``left`` columns left-aligned, numbers
    right-aligned, a rule under the header, and ``note`` in brackets below."""
    table = [list(headers)] + cells
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) if i < left else c.rjust(w)
                       for i, (c, w) in enumerate(zip(line, widths))) for line in table]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines + [f"({note})"])


def markdown(headers: Sequence[str], cells: list[list[str]], note: str, left: int = 1) -> str:
    """A Markdown table (for ``IPython.display.Markdown``): numbers right-aligned, ``note`` in italics."""
    align = ["---"] * left + ["---:"] * (len(headers) - left)
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines + ["", f"*{note}*"])

"""Tables: typed rows in, one Markdown table (for the book) or one plain-text table (for the
command line) out, and the command line's JSON. Every table of the book is built here: a row is any
object (a result dataclass of :mod:`fewshot.compare`, :mod:`fewshot.oneshot`,
:mod:`fewshot.protocol`, or a :class:`~fewshot.episodes.FewShotResult`), and a :class:`Column`
says what to show of it. No notebook builds a table by hand.

A cell shows its value the one way the book prints it: a :class:`~fewshot.evaluate.Score` (or a
``FewShotResult``) as ``mean ± spread``, text as it is (left-aligned), numbers with the column's
``fmt`` (right-aligned). A column with a short header gives its meaning in ``note``: the notes
become the legend under the table, so a table stays narrow enough for the page (688 px at 1,280 px,
and it scrolls inside its own box on a phone).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .evaluate import Score

__all__ = ["Column", "flat", "legend", "markdown", "text", "text_of", "to_json"]


@dataclass(frozen=True)
class Column:
    """One column of a table.

    Attributes:
        head: the header (short: explain it in ``note``).
        value: the row's attribute of that name, the item at that index (rows that are tuples),
            or a function ``row → value``.
        fmt: a format for plain numbers, e.g. ``"{:.3f}"``, ``"{:.1%}"``, ``"{:+.1f}"``
            (default: ``"{:.3f}"`` for floats, ``str`` for the rest).
        note: what the header means, for the legend under the table.
    """

    head: str
    value: str | int | Callable[[object], object]
    fmt: str | None = None
    note: str = ""

    def get(self, row: object) -> object:
        if callable(self.value):
            return self.value(row)
        if isinstance(self.value, int):
            return row[self.value]
        if not hasattr(row, self.value):
            raise ValueError(f"column {self.head!r}: the row {type(row).__name__} has no "
                             f"attribute {self.value!r}")
        return getattr(row, self.value)


def _is_score(value: object) -> bool:
    return isinstance(value, Score) or (hasattr(value, "mean") and hasattr(value, "ci95"))


def text_of(value: object, fmt: str | None = None, markdown: bool = False) -> str:
    """One cell: a score as ``mean ± spread``, ``None`` as "–", a number with ``fmt``, text as is.
    In Markdown a score's spaces do not break, so ``34.0 ± 0.9%`` stays on one line."""
    if value is None:
        return "–"
    if _is_score(value):
        out = str(Score.of(value))
        return out.replace(" ", "\u00a0") if markdown else out
    if fmt is not None:
        return fmt.format(value)
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _check(rows: Sequence[object], columns: Sequence[Column]) -> None:
    if not columns or not all(isinstance(c, Column) for c in columns):
        raise TypeError(f"columns must be a non-empty sequence of tables.Column, got {columns!r:.80}")
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
        raise TypeError(f"rows must be a list of rows, got {type(rows).__name__}")


def _grid(rows: Sequence[object], columns: Sequence[Column], markdown: bool
          ) -> tuple[list[list[str]], list[bool]]:
    """The cells as text, and for each column whether it is text (left-aligned): some text and no
    number (a missing value, ``None``, shows "–" and does not decide)."""
    values = [[c.get(r) for c in columns] for r in rows]
    left = [any(isinstance(v[i], str) for v in values)
            and all(isinstance(v[i], str) or v[i] is None for v in values) for i in range(len(columns))]
    cells = [[text_of(v, c.fmt, markdown) for v, c in zip(line, columns)] for line in values]
    return cells, left


def legend(columns: Sequence[Column], note: str = "", end: str = "") -> str:
    """``note``, the columns' own notes in order without repeats, and ``end``, joined by "; "."""
    parts = [note] if note else []
    for c in columns:
        if c.note and c.note not in parts:
            parts.append(c.note)
    return "; ".join(parts + ([end] if end else []))


def markdown(rows: Sequence[object], columns: Sequence[Column], note: str = "", end: str = "") -> str:
    """A Markdown table (for ``IPython.display.Markdown``) of ``rows``, one line each, showing
    ``columns``; the legend (:func:`legend`: ``note``, the columns' notes, ``end``) goes under it in
    italics."""
    _check(rows, columns)
    cells, left = _grid(rows, columns, markdown=True)
    align = ["---" if is_text else "---:" for is_text in left]
    lines = ["| " + " | ".join(c.head for c in columns) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(line) + " |" for line in cells]
    caption = legend(columns, note, end)
    return "\n".join(lines + (["", f"*{caption}*"] if caption else []))


def text(rows: Sequence[object], columns: Sequence[Column], note: str = "", end: str = "") -> str:
    """A plain-text table for the command line: text columns left-aligned, numbers right-aligned, a
    rule under the header, and the legend in brackets below."""
    _check(rows, columns)
    cells, left = _grid(rows, columns, markdown=False)
    table = [[c.head for c in columns]] + cells
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) if is_text else c.rjust(w)
                       for c, w, is_text in zip(line, widths, left)) for line in table]
    lines.insert(1, "-" * len(lines[0]))
    caption = legend(columns, note, end)
    return "\n".join(lines + ([f"({caption})"] if caption else []))


# ----- JSON: the command line's, made here only -----

def _key(key: object) -> str:
    return f"{key:g}" if isinstance(key, float) else str(key)


def _plain(value: object) -> object:
    """A JSON value: scores as ``{"mean", "ci95", "std"}`` (the ones measured), dicts with text keys."""
    if _is_score(value):
        score = Score.of(value)
        return {k: v for k, v in (("mean", score.mean), ("ci95", score.ci95), ("std", score.std))
                if v is not None}
    if isinstance(value, dict):
        return {_key(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _put(out: dict, key: str, value: object) -> None:
    if value is None or (isinstance(value, dict) and not value):  # not measured
        return
    if _is_score(value):  # key, key_ci95, key_std
        score = Score.of(value)
        out[key] = score.mean
        for suffix, v in (("ci95", score.ci95), ("std", score.std)):
            if v is not None:
                out[f"{key}_{suffix}"] = v
    elif isinstance(value, dict) and value and all(isinstance(k, tuple) and len(k) == 2 for k in value):
        for (n, k), v in sorted(value.items()):  # {(n_way, k_shot): score}
            _put(out, f"{key}_{n}way_{k}shot", v)
    else:
        out[key] = _plain(value)


def flat(row: object) -> dict:
    """A result dataclass as one flat JSON object: each field under its name (or its metadata's
    ``"key"``), a score as ``name``, ``name_ci95`` and ``name_std``, a few-shot dict
    ``{(n, k): score}`` as ``name_{n}way_{k}shot`` and its partners. Fields whose metadata says
    ``json=False`` (models, tensors), ``None`` values and empty dicts (not measured) are left out."""
    if not dataclasses.is_dataclass(row) or isinstance(row, type):
        raise TypeError(f"expected a result dataclass, got {type(row).__name__}")
    out: dict = {}
    for field in dataclasses.fields(row):
        if field.metadata.get("json", True):
            _put(out, field.metadata.get("key", field.name), getattr(row, field.name))
    return out


def to_json(rows: Sequence[object]) -> str:
    """The command line's ``--json``: a list of :func:`flat` rows, indented."""
    return json.dumps([flat(r) for r in rows], indent=2, ensure_ascii=False)

"""Compare the book's training methods on the same network and data (the comparison chapter's table).

For each method and embedding size, two models are trained at the run's profile, through
:func:`fewshot.recipes.train_method` (so models an earlier chapter trained come from the cache):

* on **all ten digits**: precision@1 and MAP@R of the test digits against the training digits;
* on the **seen digits only** (0–4): 5-way 1-shot and 5-shot accuracy on the *unseen* test digits
  (5–9), by nearest prototype, with 95% confidence intervals over episodes. A model must never have
  seen the classes it is tested on few-shot.

Both are measured by :func:`fewshot.evaluate.evaluate`, with the distance the method is meant for
(cosine for margin heads). With ``Profile.seeds`` > 1, every number is the mean over that many
training seeds and each gets a ``…_std`` partner (the spread between seeds), which the table shows
instead of the episode CI. ``python -m fewshot compare [--json]`` prints the same table.

The character chapters' tables live in :mod:`fewshot.oneshot` (chapter 8) and
:mod:`fewshot.protocol` (chapter 9).
"""

from __future__ import annotations

import statistics
from typing import Sequence

from .checks import check_int
from .episodes import DEFAULT_UNSEEN, split_classes
from .evaluate import evaluate
from .recipes import METHODS, metric_of, train_method
from .run import Run
from .spec import TrainSpec
from .tables import cell, markdown, text_table

DEFAULT_DIMS = (2, 32)
DEFAULT_METHODS = ("softmax", "siamese", "triplet")
COLUMNS = ("method", "miner", "sampling", "metric", "embed_dim", "seeds", "precision_at_1", "map_at_r",
           "fewshot_5way_1shot", "fewshot_5way_1shot_ci95", "fewshot_5way_5shot",
           "fewshot_5way_5shot_ci95", "train_seconds")


def evaluate_method(run: Run, spec: TrainSpec, *, seeds: int | None = None,
                    unseen: Sequence[int] = DEFAULT_UNSEEN, cache: bool = True,
                    progress: bool | None = None) -> dict:
    """Train ``spec`` on the run's digits (all of them, and the seen digits only) and measure it.

    Args:
        run: the run (:func:`fewshot.setup`): its digits, its episodes, its seeds per row.
        spec: what to train, e.g. ``run.spec("triplet", 2)``.
        seeds: how many training seeds (default ``run.profile.seeds``); seeds ``spec.seed,
            spec.seed + 1, …`` are trained and averaged.

    Returns:
        A dict with the keys in :data:`COLUMNS` (``train_seconds``: every training of this row
        together, as recorded when they ran; ``…_std`` keys when ``seeds`` > 1) plus ``"model"``,
        ``"history"`` and ``"seen_model"`` of the first seed.
    """
    if not isinstance(run, Run) or not isinstance(spec, TrainSpec):
        raise TypeError(f"evaluate_method(run, spec): expected a fewshot.Run and a TrainSpec "
                        f"(run.spec(method, dim)), got {type(run).__name__}, {type(spec).__name__}")
    seeds = run.profile.seeds if seeds is None else check_int(seeds, "seeds")
    x, y = run.mnist("train")
    xt, yt = run.mnist("test")
    (sx, sy), _ = split_classes(x, y, unseen)
    _, (ux, uy) = split_classes(xt, yt, unseen)
    metric = metric_of(spec.method)
    n_way = min(5, len(unseen))
    runs, seconds, kept = [], 0.0, {}
    for s in range(spec.seed, spec.seed + seeds):
        one = spec.replace(seed=s)
        model, history = train_method(one, x, y, val=(xt, yt), cache=cache, progress=progress)
        seen_model, seen_history = train_method(one, sx, sy, cache=cache, progress=progress)
        retrieval = evaluate(model, query=(xt, yt), reference=(x, y), metric=metric)
        fewshot = evaluate(seen_model, fewshot_pool=(ux, uy), settings=((n_way, 1), (n_way, 5)),
                           metric=metric, episodes=run.profile.episodes, seed=s)
        runs.append({**retrieval.as_row(), **fewshot.as_row()})
        seconds += history.seconds + seen_history.seconds
        kept = kept or {"model": model, "history": history, "seen_model": seen_model}
    row = {"method": spec.method, "miner": spec.miner or "–", "sampling": spec.sampler,
           "metric": metric, "embed_dim": spec.embed_dim, "seeds": seeds,
           "train_seconds": seconds}
    for key in [k for k in runs[0] if k != "metric"]:
        values = [r[key] for r in runs]
        row[key] = statistics.fmean(values)
        if seeds > 1 and not key.endswith("_ci95"):
            row[f"{key}_std"] = statistics.stdev(values)
    return {**row, **kept}


def compare(run: Run, methods: Sequence[str] = DEFAULT_METHODS, dims: Sequence[int] = DEFAULT_DIMS,
            *, seeds: int | None = None, cache: bool = True, progress: bool | None = None,
            keep_models: bool = False) -> list[dict]:
    """:func:`evaluate_method` of ``run.spec(method, dim)`` for every method and dimension: one
    row each, with the keys in :data:`COLUMNS` (and ``…_std`` keys with several seeds), plus
    ``"model"`` if ``keep_models``. (The command line's ``--epochs`` changes the run's profile:
    :meth:`~fewshot.run.Run.with_epochs`.)"""
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown methods {bad}: expected some of {METHODS}")
    rows = []
    for dim in dims:
        for method in methods:
            row = evaluate_method(run, run.spec(method, dim), seeds=seeds, cache=cache,
                                  progress=progress)
            keep = set(COLUMNS) | {k for k in row if k.endswith("_std")} | ({"model"} if keep_models else set())
            rows.append({k: v for k, v in row.items() if k in keep})
    return rows


HEADERS = ("method", "miner", "dim", "P@1", "MAP@R", "5w1s", "5w5s", "train s")


def _cells(row: dict) -> list[str]:
    """One row of the table as text cells, in the order of :data:`HEADERS`."""
    return [row["method"], row["miner"], str(row["embed_dim"]), cell(row, "precision_at_1", False),
            cell(row, "map_at_r", False), cell(row, "fewshot_5way_1shot"),
            cell(row, "fewshot_5way_5shot"), f"{row['train_seconds']:.0f}"]


def caption(rows: list[dict]) -> str:
    """What the ± means in a table of these rows."""
    seeds = max((r.get("seeds", 1) for r in rows), default=1)
    if seeds > 1:
        return f"mean ± standard deviation over {seeds} training seeds"
    return "few-shot: mean ± 95% CI over episodes, one training seed"


def format_table(rows: list[dict]) -> str:
    """A plain-text table of :func:`compare`'s rows."""
    return text_table(HEADERS, [_cells(r) for r in rows], caption(rows))


# the columns a Markdown table may show, with their short headers (short: the table fits the page)
MARKDOWN_HEADS = {"method": "method", "miner": "miner", "embed_dim": "dim", "precision_at_1": "test P@1",
                  "map_at_r": "MAP@R", "fewshot_5way_1shot": "1-shot", "fewshot_5way_5shot": "5-shot",
                  "train_seconds": "train s", "sampling": "batches", "margin": "margin"}
DEFAULT_COLUMNS = ("method", "miner", "embed_dim", "precision_at_1", "map_at_r", "fewshot_5way_1shot",
                   "fewshot_5way_5shot", "train_seconds")
_TEXT = ("method", "miner", "embed_dim", "sampling", "margin")


def _markdown_cell(row: dict, key: str) -> str:
    if key in _TEXT:
        return str(row[key])
    if key == "train_seconds":
        return f"{row[key]:.0f}"
    # non-breaking spaces keep "34.0 ± 0.9%" on one line in a narrow column
    return cell(row, key, key.startswith("fewshot")).replace(" ", "\u00a0")


def markdown_table(rows: list[dict], columns: Sequence[str] = DEFAULT_COLUMNS, note: str = "") -> str:
    """:func:`compare`'s rows as a Markdown table (for ``IPython.display.Markdown``).

    Args:
        rows: rows of :func:`compare` or :func:`evaluate_method` (a row's ``"method"`` is its label:
            give a row another label with ``{**row, "method": "my label"}``).
        columns: the keys to show, in order, from :data:`MARKDOWN_HEADS` (``sampling`` and
            ``margin`` only for rows that carry them).
        note: a sentence put first in the note under the table; the note then says what the
            shown columns mean and what ± means.
    """
    bad = [c for c in columns if c not in MARKDOWN_HEADS]
    if bad or not columns:
        raise ValueError(f"columns={list(columns)!r}: expected some of {list(MARKDOWN_HEADS)}")
    cells = [[_markdown_cell(r, c) for c in columns] for r in rows]
    parts = [note] if note else []
    if "precision_at_1" in columns:
        parts.append("test P@1: the test digits searched among the training digits")
    if {"fewshot_5way_1shot", "fewshot_5way_5shot"} & set(columns):
        parts.append("1-shot, 5-shot: 5-way on the unseen digits")
    parts.append(caption(rows))
    left = next((i for i, c in enumerate(columns) if c not in _TEXT), len(columns))
    return markdown([MARKDOWN_HEADS[c] for c in columns], cells, "; ".join(parts), left=left)

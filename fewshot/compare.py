"""Compare the book's training methods on the same network and data (the comparison chapter's table).

For each method and embedding size, two models are trained at the run's profile, through
:func:`fewshot.recipes.train_method` (so models an earlier chapter trained come from the cache):

* on **all ten digits**: precision@1 and MAP@R of the test digits against the training digits;
* on the **seen digits only** (0–4): 5-way 1-shot and 5-shot accuracy on the *unseen* test digits
  (5–9), by nearest prototype, with 95% confidence intervals over episodes. A model must never have
  seen the classes it is tested on few-shot.

Both are measured by :func:`fewshot.evaluate.evaluate`, with the distance the method is meant for
(cosine for margin heads). Each method and size gives one :class:`MethodResult`; with
``Profile.seeds`` > 1, every number is the mean over that many training seeds with their standard
deviation (the spread between seeds), which the table shows instead of the episode CI.
:func:`markdown_table` shows the columns asked for (:data:`DIGIT_COLUMNS`);
``python -m fewshot compare [--json]`` prints the same table.

The character chapters' tables live in :mod:`fewshot.oneshot` (chapter 8) and
:mod:`fewshot.protocol` (chapter 9).
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass, field
from typing import Sequence

from .checks import check_int
from .episodes import DEFAULT_UNSEEN, split_classes
from .evaluate import Evaluation, Score, evaluate
from .recipes import DEFAULT_MARGIN, METHODS, metric_of, train_method
from .run import Run
from .spec import TrainSpec
from .tables import Column, markdown, text

DEFAULT_DIMS = (2, 32)
DEFAULT_METHODS = ("softmax", "siamese", "triplet")
# the keys of ``python -m fewshot compare --json`` (plus ``…_std`` partners with several seeds)
COLUMNS = ("method", "miner", "sampling", "metric", "embed_dim", "seeds", "precision_at_1", "map_at_r",
           "fewshot_5way_1shot", "fewshot_5way_1shot_ci95", "fewshot_5way_5shot",
           "fewshot_5way_5shot_ci95", "train_seconds")


@dataclass
class MethodResult:
    """One method at one embedding size, measured (one row of the comparison table).

    Attributes:
        method, miner, sampling, metric, embed_dim: what was trained and how it is measured.
        seeds: how many training seeds the numbers average.
        precision_at_1, map_at_r: retrieval of the test digits among the training digits.
        fewshot: ``{(n_way, k_shot): Score}`` on the unseen digits (:meth:`shot`).
        train_seconds: every training of this row together, as recorded when they ran.
        margin: the margin asked for (``None``: the method's default).
        model, history, seen_model: the first seed's networks (all digits, seen digits only).
    """

    method: str
    miner: str
    sampling: str
    metric: str
    embed_dim: int
    seeds: int
    precision_at_1: Score
    map_at_r: Score
    fewshot: dict[tuple[int, int], Score]
    train_seconds: float
    margin: float | str | None = None
    model: object = field(default=None, repr=False, compare=False, metadata={"json": False})
    history: object = field(default=None, repr=False, compare=False, metadata={"json": False})
    seen_model: object = field(default=None, repr=False, compare=False, metadata={"json": False})

    def shot(self, n_way: int = 5, k_shot: int = 1) -> Score:
        """``n_way``-way ``k_shot``-shot accuracy on the unseen digits (mean, 95% CI, seeds' std;
        :attr:`~fewshot.evaluate.Score.interval` is the CI it is shown and compared with)."""
        if (n_way, k_shot) not in self.fewshot:
            raise KeyError(f"{n_way}-way {k_shot}-shot was not measured; measured: {sorted(self.fewshot)}")
        return self.fewshot[(n_way, k_shot)]

    def named(self, label: str) -> MethodResult:
        """The same result under another label (the table's first column)."""
        return dataclasses.replace(self, method=label)


def _average(values: list[float], cis: list[float | None], percent: bool) -> Score:
    """The mean over seeds, the mean CI half-width, and the seeds' standard deviation (≥ 2 seeds):
    a :class:`~fewshot.evaluate.Score` whose interval is the CI over seeds (or the episodes')."""
    ci = statistics.fmean(cis) if all(c is not None for c in cis) else None
    std = statistics.stdev(values) if len(values) > 1 else None
    return Score(statistics.fmean(values), ci, std, percent, seeds=len(values))


def _result(runs: list[tuple[Evaluation, Evaluation]], **about) -> MethodResult:
    """One :class:`MethodResult` from each seed's (retrieval, few-shot) evaluations."""
    retrieval = {name: _average([getattr(r, name) for r, _ in runs], [None] * len(runs), False)
                 for name in ("precision_at_1", "map_at_r")}
    fewshot = {key: _average([f.shot(*key).mean for _, f in runs], [f.shot(*key).ci95 for _, f in runs],
                             True) for key in sorted(runs[0][1].fewshot)}
    return MethodResult(**about, seeds=len(runs), **retrieval, fewshot=fewshot)


def evaluate_method(run: Run, spec: TrainSpec, *, seeds: int | None = None,
                    unseen: Sequence[int] = DEFAULT_UNSEEN, cache: bool = True,
                    progress: bool | None = None) -> MethodResult:
    """Train ``spec`` on the run's digits (all of them, and the seen digits only) and measure it.

    Args:
        run: the run (:func:`fewshot.setup`): its digits, its episodes, its seeds per row.
        spec: what to train, e.g. ``run.spec("triplet", 2)``.
        seeds: how many training seeds (default ``run.profile.seeds``); seeds ``spec.seed,
            spec.seed + 1, …`` are trained and averaged.

    Returns:
        A :class:`MethodResult`, with the first seed's models.
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
        runs.append((retrieval, fewshot))
        seconds += history.seconds + seen_history.seconds
        kept = kept or {"model": model, "history": history, "seen_model": seen_model}
    return _result(runs, method=spec.method, miner=spec.miner or "–", sampling=spec.sampler,
                   metric=metric, embed_dim=spec.embed_dim, train_seconds=seconds,
                   margin=spec.margin, **kept)


def compare(run: Run, methods: Sequence[str] = DEFAULT_METHODS, dims: Sequence[int] = DEFAULT_DIMS,
            *, seeds: int | None = None, cache: bool = True, progress: bool | None = None,
            keep_models: bool = False) -> list[MethodResult]:
    """:func:`evaluate_method` of ``run.spec(method, dim)`` for every method and dimension: one
    :class:`MethodResult` each, with its models only if ``keep_models``. (The command line's
    ``--epochs`` changes the run's profile: :meth:`~fewshot.run.Run.with_epochs`.)"""
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown methods {bad}: expected some of {METHODS}")
    rows = []
    for dim in dims:
        for method in methods:
            row = evaluate_method(run, run.spec(method, dim), seeds=seeds, cache=cache,
                                  progress=progress)
            rows.append(row if keep_models else dataclasses.replace(row, model=None, history=None,
                                                                    seen_model=None))
    return rows


# one seed: what the table leaves out of the retrieval columns (see :func:`caption`)
RETRIEVAL_ONE_SEED = ("P@1's binomial 95% interval not shown (the book's comparisons use it); "
                      "MAP@R: no interval")


def caption(rows: Sequence[MethodResult], fewshot: bool = True, pixels: bool = False,
            retrieval: bool = True) -> str:
    """What the ± means in a table of these rows (``fewshot``: the table shows few-shot columns;
    ``pixels``: it also has a raw-pixel row, which is not trained, so its ± is over episodes;
    ``retrieval``: it shows test P@1 and MAP@R).

    With one seed the table shows test P@1 and MAP@R without ±. Test P@1 still has an interval,
    the binomial one over the test digits (:func:`~fewshot.evaluate.with_binomial`), which the
    book's comparisons use; MAP@R has an interval only over several seeds."""
    seeds = max((r.seeds for r in rows), default=1)
    if seeds > 1:
        return (f"mean ± 95% CI over {seeds} training seeds"
                + ("; raw pixels (not trained): over episodes" if pixels else ""))
    retrieval_note = (RETRIEVAL_ONE_SEED,) if retrieval else ()
    if not fewshot:
        return ": ".join(("one training seed", *retrieval_note))
    return "; ".join(("few-shot: mean ± 95% CI over episodes, one training seed (another seed can "
                      "move a trained row by more than its ±)", *retrieval_note))


# wall-clock, so it measures the machine's load as much as the method's cost
TRAIN_SECONDS_NOTE = ("train s: wall-clock seconds to train the row's models (all seeds, the all-digit and "
                      "the seen-digit net) when first trained, on a machine that may have been busy: "
                      "not a cost comparison")
# the columns a digit table may show, by name; short headers (the table fits the page), their
# meaning in the legend under the table
DIGIT_COLUMNS = {column.head: column for column in (
    Column("method", "method"),
    Column("miner", "miner"),
    Column("batches", "sampling"),
    Column("margin", lambda r: f"{DEFAULT_MARGIN if r.margin is None else r.margin:g}"
           if not isinstance(r.margin, str) else r.margin),
    Column("dim", "embed_dim", note="dim: embedding size"),
    Column("test P@1", "precision_at_1", note="test P@1: the test digits searched among the training digits"),
    Column("MAP@R", "map_at_r"),
    Column("1-shot", lambda r: r.shot(5, 1), note="1-shot, 5-shot: 5-way on the unseen digits"),
    Column("5-shot", lambda r: r.shot(5, 5), note="1-shot, 5-shot: 5-way on the unseen digits"),
    Column("train s", "train_seconds", "{:.0f}", note=TRAIN_SECONDS_NOTE),
)}
# no "train s" by default: wall-clock seconds on a shared machine read as a cost of the method, and
# with three seeds' intervals the table would not fit the column (a chapter may still ask for it)
DEFAULT_COLUMNS = ("method", "miner", "dim", "test P@1", "MAP@R", "1-shot", "5-shot")
# the command line's plain-text table: shorter still
TEXT_COLUMNS = (Column("method", "method"), Column("miner", "miner"), Column("dim", "embed_dim"),
                Column("P@1", "precision_at_1"), Column("MAP@R", "map_at_r"),
                Column("5w1s", lambda r: r.shot(5, 1)), Column("5w5s", lambda r: r.shot(5, 5)),
                Column("train s", "train_seconds", "{:.0f}"))


def format_table(rows: Sequence[MethodResult]) -> str:
    """A plain-text table of :func:`compare`'s rows."""
    return text(rows, TEXT_COLUMNS, end=caption(rows))


def markdown_table(rows: Sequence[MethodResult], columns: Sequence[str] = DEFAULT_COLUMNS,
                   note: str = "") -> str:
    """:func:`compare`'s rows as a Markdown table (for ``IPython.display.Markdown``).

    Args:
        rows: results of :func:`compare` or :func:`evaluate_method` (a row's ``method`` is its
            label: give it another with :meth:`MethodResult.named`).
        columns: the headers of the columns to show, in order, from :data:`DIGIT_COLUMNS`.
        note: a sentence put first in the legend under the table; the legend then says what the
            shown columns mean and what ± means.
    """
    bad = [c for c in columns if c not in DIGIT_COLUMNS]
    if bad or not columns:
        raise ValueError(f"columns={list(columns)!r}: expected some of {list(DIGIT_COLUMNS)}")
    shown = [DIGIT_COLUMNS[c] for c in columns]
    return markdown(rows, shown, note, end=caption(rows, fewshot=bool({"1-shot", "5-shot"} & set(columns)),
                                                   retrieval=bool({"test P@1", "MAP@R"} & set(columns))))

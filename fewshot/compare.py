"""Compare the book's training methods on the same network and data (chapter 5's table).

For each method and embedding size, two models are trained at the current profile:

* on **all ten digits**: precision@1 and MAP@R of the test digits against the training digits;
* on the **seen digits only** (0–4): 5-way 1-shot and 5-shot accuracy on the *unseen* test digits
  (5–9), by nearest prototype, with 95% confidence intervals. A model must never have seen the
  classes it is tested on few-shot.

``python -m fewshot compare [--json]`` prints the same table this module returns.
"""

from __future__ import annotations

from typing import Sequence


from .config import DEFAULT_SEED, get_profile
from .data import load_run_data
from .episodes import DEFAULT_UNSEEN, evaluate_episodes, split_classes
from .metrics import retrieval_metrics
from .train import METHODS, embed, train_method

DEFAULT_DIMS = (2, 32)
DEFAULT_METHODS = ("softmax", "siamese", "triplet")
COLUMNS = ("method", "sampling", "embed_dim", "precision_at_1", "map_at_r", "fewshot_5way_1shot",
           "fewshot_5way_1shot_ci95", "fewshot_5way_5shot", "fewshot_5way_5shot_ci95", "train_seconds")


def evaluate_method(method: str, embed_dim: int, *, sampling: str = "batch", seed: int = DEFAULT_SEED,
                    epochs: int | None = None,
                    unseen: Sequence[int] = DEFAULT_UNSEEN, cache: bool = True,
                    progress: bool = True) -> dict:
    """Train ``method`` at ``embed_dim`` (all digits, and seen digits only) and measure it.

    ``sampling`` is passed to :func:`~fewshot.train.train_method` (``"batch"`` or ``"random"``).

    Returns:
        A dict with the keys in :data:`COLUMNS` (``train_seconds``: both trainings together, as
        recorded when they ran) plus ``"model"`` (the all-digit model), ``"history"`` (its
        training history) and ``"seen_model"`` (the model trained on the seen digits only).
    """
    profile = get_profile()
    x, y = load_run_data("train")
    xt, yt = load_run_data("test")
    model, history = train_method(method, x, y, embed_dim=embed_dim, sampling=sampling, epochs=epochs,
                                  val=(xt, yt), seed=seed, cache=cache, progress=progress)
    scores = retrieval_metrics(embed(model, xt), yt, embed(model, x), y)
    (sx, sy), _ = split_classes(x, y, unseen)
    _, (ux, uy) = split_classes(xt, yt, unseen)
    seen_model, seen_history = train_method(method, sx, sy, embed_dim=embed_dim, sampling=sampling,
                                            epochs=epochs, seed=seed, cache=cache, progress=progress)
    unseen_emb = embed(seen_model, ux)
    shots = {k: evaluate_episodes(unseen_emb, ux, uy, n_way=min(5, len(unseen)), k_shot=k,
                                  episodes=profile.episodes, seed=seed) for k in (1, 5)}
    return {"method": method, "sampling": sampling, "embed_dim": embed_dim,
            "precision_at_1": scores["precision_at_1"], "map_at_r": scores["map_at_r"],
            "fewshot_5way_1shot": shots[1].mean, "fewshot_5way_1shot_ci95": shots[1].ci95,
            "fewshot_5way_5shot": shots[5].mean, "fewshot_5way_5shot_ci95": shots[5].ci95,
            "train_seconds": history.seconds + seen_history.seconds,
            "model": model, "history": history, "seen_model": seen_model}


def compare(methods: Sequence[str] = DEFAULT_METHODS, dims: Sequence[int] = DEFAULT_DIMS, *,
            seed: int = DEFAULT_SEED, epochs: int | None = None, cache: bool = True,
            progress: bool = True, keep_models: bool = False) -> list[dict]:
    """:func:`evaluate_method` for every method and dimension: one row each, with the keys in
    :data:`COLUMNS`, plus ``"model"`` (the all-digit model) if ``keep_models``."""
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown methods {bad}: expected some of {METHODS}")
    rows = []
    for dim in dims:
        for method in methods:
            row = evaluate_method(method, dim, seed=seed, epochs=epochs, cache=cache, progress=progress)
            rows.append({k: row[k] for k in COLUMNS + (("model",) if keep_models else ())})
    return rows


HEADERS = ("method", "sampling", "dim", "P@1", "MAP@R", "5w1s", "5w5s", "train s")


def _cells(row: dict) -> list[str]:
    """One row of the table as text cells, in the order of :data:`HEADERS`."""
    def shot(k: int) -> str:
        return f"{100 * row[f'fewshot_5way_{k}shot']:.1f} ± {100 * row[f'fewshot_5way_{k}shot_ci95']:.1f}%"

    sampling = "–" if row["method"] == "softmax" else row["sampling"]  # softmax draws no pairs
    return [row["method"], sampling, str(row["embed_dim"]), f"{row['precision_at_1']:.3f}",
            f"{row['map_at_r']:.3f}", shot(1), shot(5), f"{row['train_seconds']:.0f}"]


def format_table(rows: list[dict]) -> str:
    """A plain-text table of :func:`compare`'s rows (text columns left, numbers right)."""
    table = [list(HEADERS)] + [_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
             for line in table]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def markdown_table(rows: list[dict]) -> str:
    """:func:`compare`'s rows as a Markdown table (for ``IPython.display.Markdown``)."""
    long = {"P@1": "precision@1", "5w1s": "5-way 1-shot", "5w5s": "5-way 5-shot"}
    lines = ["| " + " | ".join(long.get(h, h) for h in HEADERS) + " |",
             "| --- | --- | " + " | ".join(["---:"] * (len(HEADERS) - 2)) + " |"]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines)

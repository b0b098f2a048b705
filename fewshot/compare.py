"""Compare the book's training methods on the same network and data (the comparison chapter's table).

For each method and embedding size, two models are trained at the current profile, through
:func:`fewshot.recipes.train_method` (so models an earlier chapter trained come from the cache):

* on **all ten digits**: precision@1 and MAP@R of the test digits against the training digits;
* on the **seen digits only** (0–4): 5-way 1-shot and 5-shot accuracy on the *unseen* test digits
  (5–9), by nearest prototype, with 95% confidence intervals over episodes. A model must never have
  seen the classes it is tested on few-shot.

Both are measured by :func:`fewshot.evaluate.evaluate`, with the distance the method is meant for
(cosine for margin heads). With ``Profile.seeds`` > 1, every number is the mean over that many
training seeds and each gets a ``…_std`` partner (the spread between seeds), which the table shows
instead of the episode CI. ``python -m fewshot compare [--json]`` prints the same table.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Sequence

import torch

from .characters import characters_kind, load_run_characters
from .checks import check_choice, check_int
from .config import get_profile, resolve_seed
from .data import load_run_data
from .distances import pairwise
from .episodes import DEFAULT_UNSEEN, split_classes
from .evaluate import evaluate, pm
from .models import embed
from .recipes import METHODS, default_miner, metric_of, train_method
from .verify import (FAR_TARGETS, OpenSetRates, VerificationRates, open_set_rates, threshold_at_far,
                     verification_rates)

DEFAULT_DIMS = (2, 32)
DEFAULT_METHODS = ("softmax", "siamese", "triplet")
COLUMNS = ("method", "miner", "sampling", "metric", "embed_dim", "seeds", "precision_at_1", "map_at_r",
           "fewshot_5way_1shot", "fewshot_5way_1shot_ci95", "fewshot_5way_5shot",
           "fewshot_5way_5shot_ci95", "train_seconds")


def evaluate_method(method: str, embed_dim: int, *, miner: str | None = None, sampler: str = "random",
                    margin: float | str | None = None, options: dict | None = None,
                    seed: int | None = None, seeds: int | None = None, epochs: int | None = None,
                    unseen: Sequence[int] = DEFAULT_UNSEEN, cache: bool = True,
                    progress: bool | None = None) -> dict:
    """Train ``method`` at ``embed_dim`` (all digits, and seen digits only) and measure it.

    Args:
        miner, sampler, margin, options: passed to :func:`~fewshot.recipes.train_method`.
        seed: the first training seed (default: the run's). seeds: how many (default
            ``Profile.seeds``); seeds ``seed, seed+1, …`` are trained and averaged.

    Returns:
        A dict with the keys in :data:`COLUMNS` (``train_seconds``: every training of this row
        together, as recorded when they ran; ``…_std`` keys when ``seeds`` > 1) plus ``"model"``,
        ``"history"`` and ``"seen_model"`` of the first seed.
    """
    seed = resolve_seed(seed)
    seeds = get_profile().seeds if seeds is None else check_int(seeds, "seeds")
    x, y = load_run_data("train")
    xt, yt = load_run_data("test")
    (sx, sy), _ = split_classes(x, y, unseen)
    _, (ux, uy) = split_classes(xt, yt, unseen)
    metric = metric_of(method)
    kw = dict(embed_dim=embed_dim, miner=miner, sampler=sampler, margin=margin, options=options,
              epochs=epochs, cache_models=cache, progress=progress)
    runs, seconds, kept = [], 0.0, {}
    for s in range(seed, seed + seeds):
        model, history = train_method(method, x, y, val=(xt, yt), seed=s, **kw)
        seen_model, seen_history = train_method(method, sx, sy, seed=s, **kw)
        retrieval = evaluate(model, query=(xt, yt), reference=(x, y), metric=metric, seed=s)
        fewshot = evaluate(seen_model, fewshot_pool=(ux, uy), settings=((min(5, len(unseen)), 1),
                           (min(5, len(unseen)), 5)), metric=metric, seed=s)
        runs.append({**retrieval.as_row(), **fewshot.as_row()})
        seconds += history.seconds + seen_history.seconds
        kept = kept or {"model": model, "history": history, "seen_model": seen_model}
    row = {"method": method, "miner": miner or default_miner(method) or "–", "sampling": sampler,
           "metric": metric, "embed_dim": embed_dim, "seeds": seeds, "train_seconds": seconds}
    for key in [k for k in runs[0] if k != "metric"]:
        values = [r[key] for r in runs]
        row[key] = statistics.fmean(values)
        if seeds > 1 and not key.endswith("_ci95"):
            row[f"{key}_std"] = statistics.stdev(values)
    return {**row, **kept}


def compare(methods: Sequence[str] = DEFAULT_METHODS, dims: Sequence[int] = DEFAULT_DIMS, *,
            seed: int | None = None, seeds: int | None = None, epochs: int | None = None,
            cache: bool = True, progress: bool | None = None, keep_models: bool = False) -> list[dict]:
    """:func:`evaluate_method` for every method and dimension: one row each, with the keys in
    :data:`COLUMNS` (and ``…_std`` keys with several seeds), plus ``"model"`` if ``keep_models``."""
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown methods {bad}: expected some of {METHODS}")
    rows = []
    for dim in dims:
        for method in methods:
            row = evaluate_method(method, dim, seed=seed, seeds=seeds, epochs=epochs, cache=cache,
                                  progress=progress)
            keep = set(COLUMNS) | {k for k in row if k.endswith("_std")} | ({"model"} if keep_models else set())
            rows.append({k: v for k, v in row.items() if k in keep})
    return rows


HEADERS = ("method", "miner", "dim", "P@1", "MAP@R", "5w1s", "5w5s", "train s")


def cell(row: dict, key: str, percent: bool = True) -> str:
    """One number of a row as text: ``mean ± std`` over seeds when there were several, else
    ``mean ± 95% CI`` for few-shot accuracies, else the plain value."""
    if f"{key}_std" in row:
        return pm(row[key], row[f"{key}_std"], percent, 1 if percent else 3)
    if f"{key}_ci95" in row:
        return pm(row[key], row[f"{key}_ci95"], percent)
    return f"{100 * row[key]:.1f}%" if percent else f"{row[key]:.3f}"


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


def format_table(rows: list[dict]) -> str:
    """A plain-text table of :func:`compare`'s rows."""
    return text_table(HEADERS, [_cells(r) for r in rows], caption(rows))


def markdown_table(rows: list[dict]) -> str:
    """:func:`compare`'s rows as a Markdown table (for ``IPython.display.Markdown``)."""
    short = {"5w1s": "1-shot", "5w5s": "5-shot"}  # short headers: the table fits the page
    # non-breaking spaces keep "34.0 ± 0.9%" on one line in a narrow column
    cells = [[c.replace(" ", "\u00a0") for c in _cells(r)] for r in rows]
    return markdown([short.get(h, h) for h in HEADERS], cells,
                    f"P@1: precision@1; 1-shot, 5-shot: 5-way on the unseen digits; {caption(rows)}",
                    left=2)


# ------------------------------------------------------------------------------------------------
# Many identities: the character chapters (one-shot recognition, and enrol/verify) share these
# models through the cache, so each is trained once per run.

CHARACTER_METHODS: dict[str, dict] = {  # label → train_method arguments, 32-D
    # every pair of P×K batches, on L2-normalised embeddings, averaged over the pairs that still
    # have a loss. Chosen on the validation characters (CI size, printed fallback, 20-way 1-shot,
    # each with its better distance): 88.9% ± 0.4, against 87.5% with the plain mean, 81.1% with
    # the active mean on raw embeddings, and 78.4% for hardest-negative pairs from random batches
    # (the book's earlier contrastive model)
    "contrastive": {"method": "siamese", "miner": "all", "sampler": "pk",
                    "options": {"normalize": True, "reduction": "mean_active"}},
    # chapter 5's best at 32-D: batch-hard in P×K batches, soft margin on plain distances (the hinge
    # version collapsed here, as chapter 5 shows on digits); with the soft margin every triplet is
    # active, so the two averages are the same
    "triplet": {"method": "triplet", "miner": "batch_hard", "sampler": "pk", "margin": "soft",
                "options": {"squared": False}},
    # temperature 0.2 against 0.1 on the validation characters: 88.6% against 88.4% (± 0.4)
    "supcon": {"method": "supcon", "sampler": "pk", "options": {"temperature": 0.2}},
    "arcface": {"method": "arcface"},
    "protonet": {"method": "protonet"},
}
# the runs the defaults above were chosen against, measured side by side in chapter 8
CHARACTER_ALTERNATIVES: dict[str, dict] = {
    "contrastive, hardest negatives": {"method": "siamese", "miner": "hardest_negative"},
    "contrastive, plain mean": {"method": "siamese", "miner": "all", "sampler": "pk",
                                "options": {"normalize": True}},
}
CHARACTER_DIM = 32


def _character_spec(name: str) -> dict:
    specs = {**CHARACTER_METHODS, **CHARACTER_ALTERNATIVES}
    if name not in specs:
        raise ValueError(f"name={name!r}: expected one of {tuple(specs)}")
    return specs[name]


def train_on_characters(name: str, *, seed: int | None = None, progress: bool | None = None,
                        epochs: int | None = None):
    """Train (or load from the cache) the character model ``name`` of :data:`CHARACTER_METHODS`
    (or :data:`CHARACTER_ALTERNATIVES`) on the run's background characters; returns ``(model,
    history)``. ``epochs`` overrides the profile's (the command line's ``--epochs``)."""
    spec = _character_spec(name)
    x, y = load_run_characters("background")
    return train_method(images=x, labels=y, embed_dim=CHARACTER_DIM, seed=seed, progress=progress,
                        epochs=epochs, **spec)


def evaluation_halves(labels: torch.Tensor, seed: int | None = None
                      ) -> tuple[list[int], list[int]]:
    """The evaluation identities shuffled and halved: ``(validation, test)``. The same halves as
    :func:`verification_splits`' calibration and test identities, so one half chooses (metrics,
    defaults, thresholds) and the other is only ever measured, in chapters 8 and 9 alike."""
    g = torch.Generator().manual_seed(resolve_seed(seed))
    ids = labels.unique()
    ids = ids[torch.randperm(len(ids), generator=g)]
    return ids[:len(ids) // 2].tolist(), ids[len(ids) // 2:].tolist()


def character_pools(seed: int | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Every evaluation character (none trained on), halved by identity (:func:`evaluation_halves`):
    ``{"validation": (images, labels), "test": (images, labels)}``."""
    x, y = load_run_characters("evaluation")
    pools = {}
    for name, ids in zip(("validation", "test"), evaluation_halves(y, seed)):
        keep = torch.isin(y, torch.tensor(ids, dtype=y.dtype))
        pools[name] = (x[keep], y[keep])
    return pools


ONESHOT_SETTINGS = ((5, 1), (5, 5), (20, 1), (20, 5))  # (n_way, k_shot) on evaluation characters
VALIDATION_SETTING = (20, 1)  # what the validation characters choose by: 20-way 1-shot accuracy
ONESHOT_COLUMNS = ("method", "data", "metric", *(k for n, s in ONESHOT_SETTINGS
                                                 for k in (f"fewshot_{n}way_{s}shot",
                                                           f"fewshot_{n}way_{s}shot_ci95")),
                   "validation", "test_by_metric", "train_seconds")


def _identity(embeddings: torch.Tensor) -> torch.Tensor:
    return embeddings


def choose_metric(model, pool: tuple[torch.Tensor, torch.Tensor], default: str = "euclidean",
                  seed: int | None = None) -> tuple[str, dict[str, tuple[float, float]]]:
    """The distance a model is measured with, chosen on validation classes: 20-way 1-shot accuracy
    (:data:`VALIDATION_SETTING`) with Euclidean distance and with cosine distance (normalised
    embeddings); the higher mean wins, ``default`` on a tie.

    Returns:
        ``(metric, {"euclidean": (mean, ci95), "cosine": (mean, ci95)})``.
    """
    scores = {}
    n, k = VALIDATION_SETTING
    embedded = (embed(model, pool[0]), pool[1])  # once, for both metrics
    for metric in ("euclidean", "cosine"):
        row = evaluate(_identity, fewshot_pool=embedded, settings=(VALIDATION_SETTING,),
                       metric=metric, seed=resolve_seed(seed)).as_row()
        scores[metric] = (row[f"fewshot_{n}way_{k}shot"], row[f"fewshot_{n}way_{k}shot_ci95"])
    best = max(scores.values(), key=lambda v: v[0])[0]
    tied = [m for m, v in scores.items() if v[0] == best]
    return (default if default in tied else tied[0]), scores


def oneshot(names: Sequence[str] = tuple(CHARACTER_METHODS), seed: int | None = None, *,
            epochs: int | None = None, pixels: bool = True, trained: dict | None = None,
            progress: bool | None = None) -> list[dict]:
    """One-shot recognition of unseen characters: one row per model of :data:`CHARACTER_METHODS`
    (or :data:`CHARACTER_ALTERNATIVES`).

    Each model is trained (or loaded from the cache) on the run's background characters by
    :func:`train_on_characters`. The evaluation characters (none of which it saw) are halved by
    identity (:func:`character_pools`): on the **validation** half, :func:`choose_metric` picks
    Euclidean or cosine distance; on the **test** half, the model is measured with that metric in
    N-way K-shot episodes for each of :data:`ONESHOT_SETTINGS`, by nearest prototype. A ``pixels``
    row (raw pixels, no training) comes first when ``pixels``. ``trained``: ``{name: (model,
    history)}`` already returned by :func:`train_on_characters`, measured as they are.

    Returns:
        Rows with the keys in :data:`ONESHOT_COLUMNS`: accuracies are fractions in [0, 1] with
        their 95% CI half-width in ``…_ci95``; ``data`` is ``"omniglot"`` or ``"printed"``;
        ``metric`` the chosen distance; ``validation`` and ``test_by_metric`` map each metric to
        its ``(mean, ci95)`` at :data:`VALIDATION_SETTING` on the two halves.
    """
    for name in names:
        _character_spec(name)
    seed = resolve_seed(seed)
    pools = character_pools(seed)
    data = characters_kind()
    models: list[tuple[str, object, str, float]] = []
    if pixels:
        models.append(("pixels", lambda images: images.flatten(1), "euclidean", 0.0))
    for name in names:
        model, history = (trained or {}).get(name) or train_on_characters(
            name, seed=seed, epochs=epochs, progress=progress)
        models.append((name, model, metric_of(_character_spec(name)["method"]), history.seconds))
    n, k = VALIDATION_SETTING
    rows = []
    for name, model, default, seconds in models:
        # embed each half once; the episodes then run on the embeddings (identity "model")
        (xv, yv), (xt, yt) = pools["validation"], pools["test"]
        val, test = (embed(model, xv), yv), (embed(model, xt), yt)
        metric, validation = choose_metric(_identity, val, default, seed)
        result = evaluate(_identity, fewshot_pool=test, settings=ONESHOT_SETTINGS, metric=metric,
                          seed=seed)
        scores = {key: v for key, v in result.as_row().items() if key != "metric"}
        other = "cosine" if metric == "euclidean" else "euclidean"
        alt = evaluate(_identity, fewshot_pool=test, settings=(VALIDATION_SETTING,),
                       metric=other, seed=seed).as_row()
        by_metric = {metric: (scores[f"fewshot_{n}way_{k}shot"], scores[f"fewshot_{n}way_{k}shot_ci95"]),
                     other: (alt[f"fewshot_{n}way_{k}shot"], alt[f"fewshot_{n}way_{k}shot_ci95"])}
        rows.append({"method": name, "data": data, "metric": metric, **scores,
                     "validation": validation, "test_by_metric": by_metric, "train_seconds": seconds})
    return rows


SETTING_HEADS = {(n, k): f"{n}w{k}s" for n, k in ONESHOT_SETTINGS}  # short: tables fit a page
SETTING_NOTE = "NwKs: N-way K-shot"


def short_metric(metric: str) -> str:
    return "cos." if metric == "cosine" else "Eucl."


def oneshot_markdown(rows: list[dict]) -> str:
    """:func:`oneshot`'s rows as a Markdown table (accuracy ± 95% CI over episodes, on the test
    characters, with the distance the validation characters chose)."""
    heads = ["method", "dist.", *SETTING_HEADS.values(), "train s"]
    cells = [[r["method"], short_metric(r["metric"]),
              *(cell(r, f"fewshot_{n}way_{k}shot").replace(" ", "\u00a0")
                for n, k in ONESHOT_SETTINGS), f"{r['train_seconds']:.0f}"] for r in rows]
    return markdown(heads, cells, f"{SETTING_NOTE}, mean ± 95% CI over episodes on the test "
                    "characters; dist.: the distance the validation characters chose")


def metric_markdown(rows: list[dict]) -> str:
    """Euclidean against cosine distance for each row of :func:`oneshot`, at
    :data:`VALIDATION_SETTING` (20-way 1-shot): on the validation characters, which choose, and on
    the test characters, which only report."""
    cells = [[r["method"], *(pm(*r[part][m]).replace(" ", "\u00a0")
                             for part in ("validation", "test_by_metric")
                             for m in ("euclidean", "cosine")), short_metric(r["metric"])]
             for r in rows]
    n, k = VALIDATION_SETTING
    return markdown(["method", "val. Eucl.", "val. cos.", "test Eucl.", "test cos.", "chosen"], cells,
                    f"{n}-way {k}-shot accuracy ± 95% CI; val.: validation characters (they choose "
                    "the distance), test: test characters")


# ------------------------------------------------------------------------------------------------
# Enrol and verify (chapter 9, ``python -m fewshot verify``): one-shot verification and open-set
# identification on identities no model was trained on. Thresholds are calibrated on identities
# (characters) or images (MNIST) disjoint from the test ones; no number uses a test-tuned threshold.


VERIFY_DATA = ("characters", "mnist")
VERIFY_METHODS: dict[str, tuple[str, ...]] = {
    "characters": ("pixels", "softmax", *CHARACTER_METHODS),
    "mnist": ("pixels", "softmax", "siamese", "triplet"),
}
VERIFY_COLUMNS = ("method", "data", "metric", "auc", "eer", "tar_at_far", "far_at_threshold",
                  "dir_at_fpir_0.1", "fpir_at_threshold")
OPEN_SET_FPIR = 0.1  # the open-set operating point: at most 10% of never-enrolled probes accepted
MAX_SHOTS = 5  # enrolment images set aside per enrolled identity (K-shot enrolment uses the first K)
MNIST_ENROLLED = 3  # of the 5 unseen digits, 3 are enrolled and 2 never are (open-set on MNIST)


@dataclass
class VerificationSplit:
    """Which images play which role in one split of the protocol (indices into the evaluation set).

    Attributes:
        name: ``"calibration"`` or ``"test"``.
        enrol: enrolled identity → indices ``(MAX_SHOTS,)`` of its enrolment images.
        mated: ``(M,)`` probes of enrolled identities (other images than their enrolment ones).
        nonmated: ``(U,)`` probes of identities never enrolled.
        pairs: MNIST only: ``(I,)`` images whose every pair is a verification pair; ``None`` for
            characters, where the pairs are (probe, enrolled template): mated and non-mated probes
            against every template.
    """

    name: str
    enrol: dict[int, torch.Tensor]
    mated: torch.Tensor
    nonmated: torch.Tensor
    pairs: torch.Tensor | None = None

    def identities(self) -> list[int]:
        return list(self.enrol)


def verification_splits(labels: torch.Tensor, data: str = "characters",
                        seed: int | None = None) -> dict[str, VerificationSplit]:
    """The protocol's calibration and test splits of the evaluation images ``labels (N,)``.

    * ``characters``: the identities are shuffled and halved into **calibration** and **test**
      identities (disjoint). In each, half the identities are enrolled (``MAX_SHOTS`` images each
      set aside for enrolment, the rest are mated probes) and half are never enrolled (non-mated
      probes: their images past the first ``MAX_SHOTS``, so every identity gives as many probes).
    * ``mnist`` (only 5 unseen digits, too few to split by identity): the **images** of each digit
      are halved into calibration and test (disjoint images, the same digits). In each half,
      ``MNIST_ENROLLED`` digits are enrolled and the other two never are (open set), and every
      pair of the half's images is a verification pair (each image enrolled in turn).
    """
    check_choice(data, "data", VERIFY_DATA)
    g = torch.Generator().manual_seed(resolve_seed(seed))
    ids = labels.unique()
    ids = ids[torch.randperm(len(ids), generator=g)]
    images = {int(c): (labels == c).nonzero().flatten() for c in ids.tolist()}
    images = {c: rows[torch.randperm(len(rows), generator=g)] for c, rows in images.items()}
    if data == "characters":
        if len(ids) < 8 or min(len(r) for r in images.values()) <= MAX_SHOTS:
            raise ValueError(f"the characters protocol needs ≥ 8 identities with > {MAX_SHOTS} "
                             f"images each, got {len(ids)} identities")
        halves = {"calibration": ids[:len(ids) // 2].tolist(), "test": ids[len(ids) // 2:].tolist()}
        splits = {}
        for name, members in halves.items():
            enrolled, never = members[:len(members) // 2], members[len(members) // 2:]
            splits[name] = VerificationSplit(
                name, {c: images[c][:MAX_SHOTS] for c in enrolled},
                torch.cat([images[c][MAX_SHOTS:] for c in enrolled]),
                torch.cat([images[c][MAX_SHOTS:] for c in never]))
        return splits
    if len(ids) <= MNIST_ENROLLED or min(len(r) for r in images.values()) < 2 * (MAX_SHOTS + 1):
        raise ValueError(f"the mnist protocol needs > {MNIST_ENROLLED} digits with ≥ "
                         f"{2 * (MAX_SHOTS + 1)} images each")
    enrolled, never = ids[:MNIST_ENROLLED].tolist(), ids[MNIST_ENROLLED:].tolist()
    splits = {}
    for part, name in enumerate(("calibration", "test")):
        mine = {c: rows[part::2] for c, rows in images.items()}  # alternate images: disjoint halves
        splits[name] = VerificationSplit(
            name, {c: mine[c][:MAX_SHOTS] for c in enrolled},
            torch.cat([mine[c][MAX_SHOTS:] for c in enrolled]),
            torch.cat([mine[c] for c in never]), pairs=torch.cat(list(mine.values())).sort().values)
    return splits


def verification_pairs(embeddings: torch.Tensor, labels: torch.Tensor, split: VerificationSplit,
                       metric: str, shots: int = 1) -> tuple[VerificationRates, OpenSetRates]:
    """Run one split of the protocol on precomputed ``embeddings (N, D)`` of the evaluation images.

    The gallery holds, per enrolled identity, the mean embedding of its first ``shots`` enrolment
    images (exactly what :meth:`fewshot.verify.Gallery.enrol` stores). Returns the verification
    rates of the split's pairs (genuine: same identity) and the open-set rates of its mated and
    non-mated probes searched against the gallery (rank 1).
    """
    check_int(shots, "shots")
    if shots > MAX_SHOTS:
        raise ValueError(f"shots={shots!r}: at most {MAX_SHOTS} enrolment images are set aside")
    ids = split.identities()
    templates = torch.stack([embeddings[split.enrol[c][:shots]].mean(0) for c in ids])  # (E, D)
    probes = torch.cat([split.mated, split.nonmated])
    dist = pairwise(embeddings[probes], templates, metric)  # (P, E)
    nearest, index = dist.min(1)
    found = [ids[i] for i in index.tolist()]
    m = len(split.mated)
    open_set = open_set_rates((found[:m], nearest[:m]), labels[split.mated].tolist(),
                              (found[m:], nearest[m:]))
    if split.pairs is None:  # (probe, template) pairs
        same = labels[probes][:, None] == torch.tensor(ids)[None, :]
        rates = verification_rates(dist.flatten().double(), same.flatten())
    else:  # every pair of the split's images
        emb, y = embeddings[split.pairs], labels[split.pairs]
        i, j = torch.triu_indices(len(y), len(y), offset=1)
        rates = verification_rates(pairwise(emb, emb, metric)[i, j].double(), y[i] == y[j])
    return rates, open_set


@dataclass
class VerificationResult:
    """One method through the whole protocol: test rates and thresholds from the calibration split.

    ``thresholds[far]`` is calibrated on the calibration split (:func:`threshold_at_far`) and only
    applied to the test split; ``open_set_threshold`` likewise, for FPIR ≤ ``OPEN_SET_FPIR``.
    """

    method: str
    data: str
    metric: str
    test: VerificationRates
    open_set: OpenSetRates
    calibration: VerificationRates
    thresholds: dict[float, float]
    open_set_threshold: float
    embeddings: torch.Tensor

    def row(self) -> dict:
        """The table row: keys :data:`VERIFY_COLUMNS` (FAR targets as strings, e.g. ``"0.01"``).

        ``tar_at_far[far]``/``far_at_threshold[far]``: test TAR and the FAR actually reached on the
        test pairs at the threshold calibrated for ``far``; ``dir_at_fpir_0.1``/``fpir_at_threshold``:
        test DIR and FPIR at the open-set threshold calibrated for FPIR ≤ 0.1.
        """
        tar, far = {}, {}
        for target, t in self.thresholds.items():
            f, frr = self.test.far_frr(t)
            tar[f"{target:g}"], far[f"{target:g}"] = 1 - frr, f
        dir_, fpir = self.open_set.at(self.open_set_threshold)
        return {"method": self.method, "data": self.data, "metric": self.metric,
                "auc": self.test.auc, "eer": self.test.eer, "tar_at_far": tar,
                "far_at_threshold": far, "dir_at_fpir_0.1": dir_, "fpir_at_threshold": fpir}


def calibrate(rates: VerificationRates, open_set: OpenSetRates) -> tuple[dict[float, float], float]:
    """Thresholds from one (calibration) split: one per FAR in ``FAR_TARGETS`` that its impostor
    pairs resolve, and the open-set threshold with FPIR ≤ ``OPEN_SET_FPIR`` on its non-mated probes
    (its largest non-mated search distance that keeps FPIR within the target)."""
    d, same = torch.from_numpy(rates.distances), torch.from_numpy(rates.same)
    thresholds = {far: threshold_at_far(d, same, far) for far in FAR_TARGETS
                  if rates.n_impostor * far >= 10}
    searches = torch.from_numpy(open_set.mated_distances[open_set.mated_correct])
    searches = torch.cat([searches, torch.from_numpy(open_set.nonmated_distances)])
    is_mated = torch.arange(len(searches)) < int(open_set.mated_correct.sum())
    return thresholds, threshold_at_far(searches, is_mated, OPEN_SET_FPIR)


def verification_data(data: str = "characters") -> tuple[torch.Tensor, torch.Tensor]:
    """The evaluation images no model trained on: every evaluation character, or MNIST's unseen
    test digits (5–9)."""
    check_choice(data, "data", VERIFY_DATA)
    if data == "characters":
        return load_run_characters("evaluation")
    xt, yt = load_run_data("test")
    return split_classes(xt, yt, DEFAULT_UNSEEN)[1]


def verification_model(method: str, data: str = "characters", seed: int | None = None, *,
                       epochs: int | None = None, progress: bool | None = None):
    """``(embed, metric)`` for one method of :data:`VERIFY_METHODS`: a trained model (from the
    cache when an earlier chapter trained it) or, for ``pixels``, ``images.flatten(1)``.

    Characters: the models of :func:`train_on_characters` and a 32-D softmax net, on the
    background characters, each with the distance the validation characters choose
    (:func:`choose_metric`, as in :func:`oneshot`). MNIST: the 32-D models trained on the seen
    digits 0–4 exactly as :func:`evaluate_method` trains its ``seen_model``.
    """
    check_choice(data, "data", VERIFY_DATA)
    check_choice(method, "method", VERIFY_METHODS[data])
    seed = resolve_seed(seed)
    if method == "pixels" and data == "mnist":
        return (lambda images: images.flatten(1)), "euclidean"
    if method == "pixels":
        model, default = (lambda images: images.flatten(1)), "euclidean"
    elif data == "characters" and method in CHARACTER_METHODS:
        model, _ = train_on_characters(method, seed=seed, epochs=epochs, progress=progress)
        default = metric_of(CHARACTER_METHODS[method]["method"])
    elif data == "characters":
        x, y = load_run_characters("background")
        model, _ = train_method(method, x, y, embed_dim=CHARACTER_DIM, seed=seed, epochs=epochs,
                                progress=progress)
        default = metric_of(method)
    else:
        x, y = load_run_data("train")
        (sx, sy), _ = split_classes(x, y, DEFAULT_UNSEEN)
        model, _ = train_method(method, sx, sy, embed_dim=32, miner=None, sampler="random",
                                margin=None, options=None, epochs=epochs, seed=seed,
                                cache_models=True, progress=progress)
        return model, metric_of(method)
    # characters: the validation (calibration) identities choose the distance, as in chapter 8
    return model, choose_metric(model, character_pools(seed)["validation"], default, seed)[0]


def verification_results(data: str = "characters", seed: int | None = None, *,
                         methods: Sequence[str] | None = None, epochs: int | None = None,
                         progress: bool | None = None) -> list[VerificationResult]:
    """Every method of :data:`VERIFY_METHODS` (or ``methods``) through the chapter's protocol:
    embed the evaluation images once, calibrate the thresholds on the calibration split, measure
    on the test split (one-shot gallery)."""
    check_choice(data, "data", VERIFY_DATA)
    methods = VERIFY_METHODS[data] if methods is None else tuple(methods)
    bad = [m for m in methods if m not in VERIFY_METHODS[data]]
    if bad or not methods:
        raise ValueError(f"methods={list(methods)!r}: expected some of {VERIFY_METHODS[data]} "
                         f"for data={data!r}")
    seed = resolve_seed(seed)
    images, labels = verification_data(data)
    splits = verification_splits(labels, data, seed)
    results = []
    for method in methods:
        model, metric = verification_model(method, data, seed, epochs=epochs, progress=progress)
        emb = embed(model, images)
        cal_rates, cal_open = verification_pairs(emb, labels, splits["calibration"], metric)
        thresholds, open_threshold = calibrate(cal_rates, cal_open)
        test_rates, test_open = verification_pairs(emb, labels, splits["test"], metric)
        results.append(VerificationResult(method, data, metric, test_rates, test_open, cal_rates,
                                          thresholds, open_threshold, emb))
    return results


def verification_table(data: str = "characters", seed: int | None = None, *,
                       methods: Sequence[str] | None = None, epochs: int | None = None,
                       progress: bool | None = None) -> list[dict]:
    """:func:`verification_results` as table rows, one per method (keys :data:`VERIFY_COLUMNS`):
    ``auc``, ``eer`` and the rates at calibrated thresholds, all on the test split."""
    return [r.row() for r in verification_results(data, seed, methods=methods, epochs=epochs,
                                                  progress=progress)]


def _verify_cells(row: dict) -> list[str]:
    tars = [f"{100 * row['tar_at_far'][k]:.1f}%" if k in row["tar_at_far"] else "–"
            for k in (f"{f:g}" for f in FAR_TARGETS)]
    return [row["method"], "cos." if row["metric"] == "cosine" else "Eucl.", f"{row['auc']:.3f}",
            f"{100 * row['eer']:.1f}%", *tars, f"{100 * row['dir_at_fpir_0.1']:.1f}%"]


# short headers in one unit (percent), so the table fits a page's column
VERIFY_HEADERS = ("method", "dist.", "AUC", "EER", *(f"TAR@{100 * f:g}%" for f in FAR_TARGETS),
                  f"DIR@{100 * OPEN_SET_FPIR:g}%")
VERIFY_NOTE = (f"TAR@x%: true accept rate at the threshold calibrated for FAR x%; DIR@"
               f"{100 * OPEN_SET_FPIR:g}%: detection and identification rate at the threshold "
               f"calibrated for FPIR {100 * OPEN_SET_FPIR:g}%; dist.: the distance (Euclidean or "
               "cosine)")


def verification_markdown(rows: list[dict]) -> str:
    """:func:`verification_table`'s rows as a Markdown table."""
    return markdown(VERIFY_HEADERS, [_verify_cells(r) for r in rows],
                    "test identities only; thresholds calibrated on the disjoint calibration "
                    f"split. {VERIFY_NOTE}", left=2)


def format_verification_table(rows: list[dict]) -> str:
    """A plain-text version of :func:`verification_markdown` (for the command line)."""
    data = rows[0]["data"] if rows else "?"
    return text_table(VERIFY_HEADERS, [_verify_cells(r) for r in rows],
                      f"{data}: test identities; TAR and DIR at thresholds calibrated on the "
                      "calibration split")

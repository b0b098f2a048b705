"""One-shot recognition with many identities (chapter 8, ``python -m fewshot oneshot``).

Every model of :data:`CHARACTER_METHODS` trains (or loads from the cache) on the run's background
characters. The evaluation characters, none of which any model saw, are halved by identity: the
**validation** half chooses (each model's distance, the defaults below), the **test** half only
reports. Chapter 9's protocol (:mod:`fewshot.protocol`) uses the same halves and the same models.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

import torch

from .characters import characters_kind
from .evaluate import Score, evaluate
from .models import embed
from .recipes import _episode as protonet_episode  # protonet's training episode shape
from .recipes import metric_of, train_method
from .run import Run
from .spec import SOFT, TrainSpec
from .tables import Column, markdown

# label → the method and its settings (Run.spec's arguments), each trained at 32-D
CHARACTER_METHODS: dict[str, dict] = {
    # every pair of P×K batches, on L2-normalised embeddings, averaged over the pairs that still
    # have a loss. Chosen on the validation characters (CI size, printed fallback, 20-way 1-shot,
    # each with its better distance; ± is the 95% CI over validation episodes): 88.9% ± 0.4,
    # against 87.5% with the plain mean, 81.1% with the active mean on raw embeddings, and 78.4%
    # for a simpler recipe, hardest-negative pairs from random batches
    "contrastive": {"method": "siamese", "miner": "all", "sampler": "pk", "normalize": True,
                    "reduction": "mean_active"},
    # chapter 5's best at 32-D: batch-hard in P×K batches, soft margin on plain distances (the hinge
    # version collapsed here, as chapter 5 shows on digits); with the soft margin every triplet is
    # active, so the two averages are the same
    "triplet": {"method": "triplet", "miner": "batch_hard", "sampler": "pk", "margin": SOFT,
                "squared": False},
    # temperature 0.2 against 0.1 on the validation characters: 88.6% against 88.4%, each ± 0.4
    # (95% CI over validation episodes, one model each): not separable, 0.2 kept.
    # Trained on images moved by up to ±2 px (fewshot.train.shifted; the same epochs and
    # batches). Chosen on the validation characters (CI size, now "quick"; printed fallback,
    # 20-way 1-shot, cosine, mean of seeds 0-2, each ± 0.3; the run did not record whether that
    # ± is over episodes or over the seeds): 88.2% unshifted, 89.4% at ±1 px, 89.5% at ±2 px,
    # 88.6% at ±3 px (seed 0). The shift does not help the other methods on validation
    # (contrastive 88.4% against 88.5% unshifted; batch-hard triplet falls to 63.6%, where it
    # gets about 86% unshifted at this size), so they train unshifted
    "supcon": {"method": "supcon", "sampler": "pk", "temperature": 0.2, "shift": 2.0},
    "arcface": {"method": "arcface"},
    "protonet": {"method": "protonet"},
}
# the runs the defaults above were chosen against, measured side by side in chapter 8
CHARACTER_ALTERNATIVES: dict[str, dict] = {
    "contrastive, hardest negatives": {"method": "siamese", "miner": "hardest_negative"},
    "contrastive, plain mean": {"method": "siamese", "miner": "all", "sampler": "pk",
                                "normalize": True},
    "supcon, unshifted": {"method": "supcon", "sampler": "pk", "temperature": 0.2},
}
CHARACTER_DIM = 32


def character_spec(run: Run, name: str) -> TrainSpec:
    """The spec of the character model ``name`` of :data:`CHARACTER_METHODS` (or
    :data:`CHARACTER_ALTERNATIVES`): 32-D, at the run's profile and seed."""
    specs = {**CHARACTER_METHODS, **CHARACTER_ALTERNATIVES}
    if name not in specs:
        raise ValueError(f"name={name!r}: expected one of {tuple(specs)}")
    settings = dict(specs[name])
    return run.spec(settings.pop("method"), CHARACTER_DIM, **settings)


def train_on_characters(run: Run, name: str, *, progress: bool | None = None, cache: bool = True):
    """Train (or load from the cache) the character model ``name`` (:func:`character_spec`) on
    the run's background characters; returns ``(model, history)``."""
    return train_method(character_spec(run, name), *run.characters("background"),
                        progress=progress, cache=cache)


def evaluation_halves(labels: torch.Tensor, seed: int) -> tuple[list[int], list[int]]:
    """The evaluation identities shuffled and halved: ``(validation, test)``. The same halves as
    :func:`verification_splits`' calibration and test identities, so one half chooses (metrics,
    defaults, thresholds) and the other is only ever measured, in chapters 8 and 9 alike."""
    g = torch.Generator().manual_seed(seed)
    ids = labels.unique()
    ids = ids[torch.randperm(len(ids), generator=g)]
    return ids[:len(ids) // 2].tolist(), ids[len(ids) // 2:].tolist()


def character_pools(run: Run) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Every evaluation character of the run (none trained on), halved by identity
    (:func:`evaluation_halves` with the run's seed): ``{"validation": (images, labels), "test":
    (images, labels)}``."""
    x, y = run.characters("evaluation")
    pools = {}
    for name, ids in zip(("validation", "test"), evaluation_halves(y, run.seed)):
        keep = torch.isin(y, torch.tensor(ids, dtype=y.dtype))
        pools[name] = (x[keep], y[keep])
    return pools


ONESHOT_SETTINGS = ((5, 1), (5, 5), (20, 1), (20, 5))  # (n_way, k_shot) on evaluation characters
VALIDATION_SETTING = (20, 1)  # what the validation characters choose by: 20-way 1-shot accuracy
# the keys of ``python -m fewshot oneshot --json``
ONESHOT_COLUMNS = ("method", "data", "metric", *(k for n, s in ONESHOT_SETTINGS
                                                 for k in (f"fewshot_{n}way_{s}shot",
                                                           f"fewshot_{n}way_{s}shot_ci95")),
                   "validation", "test_by_metric", "train_seconds")


@dataclass
class CharacterResult:
    """One model's one-shot recognition of unseen characters (a row of chapter 8's table).

    Attributes:
        method: the model's label; data: ``"omniglot"`` or ``"printed"``.
        metric: the distance the validation characters chose.
        fewshot: ``{(n_way, k_shot): Score}`` on the test characters (:meth:`shot`).
        validation, test_by_metric: ``{metric: Score}`` at :data:`VALIDATION_SETTING` for both
            distances, on the validation characters (they choose) and on the test characters.
        train_seconds: the model's training time as recorded (0 for pixels).
    """

    method: str
    data: str
    metric: str
    fewshot: dict[tuple[int, int], Score]
    validation: dict[str, Score] = field(default_factory=dict)
    test_by_metric: dict[str, Score] = field(default_factory=dict)
    train_seconds: float | None = None

    def shot(self, n_way: int, k_shot: int) -> Score:
        """``n_way``-way ``k_shot``-shot accuracy on the test characters, mean ± 95% CI."""
        if (n_way, k_shot) not in self.fewshot:
            raise KeyError(f"{n_way}-way {k_shot}-shot was not measured; measured: {sorted(self.fewshot)}")
        return self.fewshot[(n_way, k_shot)]

    def named(self, label: str) -> CharacterResult:
        """The same result under another label (the table's first column)."""
        return dataclasses.replace(self, method=label)


def _identity(embeddings: torch.Tensor) -> torch.Tensor:
    return embeddings


def choose_metric(model, pool: tuple[torch.Tensor, torch.Tensor], default: str = "euclidean", *,
                  episodes: int, seed: int) -> tuple[str, dict[str, Score]]:
    """The distance a model is measured with, chosen on validation classes: 20-way 1-shot accuracy
    (:data:`VALIDATION_SETTING`) with Euclidean distance and with cosine distance (normalised
    embeddings), over ``episodes`` episodes drawn with ``seed``; the higher mean wins, ``default``
    on a tie.

    Returns:
        ``(metric, {"euclidean": Score, "cosine": Score})``.
    """
    scores = {}
    embedded = (embed(model, pool[0]), pool[1])  # once, for both metrics
    for metric in ("euclidean", "cosine"):
        result = evaluate(_identity, fewshot_pool=embedded, settings=(VALIDATION_SETTING,),
                          metric=metric, episodes=episodes, seed=seed)
        scores[metric] = Score.of(result.shot(*VALIDATION_SETTING))
    best = max(v.mean for v in scores.values())
    tied = [m for m, v in scores.items() if v.mean == best]
    return (default if default in tied else tied[0]), scores


def oneshot(run: Run, names: Sequence[str] = tuple(CHARACTER_METHODS), *, pixels: bool = True,
            trained: dict | None = None, progress: bool | None = None) -> list[CharacterResult]:
    """One-shot recognition of unseen characters: one :class:`CharacterResult` per model of :data:`CHARACTER_METHODS`
    (or :data:`CHARACTER_ALTERNATIVES`).

    Each model is trained (or loaded from the cache) on the run's background characters by
    :func:`train_on_characters`. The evaluation characters (none of which it saw) are halved by
    identity (:func:`character_pools`): on the **validation** half, :func:`choose_metric` picks
    Euclidean or cosine distance; on the **test** half, the model is measured with that metric in
    N-way K-shot episodes for each of :data:`ONESHOT_SETTINGS`, by nearest prototype. A ``pixels``
    row (raw pixels, no training) comes first when ``pixels``. ``trained``: ``{name: (model,
    history)}`` already returned by :func:`train_on_characters`, measured as they are.

    Returns:
        One :class:`CharacterResult` per model: accuracies are fractions in [0, 1] with their 95%
        CI half-width, on the test characters, with the distance the validation half chose.
    """
    specs = {name: character_spec(run, name) for name in names}
    seed, episodes = run.seed, run.profile.episodes
    pools = character_pools(run)
    data = characters_kind()
    models: list[tuple[str, object, str, float]] = []
    if pixels:
        models.append(("pixels", lambda images: images.flatten(1), "euclidean", 0.0))
    for name in names:
        model, history = (trained or {}).get(name) or train_on_characters(run, name,
                                                                          progress=progress)
        models.append((name, model, metric_of(specs[name].method), history.seconds))
    rows = []
    for name, model, default, seconds in models:
        # embed each half once; the episodes then run on the embeddings (identity "model")
        (xv, yv), (xt, yt) = pools["validation"], pools["test"]
        val, test = (embed(model, xv), yv), (embed(model, xt), yt)
        metric, validation = choose_metric(_identity, val, default, episodes=episodes, seed=seed)
        result = evaluate(_identity, fewshot_pool=test, settings=ONESHOT_SETTINGS, metric=metric,
                          episodes=episodes, seed=seed)
        scores = {key: Score.of(r) for key, r in result.fewshot.items()}
        other = "cosine" if metric == "euclidean" else "euclidean"
        alt = evaluate(_identity, fewshot_pool=test, settings=(VALIDATION_SETTING,),
                       metric=other, episodes=episodes, seed=seed)
        by_metric = {metric: scores[VALIDATION_SETTING],
                     other: Score.of(alt.shot(*VALIDATION_SETTING))}
        rows.append(CharacterResult(name, data, metric, scores, validation, by_metric, seconds))
    return rows


SETTING_HEADS = {(n, k): f"{n}w{k}s" for n, k in ONESHOT_SETTINGS}  # short: tables fit a page
SETTING_NOTE = "NwKs: N-way K-shot"


def short_metric(metric: str) -> str:
    return {"cosine": "cos.", "euclidean": "Eucl."}.get(metric, metric or "–")


# the columns a character table may show, by header: a missing setting shows "–"
CHARACTER_COLUMNS = {column.head: column for column in (
    Column("method", "method"),
    Column("dist.", lambda r: short_metric(r.metric),
           note="dist.: the distance the validation characters chose"),
    *(Column(head, lambda r, key=key: r.fewshot.get(key), note=SETTING_NOTE)
      for key, head in SETTING_HEADS.items()),
    Column("train s", "train_seconds", "{:.0f}", note="train s: training seconds"),
)}
# the default table: no training time (with it, the table is wider than the page's 688-px column)
ONESHOT_TABLE = ("method", "dist.", *SETTING_HEADS.values())


def oneshot_markdown(rows: Sequence[CharacterResult], columns: Sequence[str] = ONESHOT_TABLE,
                     note: str = "mean ± 95% CI over episodes on the test characters") -> str:
    """:func:`oneshot`'s rows as a Markdown table: the ``columns`` named (headers of
    :data:`CHARACTER_COLUMNS`), accuracy ± 95% CI over episodes on the test characters, with the
    distance the validation characters chose."""
    bad = [c for c in columns if c not in CHARACTER_COLUMNS]
    if bad or not columns:
        raise ValueError(f"columns={list(columns)!r}: expected some of {list(CHARACTER_COLUMNS)}")
    return markdown(rows, [CHARACTER_COLUMNS[c] for c in columns], note)


def metric_markdown(rows: Sequence[CharacterResult]) -> str:
    """Euclidean against cosine distance for each row of :func:`oneshot`, at
    :data:`VALIDATION_SETTING` (20-way 1-shot): on the validation characters, which choose, and on
    the test characters, which only report."""
    n, k = VALIDATION_SETTING
    columns = [Column("method", "method"),
               *(Column(f"{head} {short_metric(m)}", lambda r, part=part, m=m: getattr(r, part)[m])
                 for part, head in (("validation", "val."), ("test_by_metric", "test"))
                 for m in ("euclidean", "cosine")),
               Column("chosen", lambda r: short_metric(r.metric))]
    return markdown(rows, columns, f"{n}-way {k}-shot accuracy ± 95% CI; val.: validation characters "
                    "(they choose the distance), test: test characters")


def sampler_of(spec: TrainSpec) -> str:
    """Where a model's training batches come from: ``"episodes"`` for ``protonet`` (it trains on
    :class:`~fewshot.episodes.EpisodeBatches` whatever ``spec.sampler`` says), else the spec's
    ``"random"`` or ``"pk"``."""
    return "episodes" if spec.method == "protonet" else spec.sampler


def extra_of(spec: TrainSpec) -> str:
    """A spec's own settings in a few words, e.g. ``"margin soft, squared False"``; for
    ``protonet``, the training episode it uses (the spec's, else :data:`fewshot.recipes.PROTONET`'s:
    ``"20-way 5-shot, 5 queries"``). ``"–"`` when there are none."""
    settings = spec.settings()
    words = []
    if spec.method == "protonet":
        ep = protonet_episode(spec)  # what training reads, not a copy of it
        words.append(f"{ep['n_way']}-way {ep['k_shot']}-shot, {ep['n_query']} queries")
        settings = {k: v for k, v in settings.items() if k not in ep}
    words += [f"{k} {v}" for k, v in settings.items()]
    return ", ".join(words) or "–"


def methods_markdown(run: Run) -> str:
    """The character models of :data:`CHARACTER_METHODS` and how each trains
    (:func:`character_spec`), as a table: method, miner, sampler (:func:`sampler_of`) and the
    method's own settings (:func:`extra_of`)."""
    specs = [(name, character_spec(run, name)) for name in CHARACTER_METHODS]
    columns = [Column("model", 0), Column("method", lambda r: r[1].method),
               Column("miner", lambda r: r[1].miner or "–"),
               Column("sampler", lambda r: sampler_of(r[1])),
               Column("extra", lambda r: extra_of(r[1]))]
    return markdown(specs, columns)

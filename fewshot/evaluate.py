"""One measurement of a trained embedding, in one place.

:func:`evaluate` embeds once and returns an :class:`Evaluation`:

* **retrieval** (Musgrave, Belongie & Lim 2020): for each query, rank the references by distance.
  *precision@1*: the nearest reference has the query's class. *R-precision*: with R = the number of
  references of the query's class, the fraction of the R nearest that do. *MAP@R*: like
  R-precision, but rewarding correct neighbours that come first,
  ``MAP@R = (1/R) · Σ_{i=1..R} P(i) · [i-th neighbour correct]``, P(i) the precision among the i
  nearest;
* **few-shot**: N-way K-shot accuracy by nearest prototype on a pool of (unseen) classes, mean ± 95%
  CI over episodes (:func:`fewshot.episodes.evaluate_episodes`).

Both use the same metric, ``"euclidean"`` or ``"cosine"`` (margin-trained nets). Results stay typed
until a table (:mod:`fewshot.tables`) renders them: :class:`Score` is one number with its spread,
:meth:`Evaluation.shot` one few-shot setting. :func:`pm` formats "mean ± CI" the one way the book
prints it; :func:`versus` and :func:`order` compare two scores without naming a winner when their 95%
intervals overlap, and :func:`leaders` names every score that ties with the highest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import torch
from torch import nn

from .checks import check_embeddings, check_finite, check_labels
from .distances import check_metric, pairwise
from .episodes import FewShotResult, evaluate_episodes
from .models import EmbedFn, embed


def pm(mean: float, ci: float, percent: bool = True, digits: int = 1) -> str:
    """``"60.3 ± 1.1%"`` (fractions shown as percent) or ``"0.912 ± 0.004"``."""
    if percent:
        return f"{100 * mean:.{digits}f} ± {100 * ci:.{digits}f}%"
    return f"{mean:.{digits}f} ± {ci:.{digits}f}"


# Student's t, two-sided 95%, by degrees of freedom (seeds − 1): the CI of a mean over few seeds
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def seed_ci95(std: float, seeds: int) -> float:
    """The 95% CI half-width of a mean over ``seeds`` training seeds whose standard deviation is
    ``std``: ``t · std / √seeds`` (Student's t with ``seeds − 1`` degrees of freedom; 1.96 beyond
    the table). With 3 seeds that is about 2.5 standard deviations."""
    if seeds < 2:
        raise ValueError(f"seeds={seeds!r}: a spread over seeds needs at least 2")
    t = T95[seeds - 2] if seeds - 2 < len(T95) else 1.96
    return t * std / math.sqrt(seeds)


@dataclass(frozen=True)
class Score:
    """One number as the book shows it: ``mean`` with its 95% CI half-width over episodes (``ci95``)
    and, when ``seeds`` > 1 training seeds were averaged, their standard deviation (``std``).
    ``percent``: a fraction shown as a percentage (accuracies), else a plain value with three
    decimals (precision@1, MAP@R).

    Every ± the book prints, and every comparison (:func:`order`, :func:`versus`), uses
    :attr:`interval`: the 95% CI over episodes with one seed; with several, the 95% CI of the mean
    over seeds, or the episodes' one where that is wider. (Averaging the seeds' episode CIs alone
    would leave out how much the training seed moves the number.)"""

    mean: float
    ci95: float | None = None
    std: float | None = None
    percent: bool = True
    seeds: int = 1

    @property
    def interval(self) -> float | None:
        """The 95% CI half-width this number is shown and compared with (see the class)."""
        if self.std is None or self.seeds < 2:
            return self.ci95
        return max(seed_ci95(self.std, self.seeds), self.ci95 or 0.0)

    @classmethod
    def of(cls, result: object) -> Score:
        """A :class:`Score` from anything with ``mean`` and ``ci95`` (a
        :class:`~fewshot.episodes.FewShotResult`), or a ``(mean, ci95)`` pair."""
        if isinstance(result, Score):
            return result
        if hasattr(result, "mean") and hasattr(result, "ci95"):
            return cls(float(result.mean), float(result.ci95))
        if isinstance(result, tuple) and len(result) == 2:
            return cls(float(result[0]), float(result[1]))
        raise TypeError(f"{result!r}: expected a Score, a FewShotResult or a (mean, ci95) pair")

    def __str__(self) -> str:
        digits = 1 if self.percent else 3
        spread = self.interval
        if spread is not None:
            return pm(self.mean, spread, self.percent, digits)
        return f"{100 * self.mean:.1f}%" if self.percent else f"{self.mean:.3f}"


def order(a: object, b: object) -> int:
    """:func:`ci_order` of two scores (each a :class:`Score`, a
    :class:`~fewshot.episodes.FewShotResult` or a ``(mean, ci95)`` pair)."""
    a, b = Score.of(a), Score.of(b)
    return ci_order(a.mean, a.interval or 0.0, b.mean, b.interval or 0.0)


def ci_order(mean_a: float, ci_a: float, mean_b: float, ci_b: float) -> int:
    """``1`` if A is clearly higher than B (their 95% intervals do not overlap), ``-1`` if clearly
    lower, ``0`` if the intervals overlap: then no winner may be named."""
    if mean_a - ci_a > mean_b + ci_b:
        return 1
    if mean_a + ci_a < mean_b - ci_b:
        return -1
    return 0


def versus(name_a: str, a: object, name_b: str, b: object) -> str:
    """A sentence comparing two few-shot results (each a :class:`Score`, a
    :class:`~fewshot.episodes.FewShotResult` or a ``(mean, ci95)`` pair) that names a winner only
    when the 95% intervals do not overlap: ``"A (60.3 ± 1.1%) beats B (48.9 ± 0.9%)"`` (the spaces
    around ± do not break)."""
    sa, sb = Score.of(a), Score.of(b)
    which = order(sa, sb)
    # a number and its interval are one unit: non-breaking spaces keep "60.3 ± 1.1%" on one line
    # when a chapter wraps the sentence (textwrap breaks only at ASCII whitespace)
    # each shown as the book shows it (str(Score)): a percentage, or a fraction for P@1 and MAP@R
    text_a = f"{name_a} ({str(sa).replace(' ', chr(0xA0))})"
    text_b = f"{name_b} ({str(sb).replace(' ', chr(0xA0))})"
    if which > 0:
        return f"{text_a} beats {text_b}"
    if which < 0:
        return f"{text_a} is below {text_b}"
    return f"{text_a} and {text_b}: no clear difference (the 95% intervals overlap)"


def with_binomial(score: Score | float, n: int) -> Score:
    """A proportion (test P@1: one hit or miss per query) with its binomial 95% interval over ``n``
    queries as ``ci95``, ``1.96·sqrt(p(1 − p)/n)``: even one trained model's P@1 then has an
    interval. A :class:`Score` keeps its seeds (its :attr:`~Score.interval` is the wider of the
    two); a float becomes a fraction ``Score``. Raises ``ValueError`` unless ``0 ≤ p ≤ 1``, ``n ≥ 1``."""
    score = score if isinstance(score, Score) else Score(float(score), percent=False)
    if not 0.0 <= score.mean <= 1.0 or not isinstance(n, int) or n < 1:
        raise ValueError(f"with_binomial: expected a proportion in [0, 1] and n ≥ 1, got "
                         f"{score.mean!r} and {n!r}")
    p = score.mean
    return replace(score, ci95=1.96 * math.sqrt(p * (1 - p) / n))


def leaders(scores: Mapping[str, object]) -> list[str]:
    """The names whose score cannot be told apart from the highest mean's: the highest first, then
    every other whose 95% interval overlaps it (:func:`order` gives 0), by mean. One name means a
    clear winner; several mean no winner may be named among them.

    ``scores`` maps names to a :class:`Score`, a :class:`~fewshot.episodes.FewShotResult` or a
    ``(mean, ci95)`` pair. Raises ``ValueError`` when it is empty."""
    if not scores:
        raise ValueError("leaders: no scores given")
    typed = {name: Score.of(s) for name, s in scores.items()}
    top = max(typed, key=lambda name: typed[name].mean)
    tied = [name for name in typed if name != top and order(typed[name], typed[top]) == 0]
    return [top] + sorted(tied, key=lambda name: -typed[name].mean)


@torch.no_grad()
def retrieval_metrics(query: torch.Tensor, query_labels: torch.Tensor, reference: torch.Tensor,
                      reference_labels: torch.Tensor, same_set: bool = False,
                      metric: str = "euclidean", chunk: int = 512) -> dict[str, float]:
    """Precision@1, R-precision and MAP@R of ``query`` against ``reference``.

    Args:
        query: ``(Q, D)`` embeddings; query_labels: ``(Q,)`` integers (Q ≥ 1).
        reference: ``(M, D)`` embeddings; reference_labels: ``(M,)`` integers.
        same_set: queries and references are the same items: skip each query's own match.
        metric: ``"euclidean"`` or ``"cosine"``.

    Returns:
        ``{"precision_at_1": …, "r_precision": …, "map_at_r": …}``, each in [0, 1].
    """
    check_metric(metric)
    check_embeddings(query, "query")
    check_embeddings(reference, "reference")
    check_labels(query_labels, "query_labels")
    check_labels(reference_labels, "reference_labels")
    if len(query) == 0:
        raise ValueError("the query set is empty: nothing to measure")
    if len(query) != len(query_labels) or len(reference) != len(reference_labels):
        raise ValueError(f"{len(query)} queries for {len(query_labels)} labels, "
                         f"{len(reference)} references for {len(reference_labels)} labels")
    if query.shape[1] != reference.shape[1]:
        raise ValueError(f"query (Q, D) and reference (M, D) must have equal D, got "
                         f"{tuple(query.shape)} and {tuple(reference.shape)}")
    if same_set and len(query) != len(reference):
        raise ValueError(f"same_set=True needs as many queries as references, got {len(query)} "
                         f"and {len(reference)}")
    query, reference = query.float().cpu(), reference.float().cpu()
    query_labels, reference_labels = query_labels.cpu(), reference_labels.cpu()
    classes, counts = reference_labels.unique(return_counts=True)
    count_of = dict(zip(classes.tolist(), counts.tolist()))
    r = torch.tensor([count_of.get(int(c), 0) - int(same_set) for c in query_labels])
    if (r < 1).any():
        bad = sorted({int(c) for c, ri in zip(query_labels, r) if ri < 1})
        raise ValueError(f"query classes {bad} have no reference of their class")
    k = int(r.max())
    p1, rp, mapr = [], [], []
    for start in range(0, len(query), chunk):
        q = query[start:start + chunk]
        dist = pairwise(q, reference, metric)  # (q, M)
        if same_set:
            rows = torch.arange(len(q))
            dist[rows, start + rows] = float("inf")
        nearest = dist.topk(k, dim=1, largest=False).indices  # (q, k), nearest first
        correct = (reference_labels[nearest] == query_labels[start:start + chunk, None]).float()
        rr = r[start:start + chunk]
        correct = correct * (torch.arange(k)[None, :] < rr[:, None]).float()  # the first R of each row
        precision_i = correct.cumsum(1) / torch.arange(1, k + 1)[None, :]
        p1.append(correct[:, 0])
        rp.append(correct.sum(1) / rr)
        mapr.append((precision_i * correct).sum(1) / rr)
    return {"precision_at_1": torch.cat(p1).mean().item(),
            "r_precision": torch.cat(rp).mean().item(),
            "map_at_r": torch.cat(mapr).mean().item()}


@dataclass
class Evaluation:
    """What :func:`evaluate` measured. Fields it was not asked for stay ``None`` / empty.

    Attributes:
        metric: ``"euclidean"`` or ``"cosine"``.
        precision_at_1, r_precision, map_at_r: retrieval of the queries among the references.
        fewshot: ``{(n_way, k_shot): FewShotResult}``.
    """

    metric: str
    precision_at_1: float | None = None
    r_precision: float | None = None
    map_at_r: float | None = None
    fewshot: dict[tuple[int, int], FewShotResult] = field(default_factory=dict)

    def shot(self, n_way: int, k_shot: int) -> FewShotResult:
        """The measured ``n_way``-way ``k_shot``-shot result (``KeyError`` naming what was measured)."""
        if (n_way, k_shot) not in self.fewshot:
            raise KeyError(f"{n_way}-way {k_shot}-shot was not measured; measured: {sorted(self.fewshot)}")
        return self.fewshot[(n_way, k_shot)]

    def fewshot_text(self, n_way: int, k_shot: int) -> str:
        """``"60.3 ± 1.1%"`` for one few-shot setting."""
        return str(Score.of(self.shot(n_way, k_shot)))

    def __str__(self) -> str:
        parts = []
        if self.precision_at_1 is not None:
            parts.append(f"P@1 {self.precision_at_1:.3f}, MAP@R {self.map_at_r:.3f}")
        parts += [f"{n}-way {k}-shot {pm(r.mean, r.ci95)}" for (n, k), r in sorted(self.fewshot.items())]
        return f"[{self.metric}] " + "; ".join(parts)


def evaluate(model: nn.Module | EmbedFn, *, query: tuple[torch.Tensor, torch.Tensor] | None = None,
             reference: tuple[torch.Tensor, torch.Tensor] | None = None,
             fewshot_pool: tuple[torch.Tensor, torch.Tensor] | None = None,
             settings: Sequence[tuple[int, int]] = ((5, 1), (5, 5)), metric: str = "euclidean",
             episodes: int | None = None, seed: int | None = None) -> Evaluation:
    """Measure a trained embedding (a model with ``get_embedding``, or any embedding function).

    Args:
        query, reference: ``(images, labels)``: retrieval of each query image among the references
            (e.g. test digits against training digits). ``reference=None`` ranks the queries among
            themselves, leaving each one out.
        fewshot_pool: ``(images, labels)`` of classes the model never trained on, for N-way K-shot
            episodes; ``settings`` lists the ``(n_way, k_shot)`` pairs to run.
        metric: ``"euclidean"`` or ``"cosine"``, for retrieval and prototypes alike.
        episodes, seed: the few-shot episodes (``run.profile.episodes``, ``run.seed``); needed
            with ``fewshot_pool`` only.
    """
    check_metric(metric)
    for name, pair in (("query", query), ("reference", reference), ("fewshot_pool", fewshot_pool)):
        if pair is not None:
            check_finite(pair[0], f"{name} images")
    result = Evaluation(metric=metric)
    if query is not None:
        q_emb = embed(model, query[0])
        if reference is None:
            scores = retrieval_metrics(q_emb, query[1], q_emb, query[1], same_set=True, metric=metric)
        else:
            scores = retrieval_metrics(q_emb, query[1], embed(model, reference[0]), reference[1],
                                       metric=metric)
        result.precision_at_1 = scores["precision_at_1"]
        result.r_precision = scores["r_precision"]
        result.map_at_r = scores["map_at_r"]
    if fewshot_pool is not None:
        images, labels = fewshot_pool
        if episodes is None or seed is None:
            raise ValueError(f"fewshot_pool needs episodes= and seed= (run.profile.episodes, "
                             f"run.seed), got episodes={episodes!r}, seed={seed!r}")
        pool_emb = embed(model, images)
        for n_way, k_shot in settings:
            result.fewshot[(n_way, k_shot)] = evaluate_episodes(
                pool_emb, images, labels, n_way=n_way, k_shot=k_shot, episodes=episodes,
                metric=metric, seed=seed)
    return result

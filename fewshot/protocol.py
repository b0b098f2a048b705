"""Enrol and verify (chapter 9, ``python -m fewshot verify``): one-shot verification and open-set
identification on identities no model was trained on.

Thresholds are calibrated on identities (characters) or images (MNIST) disjoint from the test ones;
no number uses a test-tuned threshold. Templates and searches go through
:class:`fewshot.verify.Gallery`, exactly as a deployed system would enrol and search.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from .checks import check_choice, check_int
from .distances import pairwise
from .episodes import DEFAULT_UNSEEN, split_classes
from .models import embed
from .oneshot import (CHARACTER_DIM, CHARACTER_METHODS, character_pools, character_spec,
                      choose_metric, train_on_characters)
from .recipes import metric_of, train_method
from .run import Run
from .tables import Column, markdown, text
from .rates import (FAR_TARGETS, OpenSetRates, VerificationRates, open_set_rates, threshold_at_far,
                    verification_rates)
from .verify import Gallery

VERIFY_DATA = ("characters", "mnist")
VERIFY_METHODS: dict[str, tuple[str, ...]] = {
    "characters": ("pixels", "softmax", *CHARACTER_METHODS),
    "mnist": ("pixels", "softmax", "siamese", "triplet"),
}
# the keys of ``python -m fewshot verify --json``
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


def verification_splits(labels: torch.Tensor, data: str = "characters", *,
                        seed: int) -> dict[str, VerificationSplit]:
    """The protocol's calibration and test splits of the evaluation images ``labels (N,)``.

    * ``characters``: the identities are shuffled and halved into **calibration** and **test**
      identities (disjoint). In each, half the identities are enrolled (``MAX_SHOTS`` images each
      set aside for enrolment, the rest are mated probes) and half are never enrolled (non-mated
      probes: their images past the first ``MAX_SHOTS``, so every identity gives as many probes).
    * ``mnist`` (only 5 unseen digits, too few to split by identity): the **images** of each digit
      are halved into calibration and test (disjoint images, the same digits). In each half,
      ``MNIST_ENROLLED`` digits are enrolled and the other two never are (open set), and every
      pair of the half's images is a verification pair (each image enrolled in turn).

    ``seed`` (the run's) shuffles the identities and images.
    """
    check_choice(data, "data", VERIFY_DATA)
    g = torch.Generator().manual_seed(seed)
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

    A :class:`~fewshot.verify.Gallery` enrols, per identity, the mean embedding of its first
    ``shots`` enrolment images, and searches the probes against it. Returns the verification
    rates of the split's pairs (genuine: same identity) and the open-set rates of its mated and
    non-mated probes searched against the gallery (rank 1).
    """
    check_int(shots, "shots")
    if shots > MAX_SHOTS:
        raise ValueError(f"shots={shots!r}: at most {MAX_SHOTS} enrolment images are set aside")
    ids = split.identities()
    # the embeddings go in as 1×1 "images" and come out flattened: the gallery's own enrolment
    # (mean template) and search, without embedding the images again
    gallery = Gallery(lambda x: x.flatten(1), metric)
    as_images = embeddings[:, :, None, None]  # (N, D, 1, 1)
    for c in ids:
        gallery.enrol(c, as_images[split.enrol[c][:shots]])
    probes = torch.cat([split.mated, split.nonmated])
    found, nearest = gallery.identify(as_images[probes])
    dist = pairwise(embeddings[probes], gallery.templates, metric)  # (P, E), for the pairs below
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
class VerificationRow:
    """One method's test rates at the thresholds calibrated on the calibration split (a row of the
    chapter's table).

    Attributes:
        auc, eer: of the test pairs.
        tar_at_far, far_at_threshold: FAR target → the test TAR, and the FAR actually reached on
            the test pairs, at the threshold calibrated for that target.
        dir_at_fpir, fpir_at_threshold: test DIR and FPIR at the open-set threshold calibrated for
            FPIR ≤ :data:`OPEN_SET_FPIR`.
    """

    method: str
    data: str
    metric: str
    auc: float
    eer: float
    tar_at_far: dict[float, float]
    far_at_threshold: dict[float, float]
    dir_at_fpir: float = field(metadata={"key": f"dir_at_fpir_{OPEN_SET_FPIR:g}"})
    fpir_at_threshold: float = 0.0

    def tar(self, far: float) -> float | None:
        """The test TAR at the threshold calibrated for ``far`` (``None``: too few impostor pairs
        to calibrate it)."""
        return self.tar_at_far.get(far)


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

    def row(self) -> VerificationRow:
        """The table row: the test rates at the thresholds calibrated on the calibration split."""
        tar, far = {}, {}
        for target, t in self.thresholds.items():
            f, frr = self.test.far_frr(t)
            tar[target], far[target] = 1 - frr, f
        dir_, fpir = self.open_set.at(self.open_set_threshold)
        return VerificationRow(self.method, self.data, self.metric, self.test.auc, self.test.eer, tar,
                               far, dir_, fpir)


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


def verification_data(run: Run, data: str = "characters") -> tuple[torch.Tensor, torch.Tensor]:
    """The run's evaluation images no model trained on: every evaluation character, or MNIST's
    unseen test digits (5–9)."""
    check_choice(data, "data", VERIFY_DATA)
    if data == "characters":
        return run.characters("evaluation")
    xt, yt = run.mnist("test")
    return split_classes(xt, yt, DEFAULT_UNSEEN)[1]


def verification_model(run: Run, method: str, data: str = "characters", *,
                       progress: bool | None = None):
    """``(embed, metric)`` for one method of :data:`VERIFY_METHODS`: a trained model (from the
    cache when an earlier chapter trained it) or, for ``pixels``, ``images.flatten(1)``.

    Characters: the models of :func:`train_on_characters` and a 32-D softmax net, on the
    background characters, each with the distance the validation characters choose
    (:func:`choose_metric`, as in :func:`oneshot`). MNIST: the 32-D models trained on the seen
    digits 0–4 exactly as :func:`evaluate_method` trains its ``seen_model``.
    """
    check_choice(data, "data", VERIFY_DATA)
    check_choice(method, "method", VERIFY_METHODS[data])
    if method == "pixels" and data == "mnist":
        return (lambda images: images.flatten(1)), "euclidean"
    if method == "pixels":
        model, default = (lambda images: images.flatten(1)), "euclidean"
    elif data == "characters" and method in CHARACTER_METHODS:
        model, _ = train_on_characters(run, method, progress=progress)
        default = metric_of(character_spec(run, method).method)
    elif data == "characters":
        model, _ = train_method(run.spec(method, CHARACTER_DIM), *run.characters("background"),
                                progress=progress)
        default = metric_of(method)
    else:
        x, y = run.mnist("train")
        (sx, sy), _ = split_classes(x, y, DEFAULT_UNSEEN)
        model, _ = train_method(run.spec(method, 32), sx, sy, progress=progress)
        return model, metric_of(method)
    # characters: the validation (calibration) identities choose the distance, as in chapter 8
    validation = character_pools(run)["validation"]
    return model, choose_metric(model, validation, default, episodes=run.profile.episodes,
                                seed=run.seed)[0]


def verification_results(run: Run, data: str = "characters", *, methods: Sequence[str] | None = None,
                         progress: bool | None = None) -> list[VerificationResult]:
    """Every method of :data:`VERIFY_METHODS` (or ``methods``) through the chapter's protocol on
    the run's data: embed the evaluation images once, calibrate the thresholds on the calibration
    split, measure on the test split (one-shot gallery)."""
    check_choice(data, "data", VERIFY_DATA)
    methods = VERIFY_METHODS[data] if methods is None else tuple(methods)
    bad = [m for m in methods if m not in VERIFY_METHODS[data]]
    if bad or not methods:
        raise ValueError(f"methods={list(methods)!r}: expected some of {VERIFY_METHODS[data]} "
                         f"for data={data!r}")
    images, labels = verification_data(run, data)
    splits = verification_splits(labels, data, seed=run.seed)
    results = []
    for method in methods:
        model, metric = verification_model(run, method, data, progress=progress)
        emb = embed(model, images)
        cal_rates, cal_open = verification_pairs(emb, labels, splits["calibration"], metric)
        thresholds, open_threshold = calibrate(cal_rates, cal_open)
        test_rates, test_open = verification_pairs(emb, labels, splits["test"], metric)
        results.append(VerificationResult(method, data, metric, test_rates, test_open, cal_rates,
                                          thresholds, open_threshold, emb))
    return results


def verification_table(run: Run, data: str = "characters", *, methods: Sequence[str] | None = None,
                       progress: bool | None = None) -> list[VerificationRow]:
    """:func:`verification_results` as table rows, one :class:`VerificationRow` per method:
    ``auc``, ``eer`` and the rates at calibrated thresholds, all on the test split."""
    return [r.row() for r in verification_results(run, data, methods=methods, progress=progress)]


# short headers in one unit (percent), so the table fits a page's column; the legend explains them
VERIFY_TABLE = (
    Column("method", "method"),
    Column("dist.", lambda r: "cos." if r.metric == "cosine" else "Eucl.",
           note="dist.: the distance (Euclidean or cosine)"),
    Column("AUC", "auc"),
    Column("EER", "eer", "{:.1%}"),
    *(Column(f"TAR@{100 * far:g}%", lambda r, far=far: r.tar(far), "{:.1%}",
             note="TAR@x%: true accept rate at the threshold calibrated for FAR x%")
      for far in FAR_TARGETS),
    Column(f"DIR@{100 * OPEN_SET_FPIR:g}%", "dir_at_fpir", "{:.1%}",
           note=f"DIR@{100 * OPEN_SET_FPIR:g}%: detection and identification rate at the threshold "
                f"calibrated for FPIR {100 * OPEN_SET_FPIR:g}%"),
)


# the Markdown table in two: one number per system, then the rates at the calibrated thresholds
# (eight columns of rates do not fit the page's 688-px column at 1,280 px in the book's type)
SYSTEM_COLUMNS, THRESHOLD_COLUMNS = VERIFY_TABLE[:4], (VERIFY_TABLE[0], *VERIFY_TABLE[4:])


# what each split holds, by data: the caption's "test …" and "thresholds calibrated on …"
SPLIT_NOTES: dict[str, tuple[str, str]] = {
    "characters": ("test identities only", "the disjoint calibration split"),
    "mnist": ("test images only (the same digits as the calibration images)",
              "the calibration images, disjoint from the test images"),
}


def split_notes(rows: Sequence[VerificationRow]) -> tuple[str, str]:
    """``(test note, calibration note)`` of :data:`SPLIT_NOTES` for ``rows``' data (characters
    when there are no rows). Raises ``ValueError`` when the rows mix data: one caption cannot
    describe both."""
    kinds = sorted({row.data for row in rows}) or ["characters"]
    if len(kinds) > 1 or kinds[0] not in SPLIT_NOTES:
        raise ValueError(f"rows of data {kinds!r}: expected one of {sorted(SPLIT_NOTES)}")
    return SPLIT_NOTES[kinds[0]]


def verification_markdown(rows: Sequence[VerificationRow]) -> str:
    """:func:`verification_table`'s rows as two Markdown tables: AUC and EER of each method, then
    its TAR and DIR at the thresholds calibrated on the calibration split. The captions say what
    the test split holds: identities no threshold saw (characters), or images no threshold saw of
    the same digits (MNIST)."""
    note, calibration = split_notes(rows)
    return "\n\n".join([markdown(rows, SYSTEM_COLUMNS, note),
                         markdown(rows, THRESHOLD_COLUMNS,
                                  f"{note}; thresholds calibrated on {calibration}")])


def format_verification_table(rows: Sequence[VerificationRow]) -> str:
    """A plain-text version of :func:`verification_markdown` (for the command line)."""
    data = rows[0].data if rows else "?"
    note, calibration = split_notes(rows)
    return text(rows, VERIFY_TABLE, f"{data}: {note}; TAR and DIR at thresholds calibrated on "
                f"{calibration}")

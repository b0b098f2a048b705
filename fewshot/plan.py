"""An estimate before the wait: ``python -m fewshot plan`` prints, per chapter, how long its training
will take at the current size on this machine.

The estimate multiplies two things:

* **what each chapter trains**, :data:`CHAPTERS`: the models its notebook asks for, written as
  :class:`Training` specs (method, size, data, settings, seed). A model is paid for once: by the
  first chapter that needs it, in book order, and by no chapter if it is already in the model
  cache (the same cache key :func:`fewshot.recipes.train_method` looks up);
* **how fast this machine trains**, measured by :func:`throughput`: a probe of a few seconds that
  trains the book's CNN with the in-batch triplet step (``benchmarks/bench_train.py``'s
  measurement) at the profile's batch size.

A training costs ``epochs × (images × cost + validation images × VALIDATION_COST) / rate``
seconds, where ``cost`` (:func:`cost`) is its time per image relative to the probe. The probe
trains the CNN as a classifier, so the network is in the rate and every method costs the same
per image (measured within ±15% here, one thread) but the batch-all triplet loss (1.3×); the
common factor, :data:`TRAINING_COST`, is fitted to the last CI run's ledger (README, "Run
size"). Only training is estimated: validation is not in the ledger's seconds, and evaluation,
figures and the kernel's start come on top.

``python -m fewshot plan --ledger FILE`` sets the estimate beside a run's training ledger
(``FEWSHOT_LEDGER``): each trained model is matched to its chapter by its cache key.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from . import cache
from .characters import BACKGROUND_SPLIT
from .config import Profile
from .episodes import DEFAULT_UNSEEN, split_classes
from .losses import TripletLoss
from .miners import all_triplets
from .models import ClassificationNet, EmbeddingNet
from .oneshot import CHARACTER_ALTERNATIVES, CHARACTER_DIM, CHARACTER_METHODS
from .recipes import METHODS, cache_key, default_miner
from .run import Run
from .spec import SOFT, TrainSpec
from .train import class_step, metric_step

DATA = ("digits", "seen", "characters")  # the run's training digits, digits 0–4 of them, characters
# Time per training image relative to the probe. The CI run of 2026-12-01 (2 threads) trained
# 1.49 million images (49 models, quick size) in 349 s, 4,270 images/s, where the probe would give
# about 2,760 (bench_train: 2,208 for the triplet step, which costs 1.25x the classifier here):
# 0.65. Measured on one loaded machine with one thread it came out near 1.0; the coordinator's
# idle runs (python -m fewshot plan --ledger) settle it.
TRAINING_COST = 0.65
BATCH_ALL_COST = 1.3 * TRAINING_COST  # every triplet of the batch (B³ candidates)
VALIDATION_COST = 0.0  # validation is outside the ledger's seconds (``History.seconds``)
FINETUNE_EPOCHS = 0.5  # softmax+triplet fine-tunes for half the epochs (after its softmax model)


@dataclass(frozen=True)
class Training:
    """One model a chapter trains: what the chapter asks ``run.spec`` for, and on which data.

    Attributes:
        method: one of :data:`fewshot.recipes.METHODS`.
        dim: embedding size.
        data: ``"digits"`` (the run's training digits), ``"seen"`` (their digits 0–4, as
            ``compare.evaluate_method`` trains its few-shot model) or ``"characters"``
            (the run's background characters).
        val: validated on the run's test digits after every epoch.
        epochs: a fraction of the profile's epochs (chapter 4's margin maps train for half).
        seed: added to the run's seed (``evaluate_method``'s extra seeds).
        settings: the method's own settings, as ``run.spec`` takes them (``miner``, ``margin``,
            ...), as sorted ``(name, value)`` pairs, so that a training can be a dict key.
    """

    method: str
    dim: int
    data: str = "digits"
    val: bool = False
    epochs: float = 1.0
    seed: int = 0
    settings: tuple = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r}: expected one of {METHODS}")
        if self.data not in DATA:
            raise ValueError(f"data={self.data!r}: expected one of {DATA}")


    @property
    def miner(self) -> str | None:
        return dict(self.settings).get("miner") or default_miner(self.method)

    def spec(self, run: Run) -> TrainSpec:
        """The :class:`~fewshot.spec.TrainSpec` the chapter trains in ``run``."""
        return run.spec(self.method, self.dim, epochs=max(1, int(run.profile.epochs * self.epochs)),
                        seed=run.seed + self.seed, **dict(self.settings))


def train(method: str, dim: int, data: str = "digits", *, val: bool = False, epochs: float = 1.0,
          seed: int = 0, **settings) -> Training:
    """A :class:`Training` written like the notebook's ``run.spec`` call."""
    return Training(method, dim, data, val, epochs, seed, tuple(sorted(settings.items())))


@dataclass(frozen=True)
class Row:
    """``compare.evaluate_method(run, run.spec(method, dim, **kw))``: per seed of the profile, one model on every
    training digit (validated) and one on the seen digits 0–4."""

    method: str
    dim: int
    kw: tuple = ()

    def trainings(self, seeds: int) -> list[Training]:
        kw = dict(self.kw)
        return [train(self.method, self.dim, data, val=data == "digits", seed=s, **kw)
                for s in range(seeds) for data in ("digits", "seen")]


def row(method: str, dim: int, **kw) -> Row:
    return Row(method, dim, tuple(sorted(kw.items())))


def characters(name: str) -> Training:
    """``oneshot.train_on_characters(run, name)``: a 32-D model on the background characters (of
    :data:`~fewshot.oneshot.CHARACTER_METHODS` or :data:`~fewshot.oneshot.CHARACTER_ALTERNATIVES`)."""
    return train(data="characters", dim=CHARACTER_DIM,
                 **{**CHARACTER_METHODS, **CHARACTER_ALTERNATIVES}[name])


HERMANS = {"miner": "batch_hard", "sampler": "pk", "margin": SOFT, "squared": False}
ALL_CHARACTERS = [characters(name) for name in CHARACTER_METHODS]
CHAPTERS: dict[str, list[Training | Row]] = {  # notebook → what it trains, in its order
    "01_why_few_shot": [],
    "02_pairs_and_triplets": [],
    "03_siamese_contrastive": [train("siamese", 2, miner="random", val=True),
                               train("siamese", 2, val=True), row("siamese", 2)],
    "04_triplet_loss": [train("triplet", 2, miner="random", val=True), train("triplet", 2, val=True),
                        *(train("triplet", 2, margin=m, epochs=0.5) for m in (0.1, 1.0, 10.0)),
                        row("siamese", 2), row("triplet", 2)],
    "05_mining": [train("triplet", 2, val=True), row("triplet", 2),
                  row("triplet", 2, miner="batch_hard"), row("triplet", 2, **HERMANS),
                  row("triplet", 32), row("triplet", 32, miner="semi_hard"),
                  row("triplet", 32, **HERMANS),
                  train("softmax+triplet", 2, miner="batch_hard", val=True)],
    "06_margin_losses": [row("normsoftmax", 2), row("cosface", 2), row("arcface", 2),
                         train("sphereface", 2, val=True), train("softmax", 2, val=True),
                         train("arcface", 2, scale=64.0, margin=0.5, val=True),
                         train("arcface", 3), row("cosface", 32), row("arcface", 32),
                         row("triplet", 32)],
    "07_comparing_embeddings": [*(row(m, d) for d in (2, 32)
                                  for m in ("softmax", "siamese", "triplet", "arcface")),
                                *(train(m, 2, miner=miner, val=True) for miner in ("random", "all")
                                  for m in ("triplet", "softmax+triplet")),
                                row("softmax+triplet", 2)],
    # and the runs its defaults were chosen against (its section "What the validation ... chose")
    "08_one_shot_characters": [*ALL_CHARACTERS, *(characters(n) for n in CHARACTER_ALTERNATIVES)],
    "09_enrol_and_verify": [characters("protonet"), *ALL_CHARACTERS,
                            train("softmax", CHARACTER_DIM, "characters"), train("triplet", 32, "seen")],
    "10_where_next": [*(row(m, 32) for m in ("softmax", "siamese", "triplet", "arcface")),
                      row("triplet", 32, **HERMANS), *ALL_CHARACTERS,
                      train("softmax", CHARACTER_DIM, "characters")],
    # chapter 9's character models again (fewshot.export.build_demo picks one): all cached by then
    "11_try_it_in_your_browser": [*ALL_CHARACTERS, train("softmax", CHARACTER_DIM, "characters")],
}


def expand(items: list[Training | Row], seeds: int) -> list[Training]:
    """The chapter's trainings with each :class:`Row` expanded over ``seeds``, and each
    ``softmax+triplet`` preceded by the softmax model it starts from (cached on its own)."""
    out: list[Training] = []
    for item in items:
        for t in item.trainings(seeds) if isinstance(item, Row) else [item]:
            if t.method == "softmax+triplet":
                out.append(replace(t, method="softmax", settings=()))
            out.append(t)
    return out


def cost(t: Training) -> float:
    """Time per training image of ``t`` relative to the probe (:func:`throughput`)."""
    miner = t.miner if t.miner is not None else default_miner(t.method)
    if t.method in ("triplet", "softmax+triplet") and miner == "all":
        return BATCH_ALL_COST
    return TRAINING_COST


@dataclass
class Planned:
    """One training in a plan: its spec, images per epoch, estimated seconds, whether it is free
    (already in the cache, or trained by an earlier chapter), and its cache file if known."""

    training: Training
    images: int
    seconds: float
    free: str = ""  # "", "cached" or "earlier"
    path: Path | None = None


@dataclass
class ChapterPlan:
    chapter: str
    models: list[Planned] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(m.seconds for m in self.models if not m.free)

    @property
    def trained(self) -> int:
        return sum(not m.free for m in self.models)


def training_seconds(t: Training, images: int, val_images: int, profile: Profile,
                     rate: float) -> float:
    """Estimated seconds for ``t`` on ``images`` training images (``val_images`` validation
    images per epoch if ``t.val``) at ``rate`` probe images per second."""
    if rate <= 0 or images < 0:
        raise ValueError(f"rate={rate!r}, images={images!r}: expected rate > 0 and images ≥ 0")
    epochs = max(1, int(profile.epochs * t.epochs))
    if t.method == "softmax+triplet":  # the fine-tuning only: its softmax model is planned apart
        epochs = max(1, int(epochs * FINETUNE_EPOCHS))
    per_epoch = images * cost(t) + (val_images * VALIDATION_COST if t.val else 0)
    return epochs * per_epoch / rate


def plan(chapters: dict[str, list[Training | Row]], profile: Profile, rate: float,
         sizes: dict[str, int], val_images: int,
         locate: Callable[[Training], Path | None] = lambda t: None) -> list[ChapterPlan]:
    """Per chapter, in order: each training's estimated seconds; free if an earlier chapter
    trains it, or if its cache file ``locate(t)`` exists. ``sizes``: training images per epoch
    for each of :data:`DATA`."""
    seen: set[Training] = set()
    plans = []
    for chapter, items in chapters.items():
        cp = ChapterPlan(chapter)
        for t in expand(items, profile.seeds):
            images, path = sizes[t.data], locate(t)
            free = "earlier" if t in seen else "cached" if path is not None and path.exists() else ""
            seen.add(t)
            cp.models.append(Planned(t, images, training_seconds(t, images, val_images, profile,
                                                                  rate), free, path))
        plans.append(cp)
    return plans


def measured(plans: list[ChapterPlan], ledger: list[dict]) -> tuple[list[float], float]:
    """Seconds a run's ledger spent training each chapter's planned models (matched by cache
    file name), and the seconds of trained models no chapter plans."""
    owner = {m.path.name: i for i, cp in enumerate(plans) for m in cp.models
             if m.path is not None and m.free != "earlier"}
    per_chapter, other = [0.0] * len(plans), 0.0
    for e in ledger:
        if not e["cached"]:
            i = owner.get(f"{e['name']}-{e['key']}.pt")
            if i is None:
                other += e["seconds"]
            else:
                per_chapter[i] += e["seconds"]
    return per_chapter, other


def cache_path(t: Training, images: torch.Tensor, labels: torch.Tensor,
               val: tuple[torch.Tensor, torch.Tensor] | None, run: Run) -> Path:
    """The cache file :func:`fewshot.recipes.train_method` reads and writes for ``t`` on this data
    in ``run`` (the same spec and key: ``tests/test_plan.py`` checks they agree)."""
    spec = t.spec(run)
    return cache.default().path_for(spec.name, cache_key(spec, images, labels, val))


def throughput(batch: int, seconds: float = 2.0, step: str = "softmax",
               channels_last: bool = True) -> float:
    """Training images per second of the book's CNN (``EmbeddingNet(32)``) for about ``seconds``
    after two warm-up steps, with the current thread count: ``step="softmax"`` (a 10-class
    classifier, cross-entropy: the network's own cost, the plan's probe) or ``"triplet"`` (every
    triplet of the batch: ``benchmarks/bench_train.py``'s table), in ``channels_last`` as
    :func:`fewshot.train.fit` trains, or the default layout."""
    if step not in ("softmax", "triplet"):
        raise ValueError(f"step={step!r}: expected 'softmax' or 'triplet'")
    torch.manual_seed(0)
    model = EmbeddingNet(32) if step == "triplet" else ClassificationNet(EmbeddingNet(32), 10)
    images = torch.randn(batch, 1, 28, 28)
    labels = torch.arange(batch) % 10
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    step_fn = (metric_step(TripletLoss(1.0), lambda emb, y: all_triplets(y)) if step == "triplet"
               else class_step)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    done, start = -2, 0.0
    while True:
        if done == 0:
            start = time.perf_counter()
        loss = step_fn(model, images, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done += 1
        if done > 0 and time.perf_counter() - start > seconds:
            return done * batch / (time.perf_counter() - start)


def run_plan(run: Run, rate: float | None = None, probe_seconds: float = 2.0,
             fresh: bool = False) -> tuple[list[ChapterPlan], float]:
    """The plan for this run: its data sizes and profile, this machine's probed rate, and the
    model cache as it is now (``fresh``: as if empty). Returns the chapters' plans and the rate."""
    profile = run.profile
    x, y = run.mnist("train")
    xt, yt = run.mnist("test")
    seen_x, seen_y = split_classes(x, y, DEFAULT_UNSEEN)[0]
    cx, cy = run.characters(BACKGROUND_SPLIT)
    data = {"digits": (x, y), "seen": (seen_x, seen_y), "characters": (cx, cy)}
    rate = throughput(profile.batch_size, probe_seconds) if rate is None else rate

    def locate(t: Training) -> Path | None:
        images, labels = data[t.data]
        path = cache_path(t, images, labels, (xt, yt) if t.val else None, run)
        return path if cache.default().enabled and not fresh else _as_if_absent(path)

    sizes = {k: len(v[1]) for k, v in data.items()}
    return plan(CHAPTERS, profile, rate, sizes, len(yt), locate), rate


def _as_if_absent(path: Path) -> Path:
    """``path`` as a name only (it never exists): the plan of an empty cache still knows each
    model's file, to match a ledger."""
    return Path("/nonexistent-fewshot-plan") / path.name


def format_plan(plans: list[ChapterPlan], rate: float, profile: Profile,
                ledger: list[dict] | None = None) -> str:
    """The plan as a plain-text table: chapter, models to train (and free ones), estimated time;
    with a ``ledger``, the seconds it measured and the ratio estimate / measured."""
    lines = [f"{profile.name} profile: this machine trains about {rate:,.0f} images/s (a probe); "
             "estimated training time per chapter, in book order:",
             f"{'chapter':<28}{'train':>6}{'free':>6}{'estimate':>11}"
             + (f"{'measured':>11}{'ratio':>7}" if ledger is not None else "")]
    got, other = measured(plans, ledger or [])
    for cp, seconds in zip(plans, got):
        line = (f"{cp.chapter:<28}{cp.trained:>6}{len(cp.models) - cp.trained:>6}"
                f"{_duration(cp.seconds):>11}")
        if ledger is not None:
            line += f"{_duration(seconds):>11}" + (f"{cp.seconds / seconds:>7.2f}" if seconds else "")
        lines.append(line)
    total = sum(cp.seconds for cp in plans)
    line = (f"{'all':<28}{sum(cp.trained for cp in plans):>6}"
            f"{sum(len(cp.models) - cp.trained for cp in plans):>6}{_duration(total):>11}")
    if ledger is not None:
        line += f"{_duration(sum(got)):>11}" + (f"{total / sum(got):>7.2f}" if sum(got) else "")
    lines.append(line)
    if ledger is not None and other:
        lines.append(f"the ledger also trained {other:.0f} s of models no chapter plans")
    lines.append("free: already in the model cache, or trained by an earlier chapter. Training "
                 "only: evaluation and figures come on top.")
    return "\n".join(lines)


def plan_json(plans: list[ChapterPlan], rate: float) -> str:
    return json.dumps({"rate": rate, "chapters": [
        {"chapter": cp.chapter, "seconds": round(cp.seconds, 1), "trained": cp.trained,
         "free": len(cp.models) - cp.trained} for cp in plans]}, indent=2)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"

"""The book's methods by name: :func:`build` a model and its training step, :func:`train_method`.

========================  ======================  ===========================================
method                    model                   step (loss)
========================  ======================  ===========================================
``softmax``               ClassificationNet       class_step (cross-entropy)
``siamese``               SiameseNet              metric_step (contrastive, pairs from a miner)
``triplet``               TripletNet              metric_step (triplet, triplets from a miner)
``softmax+triplet``       ``softmax``, then its embedding net fine-tuned as ``triplet``
``normsoftmax`` …         HeadNet + margin head   class_step (``cosface``, ``arcface``, ``sphereface``)
``protonet``              EmbeddingNet            episode_step (prototypical loss on episodes)
``supcon``                EmbeddingNet            embedding_step (supervised contrastive)
========================  ======================  ===========================================

What a model is, completely, is a :class:`~fewshot.spec.TrainSpec` (method, size, schedule and
the method's own typed settings); ``run.spec("triplet", dim=32)`` makes one at the run's profile
and seed, and ``train_method(spec, images, labels)`` trains it.

Miners (:mod:`fewshot.miners`): ``"all"`` (every pair / triplet in the batch, the default),
``"random"`` (a few random ones per batch: the naive baseline), ``"hardest_negative"`` (pairs),
``"batch_hard"`` and ``"semi_hard"`` (triplets). Samplers: ``"random"`` batches, or ``"pk"``
(P classes × K images per batch).

Every training is cached on disk (:mod:`fewshot.cache`), keyed by the whole spec, the data and the
source of every module that decides what training produces, so no chapter trains a model another
chapter already trained. Models drawn in 2-D or 3-D keep snapshots of their weights at
``Profile.frames`` epochs, for widgets that step through training.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .cache import ModelCache, default as default_cache, make_key
from .checks import check_choice, check_images_labels, check_int
from .config import generator, get_device, seed_everything
from .episodes import EpisodeBatches
from .evaluate import retrieval_metrics
from .losses import ContrastiveLoss, SupConLoss, TripletLoss
from .margins import HEADS, max_margin_2d, scale_lower_bound, sphereface_lambda
from .miners import (PKSampler, all_pairs, all_triplets, batch_hard, hardest_negative_pairs,
                     random_pairs, random_triplets, semi_hard)
from .models import ClassificationNet, EmbeddingNet, HeadNet, SiameseNet, TripletNet, embed
from .spec import (MARGIN_METHODS, METHODS, METRIC_METHODS, PAIR_MINERS, SAMPLERS, SOFT,  # noqa: F401
                   TRIPLET_MINERS, TrainSpec)  # METHODS, SAMPLERS: named here too, beside the table
from .train import (History, Step, class_step, embedding_step, episode_step, fit, metric_step,
                    shifted)

DEFAULT_MARGIN = 1.0  # contrastive and triplet, on raw (unnormalised) embeddings
FINETUNE_LR_FACTOR = 0.1  # softmax+triplet: fine-tune at a tenth of the learning rate
PK_MIN_K = 4  # "pk" sampler: at least 4 images per class in a batch
PROTONET = {"n_way": 20, "k_shot": 5, "n_query": 5}  # training episodes (n_way capped by the classes)

# the modules whose code decides what a trained model is; a change to any of them retrains
TRAINING_MODULES = ("checks", "config", "distances", "episodes", "evaluate", "losses", "margins",
                    "miners", "models", "recipes", "spec", "train")


def metric_of(method: str) -> str:
    """The distance a method's embedding is meant for: cosine for the margin heads and for
    ``supcon`` (both train on normalised embeddings), else Euclidean. Where a validation split
    exists, it chooses instead (:func:`fewshot.oneshot.choose_metric`)."""
    return "cosine" if method in MARGIN_METHODS or method == "supcon" else "euclidean"


def default_miner(method: str) -> str | None:
    return "all" if method in METRIC_METHODS else None


def margin_head_settings(method: str, embed_dim: int, n_classes: int) -> dict:
    """Scale and margin for a margin head, derived rather than copied from face recognition.

    In 2-D/3-D, face-scale settings (s = 64, m = 0.5) do not train: the CosFace paper's bounds give
    the scale needed for a target-class probability of 0.99, ``s ≥ (C−1)/C · ln((C−1)·0.99/0.01)``,
    and the largest margin that C classes leave room for on a circle, ``1 − cos(2π/C)``. At higher
    dimension the published margins (CosFace 0.35, ArcFace 0.5, SphereFace 4) with a moderate scale.
    """
    low = embed_dim <= 3
    scale = math.ceil(scale_lower_bound(n_classes, 0.99)) if low else 16.0
    settings: dict = {} if method == "sphereface" else {"scale": float(scale)}
    if method == "cosface":
        settings["margin"] = round(max_margin_2d(n_classes), 3) if low else 0.35
    elif method == "arcface":
        settings["margin"] = round(max_margin_2d(n_classes), 3) if low else 0.5
    elif method == "sphereface":
        settings["margin"] = 4
    return settings


SPHEREFACE_LAMBDA = {"base": 1000.0, "minimum": 5.0, "reach": 0.5}


def sphereface_lambda_schedule(epoch: int, epochs: int) -> float:
    """SphereFace's λ at the start of epoch ``epoch`` (0-based) of an ``epochs``-epoch run.

    The reference code steps ``λ = max(5, 1000/(1 + 0.12·iteration))`` per *iteration*: it
    reaches 5 after ~1,660 iterations, early in a 28k-iteration face run. Our runs are ~10
    epochs of ~60 batches, and those constants stepped per epoch would leave λ ≥ 450 (plain
    softmax) all run. We keep the same hyperbola but fit its rate to the run, so λ falls from
    1000 to its minimum 5 by the middle of the run (``reach``) and stays there::

        λ(e) = max(5, 1000 / (1 + γ·e)),   γ = (1000/5 − 1) / (reach·epochs)
    """
    epoch = check_int(epoch, "epoch", 0)
    epochs = check_int(epochs, "epochs", 0)
    base, low, reach = (SPHEREFACE_LAMBDA[k] for k in ("base", "minimum", "reach"))
    gamma = (base / low - 1) / max(1.0, reach * epochs)
    return sphereface_lambda(epoch, base=base, gamma=gamma, minimum=low)


def make_miner(name: str, method: str, seed: int) -> Callable:
    """The miner ``name`` as ``miner(embeddings, labels) → indices`` (random ones seeded)."""
    pairs = method == "siamese"
    check_choice(name, "miner", PAIR_MINERS if pairs else TRIPLET_MINERS)
    g = generator(seed)
    if name == "all":
        return (lambda emb, y: all_pairs(y)) if pairs else (lambda emb, y: all_triplets(y))
    if name == "random":
        return (lambda emb, y: random_pairs(y, g)) if pairs else (lambda emb, y: random_triplets(y, g))
    if name == "hardest_negative":
        return hardest_negative_pairs
    if name == "batch_hard":
        return batch_hard
    return semi_hard


@dataclass
class Recipe:
    """What :func:`build` makes: the model, its training step and the extra ``fit`` arguments."""

    model: nn.Module
    step: Step
    on_epoch: Callable[[int, nn.Module], None] | None = None


def _loss_settings(spec: TrainSpec, *names: str) -> dict:
    return {n: getattr(spec, n) for n in names if getattr(spec, n) is not None}


def build(spec: TrainSpec, n_classes: int) -> Recipe:
    """The model and training step for ``spec`` on ``n_classes`` classes (see the module table).

    SphereFace's λ schedule (:func:`sphereface_lambda_schedule`) is fitted to ``spec.epochs``.
    """
    method, embed_dim = spec.method, spec.embed_dim
    net = EmbeddingNet(embed_dim)
    if method == "softmax":
        return Recipe(ClassificationNet(net, n_classes), class_step)
    if method in METRIC_METHODS:
        margin = DEFAULT_MARGIN if spec.margin is None else spec.margin
        margin = "soft" if margin is SOFT else margin  # the loss's own spelling
        if method == "siamese":
            loss = ContrastiveLoss(margin, **_loss_settings(spec, "reduction", "normalize"))
            model = SiameseNet(net)
        else:
            loss = TripletLoss(margin, **_loss_settings(spec, "reduction", "squared"))
            model = TripletNet(net)
        kind = "siamese" if method == "siamese" else "triplet"
        return Recipe(model, metric_step(loss, make_miner(spec.miner, kind, spec.seed)))
    if method in MARGIN_METHODS:
        settings = {**margin_head_settings(method, embed_dim, n_classes),
                    **_loss_settings(spec, "scale", "margin")}
        head = HEADS[method](embed_dim, n_classes, **settings)
        model = HeadNet(net, head)
        on_epoch = None
        warmup, epochs = spec.warmup or 0, spec.epochs  # warm-up: the margin ramps up from 0
        if method == "sphereface":
            head.lam = sphereface_lambda_schedule(0, epochs)

            def on_epoch(epoch: int, m: nn.Module, _head: nn.Module = head) -> None:
                # λ for the next epoch: anneal the softmax blending towards the pure margin
                _head.lam = sphereface_lambda_schedule(epoch + 1, epochs)
        elif warmup:
            head.margin_scale = 0.0

            def on_epoch(epoch: int, m: nn.Module, _head: nn.Module = head) -> None:
                _head.margin_scale = min(1.0, (epoch + 1) / warmup)  # margin for the next epoch
        return Recipe(model, class_step, on_epoch)
    if method == "supcon":
        return Recipe(net, embedding_step(SupConLoss(**_loss_settings(spec, "temperature"))))
    return Recipe(net, episode_step(_episode(spec)["k_shot"]))


def _episode(spec: TrainSpec) -> dict[str, int]:
    """protonet's training episode shape: the spec's, else :data:`PROTONET`'s."""
    return {k: v if getattr(spec, k) is None else getattr(spec, k) for k, v in PROTONET.items()}


def precision_validator(images: torch.Tensor, labels: torch.Tensor, metric: str = "euclidean"
                        ) -> Callable[[nn.Module], dict]:
    """A ``validate`` for :func:`fewshot.train.fit`: precision@1 of ``images`` among themselves."""
    check_images_labels(images, labels)

    def validate(model: nn.Module) -> dict:
        emb = embed(model, images)
        scores = retrieval_metrics(emb, labels, emb, labels, same_set=True, metric=metric)
        return {"val_precision_at_1": scores["precision_at_1"]}

    return validate


def _batch_sampler(spec: TrainSpec, targets: torch.Tensor):
    n_classes = int(targets.max()) + 1
    if spec.method == "protonet":
        ep = _episode(spec)
        n_way = min(ep["n_way"], n_classes)
        per_episode = n_way * (ep["k_shot"] + ep["n_query"])
        return EpisodeBatches(targets, n_way, ep["k_shot"], ep["n_query"],
                              episodes=max(1, len(targets) // per_episode), seed=spec.seed)
    if spec.sampler == "pk":
        p = max(2, min(n_classes, spec.batch_size // PK_MIN_K))
        return PKSampler(targets, p=p, k=max(2, spec.batch_size // p), seed=spec.seed)
    return None


def cache_key(spec: TrainSpec, images: torch.Tensor, labels: torch.Tensor,
              val: tuple[torch.Tensor, torch.Tensor] | None = None) -> str:
    """The model cache's key of ``spec`` on this data: its fields, the data's fingerprint and the
    source of :data:`TRAINING_MODULES` (whether it is validated counts: the history differs)."""
    return make_key({**spec.to_dict(), "val": val is not None},
                          (images, labels, *(val or ())), TRAINING_MODULES)


def train_method(spec: TrainSpec, images: torch.Tensor, labels: torch.Tensor, *,
                 val: tuple[torch.Tensor, torch.Tensor] | None = None,
                 progress: bool | None = None, cache: bool | ModelCache = True
                 ) -> tuple[nn.Module, History]:
    """Train the model ``spec`` describes on ``(images, labels)``, or load it from the cache.

    Args:
        spec: what to train (:class:`~fewshot.spec.TrainSpec`; ``run.spec("siamese")`` makes
            one at the run's profile and seed).
        images, labels: training data; labels may be any integers (mapped to 0..C-1 internally).
        val: ``(images, labels)`` for per-epoch validation precision@1.
        progress: show a progress bar (default: unless ``FEWSHOT_PROGRESS=0``).
        cache: ``True``: load this exact training from the configured model cache if it was done
            before, else save it there (:func:`fewshot.cache.default`); ``False``: train, keep
            nothing; or a :class:`~fewshot.cache.ModelCache` to use.

    Returns:
        ``(model, history)``; the model is in eval mode, on the run's device, and has
        ``get_embedding``. ``history.snapshots`` holds weight snapshots for 2-D/3-D models.
    """
    if not isinstance(spec, TrainSpec):
        raise TypeError(f"spec must be a fewshot.spec.TrainSpec (run.spec(method, ...)), got "
                        f"{type(spec).__name__}")
    check_images_labels(images, labels)
    classes, targets = labels.unique(return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"training needs at least 2 classes, got {classes.tolist()}")
    store = cache if isinstance(cache, ModelCache) else default_cache()  # and its ledger
    key = cache_key(spec, images, labels, val)
    path = store.path_for(spec.name, key)
    use_cache = cache is not False and store.enabled
    epochs, lr = spec.epochs, spec.lr
    if spec.method == "softmax+triplet":  # the softmax model (cached on its own), then fine-tuning
        base_spec = spec.replace(method="softmax", miner=None, margin=None, reduction=None,
                                 squared=None, sampler="random")
        base, _ = train_method(base_spec, images, labels, val=val, progress=progress, cache=cache)
        seed_everything(spec.seed)
        recipe = build(spec.replace(method="triplet"), len(classes))
        recipe.model.embedding_net = copy.deepcopy(base.embedding_net)
        epochs, lr = max(1, epochs // 2), lr * FINETUNE_LR_FACTOR
    else:
        seed_everything(spec.seed)
        recipe = build(spec, len(classes))
    model = recipe.model
    record = spec.to_dict()
    if use_cache:
        saved = store.load(path, model, read_meta=lambda meta: History.from_dict(meta["history"]))
        if saved is not None:
            model.to(get_device()).eval()
            history = saved["meta"]
            history.snapshots = saved["snapshots"]
            store.record(spec.name, key, record, history.seconds, cached=True)
            return model, history
    snapshot_at = _snapshot_epochs(epochs, spec.frames) if spec.embed_dim <= 3 else []
    snapshots = [copy.deepcopy(model.state_dict())] if 0 in snapshot_at else []

    def on_epoch(epoch: int, m: nn.Module) -> None:
        if recipe.on_epoch is not None:
            recipe.on_epoch(epoch, m)
        if epoch + 1 in snapshot_at:
            snapshots.append({k: v.detach().cpu().clone() for k, v in m.state_dict().items()})

    validate = precision_validator(*val, metric=metric_of(spec.method)) if val is not None else None
    step = shifted(recipe.step, spec.shift or 0.0, spec.seed)  # the step itself when unshifted
    history = fit(model, step, images, targets, epochs=epochs, batch_size=spec.batch_size,
                  lr=lr, batch_sampler=_batch_sampler(spec, targets), validate=validate,
                  on_epoch=on_epoch, seed=spec.seed, desc=f"{spec.method} {spec.embed_dim}-D",
                  progress=progress)
    history.snapshots = [{k: v.detach().cpu() for k, v in s.items()} for s in snapshots]
    if use_cache:
        store.save(path, model, {"history": history.to_dict(), "spec": record},
                   snapshots=history.snapshots)
    store.record(spec.name, key, record, history.seconds, cached=False)
    return model, history


def _snapshot_epochs(epochs: int, frames: int) -> list[int]:
    """``frames`` epochs from 0 (before training) to ``epochs``, evenly spaced."""
    if epochs == 0:
        return [0]
    return sorted({round(i * epochs / max(1, frames - 1)) for i in range(frames)})


def snapshot_model(model: nn.Module, state: dict) -> nn.Module:
    """A copy of ``model`` with the weights of one snapshot (for drawing training frames)."""
    copy_ = copy.deepcopy(model)
    copy_.load_state_dict(state)
    return copy_.eval()

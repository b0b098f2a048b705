"""One training loop for every method in the book, and the book's recipes built on it.

* :func:`fit` trains any model on a :class:`~fewshot.pairs.PairDataset` (Siamese),
  :class:`~fewshot.pairs.TripletDataset` (triplet) or ``(images, labels)`` dataset (softmax), with
  Adam, a progress bar, per-epoch validation, and a seeded batch order.
* :func:`train_method` builds and trains one of the book's methods by name, sized by the run profile.
  Trained models are cached on disk (keyed by method, settings, data and the package's source), so a
  chapter that needs a model an earlier chapter trained loads it instead of training it again.
  ``FEWSHOT_CACHE=0`` turns the cache off.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset
from tqdm.auto import tqdm

from .config import DEFAULT_SEED, Profile, get_device, get_profile, seed_everything
from .data import check_images_labels
from .losses import ContrastiveLoss, TripletLoss
from .metrics import retrieval_metrics
from .models import ClassificationNet, EmbeddingNet, SiameseNet, TripletNet
from .pairs import PairDataset, TripletDataset, batch_pairs, batch_triplets

METHODS = ("softmax", "siamese", "triplet", "softmax+triplet")
SAMPLINGS = ("batch", "random")
FINETUNE_LR_FACTOR = 0.1  # fine-tuning a pre-trained net: a tenth of the learning rate
DEFAULT_MARGIN = {"siamese": 1.0, "triplet": 1.0, "softmax+triplet": 1.0}

Step = Callable[[nn.Module, nn.Module, tuple], torch.Tensor]
Validate = Callable[[nn.Module], dict]


@dataclass
class History:
    """What :func:`fit` recorded: mean training loss per epoch, validation numbers per epoch,
    and the seconds spent training (validation excluded)."""

    loss: list[float] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"loss": self.loss, "metrics": self.metrics, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(loss=list(d["loss"]), metrics={k: list(v) for k, v in d["metrics"].items()},
                   seconds=float(d["seconds"]))


def pair_step(model: nn.Module, loss_fn: nn.Module, batch: tuple) -> torch.Tensor:
    """Siamese: ``batch = (x1, x2, target)`` → ``loss_fn(*model(x1, x2), target)``."""
    x1, x2, target = batch
    return loss_fn(*model(x1, x2), target)


def triplet_step(model: nn.Module, loss_fn: nn.Module, batch: tuple) -> torch.Tensor:
    """Triplet: ``batch = (anchor, positive, negative)`` → ``loss_fn(*model(a, p, n))``."""
    return loss_fn(*model(*batch))


def class_step(model: nn.Module, loss_fn: nn.Module, batch: tuple) -> torch.Tensor:
    """Classification: ``batch = (images, labels)`` → ``loss_fn(model(images), labels)``."""
    images, labels = batch
    return loss_fn(model(images), labels)


def batch_pair_step(model: nn.Module, loss_fn: nn.Module, batch: tuple) -> torch.Tensor:
    """Siamese, in-batch: ``batch = (images, labels)``; embed once, compare every pair in the batch."""
    images, labels = batch
    emb = model.get_embedding(images)
    first, second, target = batch_pairs(labels)
    return loss_fn(emb[first], emb[second], target)


def batch_triplet_step(model: nn.Module, loss_fn: nn.Module, batch: tuple) -> torch.Tensor:
    """Triplet, in-batch ("batch all"): ``batch = (images, labels)``; every valid triplet in the batch."""
    images, labels = batch
    emb = model.get_embedding(images)
    anchor, positive, negative = batch_triplets(labels)
    if len(anchor) == 0:  # no class has two images in this batch: nothing to learn from
        return emb.sum() * 0.0
    return loss_fn(emb[anchor], emb[positive], emb[negative])


def default_step(dataset: Dataset) -> Step:
    """The step that fits ``dataset``'s items: pairs, triplets, or (image, label)."""
    if isinstance(dataset, PairDataset):
        return pair_step
    if isinstance(dataset, TripletDataset):
        return triplet_step
    return class_step


def fit(model: nn.Module, loss_fn: nn.Module, dataset: Dataset, *, epochs: int | None = None,
        batch_size: int | None = None, lr: float | None = None,
        optimizer: torch.optim.Optimizer | None = None, step: Step | None = None,
        validate: Validate | None = None, device: torch.device | None = None,
        seed: int = DEFAULT_SEED, desc: str = "training", progress: bool = True) -> History:
    """Train ``model`` on ``dataset`` with ``loss_fn``; sizes default to the run profile.

    Each epoch: datasets with a ``resample(seed)`` method draw fresh pairs/triplets, the items are
    visited in a seeded random order in mini-batches, and ``validate(model)`` (if given) returns
    numbers to record, e.g. ``{"precision_at_1": 0.93}``.

    Args:
        model: the network; moved to ``device``.
        loss_fn: called by ``step`` on the model's outputs.
        dataset: a PairDataset, TripletDataset, or any dataset whose items index with a tensor of
            indices (``TensorDataset(images, labels)``).
        epochs, batch_size, lr: default to ``Profile.epochs``, ``batch_size``, ``lr``.
        optimizer: default ``Adam(model.parameters(), lr)``.
        step: ``step(model, loss_fn, batch) → loss``; default from the dataset type.
        validate: called after every epoch, in eval mode, without gradients.
        seed: seeds the batch order and the resampling.

    Returns:
        A :class:`History`.
    """
    profile = get_profile()
    epochs = profile.epochs if epochs is None else epochs
    batch_size = batch_size or profile.batch_size
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs={epochs!r}: expected an integer ≥ 0")
    if len(dataset) == 0:
        raise ValueError("the dataset is empty")
    device = device or get_device()
    step = step or default_step(dataset)
    model.to(device)
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr or profile.lr)
    g = torch.Generator().manual_seed(seed)
    n = len(dataset)
    steps = max(1, epochs * (n // batch_size + int(n % batch_size >= 2)))  # batches that train
    # cosine decay of the learning rate to 0 over the run: fast early, fine-grained at the end
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps)))
    history = History()
    bar = tqdm(range(epochs), desc=desc, disable=not progress, unit="epoch")
    for epoch in bar:
        start = time.perf_counter()
        if hasattr(dataset, "resample"):
            dataset.resample(seed + 1000 * (epoch + 1))
        model.train()
        total, count = 0.0, 0
        for idx in torch.randperm(len(dataset), generator=g).split(batch_size):
            if len(idx) < 2:  # BatchNorm cannot train on a batch of one
                continue
            batch = tuple(t.to(device, non_blocking=True) for t in dataset[idx])
            loss = step(model, loss_fn, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(idx)
            count += len(idx)
        history.seconds += time.perf_counter() - start
        history.loss.append(total / max(count, 1))
        postfix = {"loss": f"{history.loss[-1]:.4f}"}
        if validate is not None:
            model.eval()
            with torch.no_grad():
                for name, value in validate(model).items():
                    history.metrics.setdefault(name, []).append(float(value))
                    postfix[name] = f"{value:.3f}"
        bar.set_postfix(postfix)
    model.eval()
    return history


@torch.no_grad()
def embed(model: nn.Module, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """``model.get_embedding`` on ``images`` in batches, in eval mode: CPU ``(N, D)``."""
    from .episodes import embed_all

    return embed_all(model.get_embedding, images, batch_size)


def precision_validator(images: torch.Tensor, labels: torch.Tensor) -> Validate:
    """A ``validate`` for :func:`fit`: precision@1 of ``images`` against each other (leave-one-out)."""
    check_images_labels(images, labels)

    def validate(model: nn.Module) -> dict:
        emb = embed(model, images)
        return {"val_precision_at_1": retrieval_metrics(emb, labels, emb, labels, same_set=True)["precision_at_1"]}

    return validate


# ----------------------------------------------------------------------------------------------
# The book's recipes, by name, with a disk cache


def build(method: str, embed_dim: int, n_classes: int, margin: float | None = None
          ) -> tuple[nn.Module, nn.Module]:
    """The model and loss for ``method``: ``softmax`` | ``siamese`` | ``triplet``."""
    net = EmbeddingNet(embed_dim)
    if method == "softmax":
        return ClassificationNet(net, n_classes), nn.CrossEntropyLoss()
    if method == "siamese":
        return SiameseNet(net), ContrastiveLoss(DEFAULT_MARGIN["siamese"] if margin is None else margin)
    if method in ("triplet", "softmax+triplet"):
        return TripletNet(net), TripletLoss(DEFAULT_MARGIN["triplet"] if margin is None else margin)
    raise ValueError(f"unknown method {method!r}: expected one of {METHODS}")


def cache_dir() -> Path:
    """Where trained models are cached: ``FEWSHOT_CACHE_DIR`` or ``~/.cache/fewshot/models``."""
    default = Path.home() / ".cache" / "fewshot" / "models"
    return Path(os.environ.get("FEWSHOT_CACHE_DIR", default))


def _cache_enabled() -> bool:
    return os.environ.get("FEWSHOT_CACHE", "1").strip().lower() not in {"0", "false", "no", "off"}


# the modules whose code decides what a training run produces; a change to any of them retrains
TRAINING_MODULES = ("config.py", "data.py", "models.py", "losses.py", "pairs.py", "train.py")


def _source_hash() -> str:
    h = hashlib.sha256()
    for name in TRAINING_MODULES:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]


def _cache_key(spec: dict, *tensors: torch.Tensor) -> str:
    h = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(_source_hash().encode())
    return h.hexdigest()[:24]


def train_method(method: str, images: torch.Tensor, labels: torch.Tensor, *, embed_dim: int = 2,
                 margin: float | None = None, sampling: str = "batch", epochs: int | None = None,
                 profile: Profile | None = None,
                 val: tuple[torch.Tensor, torch.Tensor] | None = None, seed: int = DEFAULT_SEED,
                 cache: bool = True, progress: bool = True) -> tuple[nn.Module, History]:
    """Build and train one of the book's methods on ``(images, labels)``.

    Methods:
        ``softmax``: the embedding net plus a linear classifier, cross-entropy.
        ``siamese``: a Siamese net, contrastive loss.
        ``triplet``: a triplet net, triplet loss.
        ``softmax+triplet``: the tutorial's advice: take the ``softmax`` model, then fine-tune its
        embedding net with triplet loss for half the epochs, at a tenth of the learning rate.

    Args:
        images, labels: training data; labels may be any integers (mapped to 0..C-1 for softmax).
        embed_dim: embedding size. margin: for contrastive/triplet losses (default 1.0).
        sampling: where pairs and triplets come from (ignored for ``softmax``).
            ``"batch"``: every pair / valid triplet inside each random mini-batch of images, the batch
            embedded once. ``"random"``: fresh random pairs / triplets each epoch
            (:class:`~fewshot.pairs.PairDataset`, :class:`~fewshot.pairs.TripletDataset`), N/2 pairs
            or N/3 triplets for N images, so that an epoch costs the same N forward passes.
        epochs: default ``profile.epochs``. profile: default the run's profile.
        val: ``(images, labels)`` for per-epoch validation precision@1.
        cache: load a cached result if this exact training was done before, else save it.

    Returns:
        ``(model, history)``; the model is in eval mode and has ``get_embedding``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: expected one of {METHODS}")
    if sampling not in SAMPLINGS:
        raise ValueError(f"unknown sampling {sampling!r}: expected one of {SAMPLINGS}")
    if method == "softmax":
        sampling = "batch"  # irrelevant: keep one cache entry
    check_images_labels(images, labels)
    profile = profile or get_profile()
    epochs = profile.epochs if epochs is None else epochs
    classes, targets = labels.unique(return_inverse=True)
    spec = {"method": method, "embed_dim": embed_dim, "margin": margin, "sampling": sampling,
            "epochs": epochs,
            "batch_size": profile.batch_size, "lr": profile.lr, "seed": seed,
            "val": val is not None}
    use_cache = cache and _cache_enabled()
    key = _cache_key(spec, images, labels, *(val or ()))  # val: the cached history holds its scores
    name = f"{method.replace('+', '_')}-{sampling}-{embed_dim}d-{key}.pt"
    path = cache_dir() / name
    if method == "softmax+triplet":
        base, _ = train_method("softmax", images, labels, embed_dim=embed_dim, epochs=epochs,
                               profile=profile, val=val, seed=seed, cache=cache, progress=progress)
        model, loss_fn = build("triplet", embed_dim, len(classes), margin)
        model.embedding_net = copy.deepcopy(base.embedding_net)
        epochs = max(1, epochs // 2)
        lr = profile.lr * FINETUNE_LR_FACTOR
    else:
        seed_everything(seed)
        model, loss_fn = build(method, embed_dim, len(classes), margin)
        lr = profile.lr
    if use_cache and path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(saved["state_dict"])
        model.to(get_device()).eval()
        if progress:
            print(f"{method} ({embed_dim}-D): loaded from the cache ({path.name}); "
                  f"it trained in {saved['history']['seconds']:.0f} s")
        return model, History.from_dict(saved["history"])
    step: Step | None = None
    if method == "softmax":
        dataset: Dataset = TensorDataset(images, targets)
    elif sampling == "batch":
        dataset = TensorDataset(images, labels)
        step = batch_pair_step if method == "siamese" else batch_triplet_step
    elif method == "siamese":  # N/2 pairs: N images through the network per epoch, like "batch"
        dataset = PairDataset(images, labels, n_pairs=max(2, len(labels) // 2), seed=seed)
    else:  # N/3 triplets: N images per epoch
        dataset = TripletDataset(images, labels, n_triplets=max(1, len(labels) // 3), seed=seed)
    validate = precision_validator(*val) if val is not None else None
    history = fit(model, loss_fn, dataset, epochs=epochs, batch_size=profile.batch_size, lr=lr,
                  step=step, validate=validate, seed=seed, desc=f"{method} {embed_dim}-D",
                  progress=progress)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        state = {k: v.cpu() for k, v in model.state_dict().items()}
        torch.save({"state_dict": state, "history": history.to_dict(), "spec": spec}, tmp)
        os.replace(tmp, path)  # atomic: notebooks running side by side never read half a file
    return model, history

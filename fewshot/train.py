"""``fit``: the one training loop of the book, and the three kinds of step it runs.

A *step* turns one batch into one loss, ``step(model, images, labels) → loss``:

* :func:`metric_step`: embed the batch **once**, let a miner (:mod:`fewshot.miners`) pick pairs or
  triplets as indices into the batch, apply the loss: Siamese/contrastive and triplet training;
* :func:`class_step`: logits and cross-entropy: the softmax baseline and the margin heads;
* :func:`episode_step`: the batch is one N-way episode; prototypical-network loss;
* :func:`embedding_step`: a loss of the whole labelled batch (supervised contrastive).

:func:`shifted` wraps any step so that it sees each batch's images moved by a random few pixels
(data augmentation: the same epochs and batches, a new view of each image every epoch).

:func:`fit` runs any of them with Adam, a cosine learning-rate decay, a seeded batch order, a
progress bar, per-epoch validation, and checks: a non-finite loss stops training with an error
naming the epoch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .checks import check_images_labels, check_int, check_number
from .config import generator, get_device, settings
from .losses import prototypical_loss
from .models import HeadNet

Step = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
Miner = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
Validate = Callable[[nn.Module], dict]


@dataclass
class History:
    """What :func:`fit` recorded: mean training loss per epoch, validation numbers per epoch,
    and the seconds spent training (validation excluded)."""

    loss: list[float] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    snapshots: list[dict] = field(default_factory=list, repr=False, compare=False)  # weights by epoch

    def to_dict(self) -> dict:
        return {"loss": self.loss, "metrics": self.metrics, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(loss=[float(v) for v in d["loss"]],
                   metrics={k: [float(x) for x in v] for k, v in d["metrics"].items()},
                   seconds=float(d["seconds"]))


def metric_step(loss_fn: Callable[..., torch.Tensor], miner: Miner) -> Step:
    """Embed the batch once, mine, apply the loss.

    The miner returns ``(first, second, target)`` for pairs (``target`` float: 1 = same class) or
    ``(anchor, positive, negative)`` indices for triplets; the loss is called as
    ``loss_fn(emb[first], emb[second], target)`` or ``loss_fn(emb[a], emb[p], emb[n])``.

    When the loss reports ``active = (positive terms, terms)`` after each call (the losses of
    :mod:`fewshot.losses` do), ``step.epoch_stats()`` returns the fraction of active terms since
    its last call as ``{"active_fraction": …}``; :func:`fit` records it per epoch.
    """
    counts = [0, 0]

    def step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        emb = model.get_embedding(images)  # (B, D)
        i, j, third = miner(emb, labels)
        if len(i) == 0:  # nothing to learn from in this batch: a zero that still has a graph
            return emb.sum() * 0.0
        if third.is_floating_point():  # pairs: (first, second, target)
            loss = loss_fn(emb[i], emb[j], third)
        else:
            loss = loss_fn(emb[i], emb[j], emb[third])
        active = getattr(loss_fn, "active", None)
        if active is not None:
            counts[0] += active[0]
            counts[1] += active[1]
        return loss

    def epoch_stats() -> dict[str, float]:
        stats = {"active_fraction": counts[0] / counts[1]} if counts[1] else {}
        counts[:] = [0, 0]
        return stats

    step.epoch_stats = epoch_stats
    return step


def embedding_step(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Step:
    """Embed the batch and apply a loss of the whole labelled batch, ``loss_fn(emb, labels)``:
    the supervised contrastive loss (:func:`fewshot.losses.supervised_contrastive`)."""
    def step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return loss_fn(model.get_embedding(images), labels)

    return step


def shifted(step: Step, pixels: float, seed: int = 0) -> Step:
    """``step`` on randomly translated images: each image of each batch moves by its own random
    offset, uniform in ``[-pixels, pixels]`` along x and along y (sub-pixel, bilinear; the edge
    pixels, which are background, fill in). Labels are unchanged. ``pixels=0`` returns ``step``.

    Shapes: images ``(B, C, H, W)``. The offsets come from a generator seeded by ``seed``.
    """
    pixels = check_number(pixels, "pixels", 0.0)
    if pixels == 0:
        return step
    g = torch.Generator().manual_seed(int(seed))

    def shifted_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4:
            raise ValueError(f"shifted: expected images (B, C, H, W), got {tuple(images.shape)}")
        b, _, h, w = images.shape
        offset = (torch.rand(b, 2, generator=g) * 2 - 1) * pixels  # (B, 2) pixels, x then y
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        theta[:, :, 2] = offset * 2 / torch.tensor([w, h])  # in affine_grid's [-1, 1] units
        grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
        moved = F.grid_sample(images, grid, padding_mode="border", align_corners=False)
        return step(model, moved, labels)

    if hasattr(step, "epoch_stats"):
        shifted_step.epoch_stats = step.epoch_stats
    return shifted_step


def class_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Classification: ``cross_entropy(logits, labels)``; labels are 0..C-1.

    A margin head (:class:`~fewshot.models.HeadNet`) is called with the labels, so it can apply its
    margin to each row's target class; a plain classifier with the images alone.
    """
    logits = model(images, labels) if isinstance(model, HeadNet) else model(images)
    return F.cross_entropy(logits, labels)


def episode_step(k_shot: int) -> Step:
    """Prototypical networks: the batch is one episode, ``N·(K+Q)`` images laid out class by class
    (each class's K support images, then its Q queries: :class:`~fewshot.episodes.EpisodeBatches`)."""
    check_int(k_shot, "k_shot")

    def step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        n_way = int(labels.unique().numel())
        emb = model.get_embedding(images).view(n_way, len(labels) // n_way, -1)  # (N, K+Q, D)
        return prototypical_loss(emb[:, :k_shot], emb[:, k_shot:])

    return step


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def fit(model: nn.Module, step: Step, images: torch.Tensor, labels: torch.Tensor, *, epochs: int,
        batch_size: int, lr: float, batch_sampler: Iterable[list[int]] | None = None,
        optimizer: torch.optim.Optimizer | None = None, validate: Validate | None = None,
        on_epoch: Callable[[int, nn.Module], None] | None = None, seed: int = 0, desc: str = "training",
        progress: bool | None = None) -> History:
    """Train ``model`` on ``(images, labels)`` with ``step``; return a :class:`History`.

    Each epoch visits the data in mini-batches (a seeded random order, or ``batch_sampler``'s
    batches: P×K batches, episodes), runs ``step`` on each, and takes an Adam step. The learning rate
    decays along a cosine to 0 over the run. After each epoch ``validate(model)`` (in eval mode,
    without gradients) may return numbers to record, and ``on_epoch(epoch, model)`` may look at or
    adjust the model (anneal a margin, record a frame).

    Args:
        model: the network; moved to the run's device (:func:`fewshot.config.get_device`).
        step: ``step(model, images, labels) → loss`` (:func:`metric_step`, :func:`class_step`, …).
        images, labels: ``(N, ...)`` finite images and ``(N,)`` integer labels.
        epochs: ≥ 0. batch_size: ≥ 2 (a batch of one cannot train BatchNorm). lr: > 0.
        batch_sampler: yields lists of indices per batch; its length is the batches per epoch.
        optimizer: default ``Adam(model.parameters(), lr)``.
        seed: seeds the batch order.
        progress: show a progress bar (default: unless ``FEWSHOT_PROGRESS=0``).

    Raises:
        ValueError: for bad arguments, NaN images, or a loss that stops being finite (naming the epoch).
    """
    check_images_labels(images, labels)
    epochs = check_int(epochs, "epochs", 0)
    batch_size = check_int(batch_size, "batch_size", 1)
    check_number(lr, "lr", 0.0, strict=True)
    if len(labels) == 0:
        raise ValueError("the dataset is empty")
    if batch_size < 2 and _has_batchnorm(model) and batch_sampler is None:
        raise ValueError(f"batch_size={batch_size}: a batch of one cannot train BatchNorm; use ≥ 2")
    device = get_device()
    progress = settings().progress if progress is None else progress
    # channels_last: the book's CNN trains 1.1–1.2× faster in it on a CPU (benchmarks/bench_train.py)
    layout = torch.channels_last if images.ndim == 4 else torch.contiguous_format
    model.to(device, memory_format=layout)
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    g = generator(seed)

    def batches() -> Iterable:
        if batch_sampler is not None:
            return (torch.as_tensor(b) for b in batch_sampler)
        return (b for b in torch.randperm(len(labels), generator=g).split(batch_size) if len(b) >= 2)

    n = len(labels)
    per_epoch = len(batch_sampler) if batch_sampler is not None else n // batch_size + int(n % batch_size >= 2)
    total_steps = max(1, epochs * per_epoch)
    schedule = torch.optim.lr_scheduler.LambdaLR(  # cosine decay to 0: fast early, fine at the end
        optimizer, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, total_steps) / total_steps)))
    history = History()
    bar = tqdm(range(epochs), desc=desc, disable=not progress, unit="epoch", leave=False)
    for epoch in bar:
        start = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        for idx in batches():
            x = images[idx].to(device, non_blocking=True).contiguous(memory_format=layout)
            y = labels[idx].to(device, non_blocking=True)
            loss = step(model, x, y)
            if not torch.isfinite(loss):
                raise ValueError(f"the training loss became {loss.item()} in epoch {epoch + 1} "
                                 f"({desc}); lower the learning rate or check the inputs")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(idx)
            count += len(idx)
        history.seconds += time.perf_counter() - start
        history.loss.append(total / max(count, 1))
        for name, value in getattr(step, "epoch_stats", dict)().items():
            history.metrics.setdefault(name, []).append(float(value))
        postfix = {"loss": f"{history.loss[-1]:.4f}"}
        if validate is not None:
            model.eval()
            with torch.no_grad():
                for name, value in validate(model).items():
                    history.metrics.setdefault(name, []).append(float(value))
                    postfix[name] = f"{value:.3f}"
        if on_epoch is not None:
            on_epoch(epoch, model)
        bar.set_postfix(postfix)
    # hand the model back in the default layout (models.embed switches layouts on its own)
    model.to(memory_format=torch.contiguous_format).eval()
    return history

"""The book's networks: one small embedding CNN, and the ways it is wrapped for training.

* :class:`EmbeddingNet`: image ``(B, 1, 28, 28)`` → embedding ``(B, embed_dim)``.
* :class:`SiameseNet`: two inputs through the *same* embedding net (shared weights).
* :class:`TripletNet`: three inputs through the same embedding net.
* :class:`ClassificationNet`: the embedding net plus a linear classifier (the softmax baseline).
* :class:`HeadNet`: the embedding net plus a margin head (:mod:`fewshot.margins`), one module, so
  the optimiser sees the head's class weights too.

All of them have ``get_embedding(x)``: after training, that is the only part we keep.
:func:`embed` runs it over many images in batches.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

from .checks import check_finite, check_int, check_tensor

EmbedFn = Callable[[torch.Tensor], torch.Tensor]


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.LeakyReLU(0.1))


class EmbeddingNet(nn.Module):
    """Conv 1→32, 32→32 (stride 2), 32→64, 64→64 (stride 2), each 3×3 with BatchNorm and
    LeakyReLU(0.1), then Linear 64·7·7 → ``embed_dim``.

    Args:
        embed_dim: size of the embedding (2 for the book's maps).

    Shapes: ``(B, 1, 28, 28)`` → ``(B, embed_dim)``.
    """

    def __init__(self, embed_dim: int = 2) -> None:
        super().__init__()
        if not isinstance(embed_dim, int) or embed_dim < 1:
            raise ValueError(f"embed_dim={embed_dim!r}: expected an integer ≥ 1")
        self.embed_dim = embed_dim
        self.features = nn.Sequential(_conv(1, 32), _conv(32, 32, 2), _conv(32, 64), _conv(64, 64, 2))
        self.fc = nn.Linear(64 * 7 * 7, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"expected images of shape (B, 1, 28, 28), got {tuple(x.shape)}")
        return self.fc(self.features(x).flatten(1))

    def get_embedding(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)


class SiameseNet(nn.Module):
    """Two images through one shared embedding net: ``forward(x1, x2) → (e1, e2)``."""

    def __init__(self, embedding_net: nn.Module) -> None:
        super().__init__()
        self.embedding_net = embedding_net

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.embedding_net(x1), self.embedding_net(x2)

    def get_embedding(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding_net(x)


class TripletNet(nn.Module):
    """Three images through one shared embedding net: ``forward(a, p, n) → (ea, ep, en)``."""

    def __init__(self, embedding_net: nn.Module) -> None:
        super().__init__()
        self.embedding_net = embedding_net

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.embedding_net(anchor), self.embedding_net(positive), self.embedding_net(negative)

    def get_embedding(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding_net(x)


class ClassificationNet(nn.Module):
    """The embedding net plus a linear classifier: ``forward(x) → logits (B, n_classes)``.

    The embedding goes through a PReLU before the classifier, as in the tutorial this book grew from,
    so the 2-D map (``get_embedding``) is the layer the classifier reads.
    """

    def __init__(self, embedding_net: nn.Module, n_classes: int = 10) -> None:
        super().__init__()
        if not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"n_classes={n_classes!r}: expected an integer ≥ 2")
        self.embedding_net = embedding_net
        self.nonlinear = nn.PReLU()
        self.classifier = nn.Linear(embedding_net.embed_dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, 28, 28) → logits (B, n_classes)``."""
        return self.classifier(self.nonlinear(self.embedding_net(x)))

    def get_embedding(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding_net(x)


class HeadNet(nn.Module):
    """The embedding net plus a margin head: ``forward(x, labels=None) → logits (B, n_classes)``.

    ``head(embeddings, labels)`` applies its margin to each row's target class when ``labels`` is
    given (training) and returns plain scaled-cosine logits without (prediction). Wrapping both in
    one module is what puts the head's class weights into ``model.parameters()``, so the optimiser
    trains them: a known pitfall when the head is kept outside.
    """

    def __init__(self, embedding_net: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.embedding_net = embedding_net
        self.head = head

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.embedding_net(x), labels)

    def get_embedding(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding_net(x)


@contextmanager
def channels_last(model: nn.Module) -> Iterator[None]:
    """Run ``model``'s convolutions in the channels-last layout, then give back its own weights.

    The book's CNN embeds about 1.6× faster this way with 2 CPU threads, 1.1× with one
    (``benchmarks/bench_train.py``, inference table); training uses the layout too
    (:func:`fewshot.train.fit`). The weights are switched for the duration and the caller's exact
    tensors restored afterwards, so a model mid-training or loaded from the cache is left as it
    was, and every embedding is computed the same way whichever layout the model was in (fresh and
    cached models agree to the bit).
    """
    saved = {p: p.data for p in model.parameters() if p.dim() == 4}
    for p, data in saved.items():  # a fresh copy with canonical strides, whatever the layout was
        p.data = torch.empty_like(data, memory_format=torch.channels_last).copy_(data)
    try:
        yield
    finally:
        for p, data in saved.items():
            p.data = data


def module_of(fn: nn.Module | EmbedFn) -> nn.Module | None:
    """The module behind ``fn``: the module itself, or the owner of a bound method
    (``model.get_embedding``); ``None`` for any other function."""
    if isinstance(fn, nn.Module):
        return fn
    owner = getattr(fn, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


def _device_of(module: nn.Module) -> torch.device:
    first = next(module.parameters(), None)
    first = next(module.buffers(), None) if first is None else first
    return first.device if first is not None else torch.device("cpu")


@torch.no_grad()
def embed(model: nn.Module | EmbedFn, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Embeddings of ``images`` in batches, on the model's device, returned on the CPU: ``(N, D)``.

    Modules run in eval mode with their convolutions in the channels-last layout
    (:func:`channels_last`).

    Args:
        model: a module with ``get_embedding`` (put in eval mode), or any function
            ``(B, ...) → (B, D)``, e.g. ``lambda x: x.flatten(1)`` for raw pixels. A method of a
            module (``model.get_embedding``, as a :class:`~fewshot.verify.Gallery` holds it) runs
            on that module's device in eval mode, and the module's mode is restored after.
        images: ``(N, ...)``.

    Raises:
        ValueError: if the embedding has the wrong number of rows or holds NaN/inf.
    """
    check_tensor(images, "images")
    batch_size = check_int(batch_size, "batch_size")
    if isinstance(model, nn.Module):
        model.eval()
        with channels_last(model):
            return _embed_batches(model.get_embedding, images, batch_size, _device_of(model))
    owner = module_of(model)
    if owner is None:
        return _embed_batches(model, images, batch_size, torch.device("cpu"))
    was_training = owner.training
    owner.eval()
    try:
        return _embed_batches(model, images, batch_size, _device_of(owner))
    finally:
        owner.train(was_training)


def _embed_batches(fn: EmbedFn, images: torch.Tensor, batch_size: int,
                   device: torch.device) -> torch.Tensor:
    out = []
    for i in range(0, len(images), batch_size):
        chunk = images[i:i + batch_size]
        e = fn(chunk.to(device))
        if not isinstance(e, torch.Tensor) or len(e) != len(chunk):
            rows = len(e) if isinstance(e, torch.Tensor) else type(e).__name__
            raise ValueError(f"the embedding returned {rows} rows for {len(chunk)} images: "
                             f"expected {len(chunk)} rows (B, D)")
        out.append(e.float().cpu().reshape(len(chunk), -1))
    if not out:
        raise ValueError("no images to embed")
    return check_finite(torch.cat(out), "embeddings")

"""The book's networks: one small embedding CNN, and the ways it is wrapped for training.

* :class:`EmbeddingNet`: image ``(B, 1, 28, 28)`` → embedding ``(B, embed_dim)``.
* :class:`SiameseNet`: two inputs through the *same* embedding net (shared weights).
* :class:`TripletNet`: three inputs through the same embedding net.
* :class:`ClassificationNet`: the embedding net plus a linear classifier (the softmax baseline).

All of them have ``get_embedding(x)``: after training, that is the only part we keep.
"""

from __future__ import annotations

import torch
from torch import nn


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
        return self.classifier(self.nonlinear(self.embedding_net(x)))

    def get_embedding(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding_net(x)

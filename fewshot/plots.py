"""The book's figures: digit grids, episodes, 2-D embedding maps, loss curves.

Every digit has one colour across the whole book (:data:`DIGIT_COLORS`), so maps from different
chapters can be compared at a glance.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .data import MNIST_MEAN, MNIST_STD

DIGIT_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def to_pixels(images: torch.Tensor) -> np.ndarray:
    """Normalised ``(N, 1, 28, 28)`` → 0–1 pixels ``(N, 28, 28)`` for ``imshow``."""
    return (images.detach().cpu().float() * MNIST_STD + MNIST_MEAN).clamp(0, 1).squeeze(1).numpy()


def show_images(images: torch.Tensor, titles: Sequence[str] | None = None, ncols: int = 10,
                size: float = 1.0, title: str | None = None) -> Figure:
    """A grid of digits, optionally titled one by one."""
    pixels = to_pixels(images)
    n = len(pixels)
    if n == 0:
        raise ValueError("no images to show")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * (1.25 if titles else 1)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(pixels[i], cmap="gray_r", vmin=0, vmax=1)
            if titles:
                ax.set_title(titles[i], fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_embeddings(embeddings: torch.Tensor, labels: torch.Tensor, ax: Axes | None = None,
                    title: str | None = None, max_points: int = 3000, legend: bool = True,
                    ticks: bool = False) -> Axes:
    """Scatter a 2-D embedding ``(N, 2)`` coloured by digit (at most ``max_points``, evenly spaced).

    ``ticks=True`` keeps the axis scale visible (to compare the size of maps)."""
    emb = torch.as_tensor(embeddings).detach().cpu().float()
    labels = torch.as_tensor(labels).cpu()
    if emb.ndim != 2 or emb.shape[1] != 2:
        raise ValueError(f"plot_embeddings needs (N, 2) embeddings, got {tuple(emb.shape)}")
    if len(emb) != len(labels):
        raise ValueError(f"{len(emb)} embeddings for {len(labels)} labels")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    keep = torch.linspace(0, len(emb) - 1, min(max_points, len(emb))).long()
    emb, labels = emb[keep], labels[keep]
    for digit in labels.unique().tolist():
        m = labels == digit
        ax.scatter(emb[m, 0], emb[m, 1], s=4, alpha=0.6, color=DIGIT_COLORS[digit % 10], label=str(digit))
    if legend:
        ax.legend(markerscale=3, fontsize=7, loc="best", ncol=2, frameon=False)
    if title:
        ax.set_title(title)
    if not ticks:
        ax.set_xticks([])
        ax.set_yticks([])
    return ax


def plot_maps(maps: dict[str, tuple[torch.Tensor, torch.Tensor]], size: float = 4.0,
              ticks: bool = False) -> Figure:
    """Side-by-side 2-D maps: ``{"title": (embeddings (N, 2), labels (N,)), …}``."""
    fig, axes = plt.subplots(1, len(maps), figsize=(size * len(maps), size), squeeze=False)
    for ax, (title, (emb, labels)) in zip(axes[0], maps.items()):
        plot_embeddings(emb, labels, ax=ax, title=title, legend=ax is axes[0][0], ticks=ticks)
    fig.tight_layout()
    return fig


def plot_history(histories: dict[str, "object"], metric: str = "val_precision_at_1") -> Figure:
    """Training loss and a validation metric per epoch, for one or more ``History`` objects."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.2))
    for name, h in histories.items():
        epochs = np.arange(1, len(h.loss) + 1)
        ax1.plot(epochs, h.loss, marker="o", label=name)
        if metric in h.metrics:
            ax2.plot(epochs, h.metrics[metric], marker="o", label=name)
    ax1.set(xlabel="epoch", ylabel="training loss", title="loss")
    ax2.set(xlabel="epoch", ylabel=metric.replace("_", " "), title="validation")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_episode(images: torch.Tensor, episode: "object", size: float = 0.9, max_query: int = 5) -> Figure:
    """One episode: a row per class, its K support images, then (after a gap) some query images."""
    n, k = len(episode.classes), int((episode.support_y == 0).sum())
    q = min(max_query, int((episode.query_y == 0).sum()))
    ncols = k + 1 + q
    fig, axes = plt.subplots(n, ncols, figsize=(size * ncols, size * n * 1.1), squeeze=False)
    support = to_pixels(images[episode.support]).reshape(n, k, 28, 28)
    query = to_pixels(images[episode.query]).reshape(n, -1, 28, 28)
    for r in range(n):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < k:
                ax.imshow(support[r, c], cmap="gray_r", vmin=0, vmax=1)
                for spine in ax.spines.values():
                    spine.set_color(DIGIT_COLORS[int(episode.classes[r]) % 10])
                    spine.set_linewidth(2)
            elif c > k:
                ax.imshow(query[r, c - k - 1], cmap="gray_r", vmin=0, vmax=1)
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(f"class {r}", fontsize=8)
    axes[0, 0].set_title("support", fontsize=9, loc="left")
    axes[0, k + 1].set_title("query", fontsize=9, loc="left")
    fig.suptitle(f"{n}-way {k}-shot episode", fontsize=10)
    fig.tight_layout()
    return fig
